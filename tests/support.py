"""Test helpers: run services in-process against the real stack, read topics, wait for effects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from contracts.envelope import Actor, Role, uuid7
from contracts.registry import CadreNominated, Education, Gender
from runtime import checkpoint, clock, db, relay
from runtime.auth import issue_token
from runtime.context import CommandContext
from runtime.service import Service
from runtime.settings import DEV_AUTH_SECRET, ServiceSettings
from services.sync import bundles
from services.sync.bundles import Imported
from services.sync.ingest import Ingest

T = TypeVar("T")

SECRET = DEV_AUTH_SECRET
ORGANIZER = Actor(user="tester", org_path="cn.qs", role=Role.ORGANIZER)
"""The actor of the tests that append directly to a store: an organizer of `cn.qs`."""


class ActorHeaders(Mapping[str, str]):
    """The `Authorization` header of an actor, with a token issued on the platform's clock when it is read.

    Tests define these once per module, but the clock is set per test (tests travel in
    time): a token issued at import could be expired, or not yet valid, by the test's time.
    """

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._issued: tuple[datetime, str] | None = None

    def __getitem__(self, key: str) -> str:
        if key != "Authorization":
            raise KeyError(key)
        now = clock.now()
        if self._issued is None or not self._issued[0] <= now < self._issued[0] + _REISSUE_AFTER:
            self._issued = (now, issue_token(SECRET, self.actor))
        return f"Bearer {self._issued[1]}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1


_REISSUE_AFTER = timedelta(hours=1)


def auth(user: str, org_path: str, role: Role = Role.ORGANIZER) -> ActorHeaders:
    """Headers carrying a token for this actor."""
    return ActorHeaders(Actor(user=user, org_path=org_path, role=role))


@dataclass
class Running:
    """A service running in this process, with an HTTP client to its app."""

    app: FastAPI
    client: httpx.AsyncClient
    _stack: contextlib.AsyncExitStack

    async def stop(self) -> None:
        """Stop the service now (as SIGTERM would); stopping twice is harmless."""
        await self._stack.aclose()

    @property
    def service(self) -> Service:
        """The service's running parts (store, pool, broker, subscribers)."""
        running: Service = self.app.state.service
        return running


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Running]:
    """Start `app`'s lifespan (database, relay, subscribers) and give a client to it."""
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(app.router.lifespan_context(app))
    transport = httpx.ASGITransport(app=app)
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://service", timeout=30)
    )
    service = Running(app=app, client=client, _stack=stack)
    try:
        yield service
    finally:
        await service.stop()


async def create_database(admin_dsn: str, name: str) -> None:
    """Create database `name` (fresh for each test)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def eventually(
    probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool] = bool, timeout: float = 30.0
) -> T:
    """Poll `probe` until its value satisfies `until`; fail with the last value after `timeout`.

    The timeout bounds how long a test may hang; it is not a speed assertion.
    """
    last: Any = None
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            last = value
            if until(value):
                return value
            await asyncio.sleep(0.05)
    msg = f"condition not met; last value: {last!r}"  # pragma: no cover - timeout raises first
    raise AssertionError(msg)


async def in_view(view: Running, cadre_id: str | UUID) -> None:
    """Wait until `view`'s copy of the pool (its `pool_cadres`) has the cadre's row."""
    sql = "SELECT count(*) FROM pool_cadres WHERE cadre_id = $1"
    await eventually(lambda: view.service.pool.fetchval(sql, UUID(str(cadre_id))), until=lambda n: n == 1)


async def in_pool_at(view: Running, cadre_id: str | UUID) -> None:
    """Wait until `view`'s copy of the pool holds the cadre as in the pool."""
    sql = "SELECT in_pool FROM pool_cadres WHERE cadre_id = $1"
    await eventually(
        lambda: view.service.pool.fetchval(sql, UUID(str(cadre_id))), until=lambda in_pool: in_pool is True
    )


