"""The fault harness's own parts, alone: the TCP proxy's faults, and the 503 a lost database connection gives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
from fastapi import FastAPI

from runtime.db import transient, unreachable
from runtime.http import install
from tests.faults.proxy import Proxy


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A loopback server that echoes each chunk back."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _round_trip(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """What comes back for `data`; b"" when the connection is closed (or reset) instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        writer.close()


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), 2) == b""
    except ConnectionResetError:
        return True


async def test_the_proxy_pipes_cuts_swallows_and_heals() -> None:
    async with echo_server() as upstream:
        with Proxy(upstream, name="echo") as proxy:
            assert await _round_trip(proxy.port, b"hello") == b"hello"
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"open")
            assert await asyncio.wait_for(reader.read(1024), 2) == b"open"  # piped: the proxy holds it
            await asyncio.to_thread(proxy.cut)
            assert await _closed(reader)  # the open connection was closed
            writer.close()
            assert await _round_trip(proxy.port, b"refused") == b""  # new ones too, while cut
            await asyncio.to_thread(proxy.swallow)
            try:
                await _round_trip(proxy.port, b"lost", timeout=0.5)
                swallowed = False
            except TimeoutError:
                swallowed = True
            assert swallowed  # the request went through; its reply never came back
            await asyncio.to_thread(proxy.heal)
            assert await _round_trip(proxy.port, b"again") == b"again"
            assert proxy.connections_cut >= 1


async def test_a_lost_database_connection_answers_503_and_does_not_claim_nothing_changed() -> None:
    app = FastAPI()
    install(app, service="test")

    @app.post("/reset")
    async def reset() -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    @app.post("/gone")
    async def gone() -> None:
        msg = "connection was closed in the middle of operation"
        raise asyncpg.ConnectionDoesNotExistError(msg)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/reset", "/gone"):
            response = await client.post(path)
            assert response.status_code == httpx.codes.SERVICE_UNAVAILABLE, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"
            assert "may or may not have been applied" in response.json()["detail"]


def test_only_a_lost_connection_counts_as_the_database_out_of_reach() -> None:
    closed = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    released = asyncpg.InterfaceError(
        "cannot call Connection.transaction(): connection has been released back to the pool"
    )
    misuse = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert unreachable(closed)
    assert unreachable(released)
    assert unreachable(ConnectionResetError(104, "Connection reset by peer"))
    assert unreachable(asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"))
    assert not unreachable(misuse)
    assert transient(misuse)  # a connection left mid-operation: 503, not 500, though not "out of reach"
    assert transient(asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"))
    assert transient(asyncpg.exceptions.SerializationError("could not serialize access"))
    assert not transient(asyncpg.UniqueViolationError("duplicate key value violates unique constraint"))
    assert not transient(ValueError("a projection's bug"))
    assert not unreachable(asyncpg.UniqueViolationError("duplicate key value violates unique constraint"))
    assert not unreachable(ValueError("a projection's bug"))
