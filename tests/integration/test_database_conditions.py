"""A passing condition of the real database answers 503 with Retry-After, never 500 (runtime.db.transient).

The fault runs left two 500s in 10,000 answers: asyncpg's "another operation is in progress" on a
connection a loss had left mid-operation (docs/reliability.md). Here each condition is made for
real against PostgreSQL, through the HTTP layer every service installs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from runtime.db import Pool, create_pool
from runtime.http import install
from tests.infra import Infra


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[Pool]:
    created = await create_pool(infra.postgres_dsn, max_size=2)
    yield created
    await created.close()


def _app(pool: Pool) -> FastAPI:
    app = FastAPI()
    install(app, service="test")

    @app.get("/busy")
    async def busy_connection() -> None:
        # Two operations at once on one connection: asyncpg refuses the second, as it does on a
        # connection a loss left mid-operation.
        async with pool.acquire() as conn:
            await asyncio.gather(conn.fetch("SELECT pg_sleep(0.2)"), conn.fetch("SELECT 1"))

    @app.post("/serialization")
    async def serialization() -> None:
        await pool.execute("DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$")

    @app.post("/deadlock")
    async def deadlock() -> None:
        await pool.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")

    @app.get("/bug")
    async def bug() -> None:
        await pool.execute("SELECT * FROM no_such_table")

    return app


async def test_passing_database_conditions_answer_503_with_retry_after(pool: Pool) -> None:
    transport = httpx.ASGITransport(app=_app(pool), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        busy = await client.get("/busy")
        assert busy.status_code == httpx.codes.SERVICE_UNAVAILABLE, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"] == "application/problem+json"
        assert "may or may not have been applied" in busy.json()["detail"]

        for path in ("/serialization", "/deadlock"):
            rolled_back = await client.post(path)
            assert rolled_back.status_code == httpx.codes.SERVICE_UNAVAILABLE, rolled_back.text
            assert rolled_back.headers["retry-after"] == "1"
            assert "nothing was changed" in rolled_back.json()["detail"]

        # A real bug stays a 500: only passing conditions are told to try again.
        bug = await client.get("/bug")
        assert bug.status_code == httpx.codes.INTERNAL_SERVER_ERROR, bug.text
        assert "retry-after" not in bug.headers

        # The pool still serves after all of it.
        assert await pool.fetchval("SELECT 1") == 1