async def read_topic(bootstrap: str, topic: str, *, count: int, timeout: float = 30.0) -> list[Any]:
    """The first `count` records of `topic` (all partitions, from the start), without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions: set[int] | None = None
        async with asyncio.timeout(timeout):
            while partitions is None:
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.1)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


Queryable = asyncpg.Pool | str
"""A service's pool (in-process) or its database's DSN (a service running as a process)."""


async def redeliver(bootstrap: str, record: Any) -> None:
    """Send a consumed `record` again, headers and all (as the relay re-sends after a crash)."""
    producer = relay.make_producer(bootstrap, client_id="test-redelivery")
    await producer.start()
    try:
        await producer.send_and_wait(
            record.topic, value=record.value, key=record.key, partition=record.partition, headers=list(record.headers)
        )
    finally:
        await producer.stop()


async def fetch_rows(where: Queryable, sql: str, *args: Any) -> list[Any]:
    """The rows `sql` returns from a pool, or from a DSN over a connection of its own."""
    if isinstance(where, str):
        conn = await asyncpg.connect(where)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
    return list(await where.fetch(sql, *args))


async def events_in(where: Queryable) -> int:
    """How many events the store at `where` holds."""
    return int((await fetch_rows(where, "SELECT count(*) FROM events"))[0][0])


async def watermarks(consumer_db: Queryable, consumer: str, topic: str) -> dict[int, int]:
    """Partition → the position up to which `consumer` has handled `topic` (nothing pending ahead of it)."""
    rows = await fetch_rows(
        consumer_db, "SELECT partition, low, ahead FROM consumed WHERE consumer = $1 AND topic = $2", consumer, topic
    )
    assert all(row["ahead"] == "{}" for row in rows), rows
    return {row["partition"]: row["low"] for row in rows if row["low"]}


async def relay_heads(producer_db: Queryable, topic: str) -> dict[int, int]:
    """Partition → the position of the last record published to `topic`, once the relay has sent all committed.

    Empty while the relay is behind the chain's head.
    """
    rows = await fetch_rows(
        producer_db,
        "SELECT r.heads FROM relay_cursor r, chain_head h WHERE r.topic = $1 AND r.position = h.position",
        topic,
    )
    if not rows:
        return {}
    heads: dict[str, int] = orjson.loads(rows[0]["heads"])
    return {int(partition): position for partition, position in heads.items()}


async def caught_up(consumer_db: Queryable, consumer: str, producer_db: Queryable, topic: str) -> None:
    """Wait until `consumer` has handled every record the relay published to `topic`."""

    async def both() -> tuple[dict[int, int], dict[int, int]]:
        return await watermarks(consumer_db, consumer, topic), await relay_heads(producer_db, topic)

    await eventually(both, until=lambda pair: bool(pair[1]) and pair[0] == pair[1])


async def carry_bundle(sender: ServiceSettings, receiver: ServiceSettings) -> Imported:
    """One offline round between two deployments, by their sync services' settings (in-process or processes alike).

    The receiver acknowledges what it holds, the sender exports what it lacks from its topics,
    the receiver imports it (verified whole, one transaction): `services.sync.bundles`.
    """
    max_bytes = getattr(receiver, "bundle_max_bytes", None)
    pool = await db.create_pool(receiver.database_url, max_size=2)
    try:
        ack = await bundles.acknowledge(pool, receiver.deployment_id)
        key = checkpoint.private_key(sender.checkpoint_signing_key.get_secret_value())
        data = await bundles.export(sender, key, to=receiver.deployment_id, since=ack, max_bytes=max_bytes)
        ingest = Ingest(receiver.topology, receiver.parent_public_key)
        return await bundles.take(pool, ingest, receiver.topology, data, max_bytes=max_bytes)
    finally:
        await pool.close()


DatabaseFactory = Callable[[str], Awaitable[str]]
"""The `database` fixture: a fresh database for one service of a test, by service name; returns its DSN."""
Launch = Callable[..., Awaitable[Running]]
"""The `launch` fixture: start a service app of a test (its settings' overrides as keywords)."""


def command_context(actor: Actor = ORGANIZER) -> CommandContext:
    """A command's context for `actor` (now, a fresh correlation id)."""
    return CommandContext(actor=actor, correlation_id=uuid7())


def nominated(cadre_id: UUID | None = None, **changes: Any) -> CadreNominated:
    """A nomination that meets the entry rules (Li Wei, deputy head in `ly`); `changes` replace its fields."""
    fields: dict[str, Any] = {
        "cadre_id": cadre_id or uuid7(),
        "org_code": "ly",
        "full_name": "Li Wei",
        "gender": Gender.FEMALE,
        "birth_date": date(1992, 5, 17),
        "education": Education.MASTER,
        "current_position": "Deputy head",
        "years_of_service": 8,
        "grassroots_months": 30,
        "reason": "test",
    }
    return CadreNominated(**(fields | changes))


def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """`script` as `mvn` first on PATH, and an empty cache: returns the file it logs its runs to (`FAKE_MVN_LOG`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(script)
    mvn.chmod(0o755)
    log = tmp_path / "mvn-runs"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_LOG", str(log))
    monkeypatch.setenv("CADRE_CACHE_DIR", str(tmp_path / "cache"))
    return log


def in_threads(call: Callable[[], T], count: int = 3) -> list[T]:
    """What `call` returns in each of `count` threads started together (for "fetched once" races)."""
    results: list[T] = []
    callers = [threading.Thread(target=lambda: results.append(call())) for _ in range(count)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    return results
