"""A small TCP proxy on 127.0.0.1 that can cut, slow or swallow a connection on demand.

A service is configured to reach PostgreSQL or Kafka through one of these (its DSN or the
broker's advertised port names the proxy). The proxy runs its own event loop in a daemon
thread, so a test or the harness can drive it from synchronous or asynchronous code alike.

- `cut(seconds)`: every open connection is closed now and new ones are refused (accepted
  and closed at once) until healed: a network partition.
- `slow(delay)`: every chunk, either way, waits `delay` seconds first: a congested link.
- `swallow()`: requests still reach the server, its replies never come back (the client's
  request times out while the server did the work: an outcome the client cannot know).
  Healing closes the connections whose replies were dropped (their byte streams are broken).
- `heal()`: back to a plain pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from deploy.local.ports import free_port

T = TypeVar("T")
_CHUNK = 65536


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; faults on demand."""

    def __init__(self, upstream: int, *, port: int | None = None, name: str = "proxy") -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.name = name
        self._mode = "pipe"
        self._delay = 0.0
        self._connections: set[asyncio.StreamWriter] = set()
        self._broken: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}", daemon=True)
        self._server: asyncio.Server | None = None
        self.connections_cut = 0
        """How many open connections a cut or a heal closed (a fault that hit nothing is visible here)."""
        self.replies_swallowed = 0
        """How many chunks of replies `swallow` dropped."""

    @property
    def mode(self) -> str:
        """`pipe`, `cut`, `slow` or `swallow`."""
        return self._mode

    def start(self) -> Self:
        """Listen (returns once the port accepts connections)."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        return self

    def stop(self) -> None:
        """Close every connection and the listener; end the thread."""
        if self._server is not None:
            server, self._server = self._server, None
            self._call(self._close_server(server))
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def cut(self) -> None:
        """Close every open connection and refuse new ones until `heal`."""
        self._call(self._set("cut", 0.0, close=True))

    def slow(self, delay: float) -> None:
        """Delay every chunk by `delay` seconds until `heal`."""
        self._call(self._set("slow", delay, close=False))

    def swallow(self) -> None:
        """Let requests through and drop every reply until `heal`."""
        self._call(self._set("swallow", 0.0, close=False))

    def heal(self) -> None:
        """A plain pipe again; connections that lost replies are closed."""
        self._call(self._set("pipe", 0.0, close=False))

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _close_server(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._connections):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _set(self, mode: str, delay: float, *, close: bool) -> None:
        self._mode, self._delay = mode, delay
        doomed = set(self._connections) if close else set(self._broken)
        self._broken.clear()
        for writer in doomed:
            self.connections_cut += 1
            writer.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._mode == "cut":
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_writer.close()
            return
        if self._mode == "cut":  # cut while the upstream connection was being opened
            server_writer.close()
            client_writer.close()
            return
        self._connections.update((client_writer, server_writer))
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, replies=False, peer=client_writer),
                self._pump(server_reader, client_writer, replies=True, peer=server_writer),
            )
        finally:
            for writer in (client_writer, server_writer):
                self._connections.discard(writer)
                self._broken.discard(writer)
                writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool, peer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self._mode == "slow":
                    await asyncio.sleep(self._delay)
                if self._mode == "swallow" and replies:
                    self._broken.add(writer)
                    self.replies_swallowed += 1
                    continue
                if self._mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            peer.close()
