"""The outbox relay: publishes committed events to Kafka in `position` order.

The `events` table is the outbox. The relay reads rows after its cursor, sends
them with `acks=all` (idempotent producer, keyed by cadre id), waits for every
acknowledgement, and only then moves the cursor. A crash anywhere in between
re-sends a tail of events on restart, never skips one; consumers drop the
repeats by event id. One relay per topic is active at a time (advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from aiokafka import AIOKafkaProducer

from runtime import logs, metrics
from runtime.db import Pool
from runtime.store import NOTIFY_CHANNEL

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS relay_cursor (
        topic     text PRIMARY KEY,
        position  bigint NOT NULL
    )
    """,
)


def make_producer(bootstrap: str, *, client_id: str) -> AIOKafkaProducer:
    """A producer that loses nothing: every in-sync replica acknowledges, retries keep order."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=1024 * 1024,
        request_timeout_ms=30000,
    )


class OutboxRelay:
    """Moves one service's committed events to its topic."""

    def __init__(
        self,
        pool: Pool,
        producer: AIOKafkaProducer,
        *,
        service: str,
        topic: str,
        batch_size: int = 2000,
        idle_wait: float = 1.0,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._service = service
        self.topic = topic
        self._batch_size = batch_size
        self._idle_wait = idle_wait
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self.is_leader = False
        self._published: int | None = None
        """While leading: the cursor, kept here too (no other process moves it meanwhile)."""
        self._head = 0
        """The newest position a commit notification named (for the lag metric)."""

    def stop(self) -> None:
        """Ask the relay to publish what is committed and then return (the leader) or return (a standby)."""
        self._stop.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until stopped: leader election, then publish on every commit notification.

        On `stop()` the leader publishes everything committed before it returns; being the
        only publisher, nothing goes out twice.
        """
        async with self._pool.acquire() as conn:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            try:
                # Another process may hold the lock: poll it (it lives in the database, not in this process).
                while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('relay:' || $1))", self.topic):
                    if self._stop.is_set():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self._idle_wait)
                self.is_leader = True
                self._published = await self.cursor()
                self._head = int(await conn.fetchval("SELECT position FROM chain_head WHERE id = 1") or 0)
                log.info("relay leading", topic=self.topic)
                while not self._stop.is_set():
                    self._wakeup.clear()
                    sent = await self.publish_pending()
                    if sent < self._batch_size:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wakeup.wait(), self._idle_wait)
                # Stopping (no more appends come): publish everything committed, then go.
                while await self.publish_pending():
                    pass
            finally:
                self.is_leader = False
                self._published = None
                with contextlib.suppress(Exception):
                    await conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock(hashtext('relay:' || $1))", self.topic)

    def _on_notify(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        with contextlib.suppress(TypeError, ValueError):
            self._head = max(self._head, int(str(payload)))
        self._wakeup.set()

    async def cursor(self) -> int:
        """The position of the last event known to be on the topic."""
        value = await self._pool.fetchval("SELECT position FROM relay_cursor WHERE topic = $1", self.topic)
        return int(value or 0)

    async def publish_pending(self) -> int:
        """Publish one batch after the cursor; return how many events were sent."""
        cursor = self._published if self._published is not None else await self.cursor()
        rows = await self._pool.fetch(
            "SELECT position, coalesce(cadre_id::text, stream_id) AS key, event_id, event_type, body"
            " FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            cursor,
            self._batch_size,
        )
        if rows:
            acks = [
                await self._producer.send(
                    self.topic,
                    value=row["body"].encode(),
                    key=row["key"].encode(),
                    headers=[
                        ("content-type", b"application/json"),
                        ("event_type", row["event_type"].encode()),
                        ("event_id", str(row["event_id"]).encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.gather(*acks)
            last = rows[-1]["position"]
            await self._save_cursor(last)
            if self._published is not None:
                self._published = last
            metrics.RELAY_PUBLISHED.labels(self._service, self.topic).inc(len(rows))
        done = rows[-1]["position"] if rows else cursor
        metrics.RELAY_LAG.labels(self._service, self.topic).set(max(0, self._head - done))
        return len(rows)

    async def _save_cursor(self, position: int) -> None:
        await self._pool.execute(
            "INSERT INTO relay_cursor (topic, position) VALUES ($1, $2)"
            " ON CONFLICT (topic) DO UPDATE SET position = EXCLUDED.position"
            " WHERE relay_cursor.position < EXCLUDED.position",
            self.topic,
            position,
        )
