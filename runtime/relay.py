"""The outbox relay: publishes committed events to Kafka in `position` order.

The `events` table is the outbox. The relay reads rows after its cursor, sends
them with `acks=all` (idempotent producer, keyed by cadre id), waits for every
acknowledgement, and only then moves the cursor. While a round's acknowledgements
are awaited the next round is already read and sent (the producer keeps their
order); cursors are saved in round order. A crash anywhere in between
re-sends a tail of events on restart, never skips one. One relay per topic is
active at a time (advisory lock); a failed round is retried, never abandoned.

Every record says where it stands (ADR 0009): header `position` is its position in
the outbox, header `prev` the position of the record before it *in the same
partition* (0 for the first). The relay picks partitions itself (Kafka's own
murmur2 of the key) so that it knows them, and keeps the last position of each
partition with its cursor. A consumer then keeps one watermark per partition: a
position at or below it is a repeat, and a `prev` above it is a gap (something
not yet seen), told apart exactly, whatever the path the record came by.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from runtime import logs, metrics
from runtime.db import Pool, system_only
from runtime.store import NOTIFY_CHANNEL

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS relay_cursor (
        topic     text PRIMARY KEY,
        position  bigint NOT NULL
    )
    """,
    # The last position sent to each partition, as of the cursor: the `prev` of the next record there.
    "ALTER TABLE relay_cursor ADD COLUMN IF NOT EXISTS heads jsonb NOT NULL DEFAULT '{}'",
    *system_only("relay_cursor"),
)

POSITION_HEADER: Final = "position"
PREV_HEADER: Final = "prev"

EVENTS: Final = "SELECT position, coalesce(cadre_id::text, stream_id) AS key, event_id, event_type, body FROM events"
"""The rows of the event table as the relay sends them (an outbox's query names the same columns)."""


@dataclass(frozen=True, slots=True)
class Outbox:
    """What a relay publishes: rows of `rows_sql` (position, key, event_id, event_type, body) in position order.

    Positions grow in commit order: whoever writes the rows assigns them under a lock.
    """

    rows_sql: str = EVENTS
    head_sql: str = "SELECT position FROM chain_head WHERE id = 1"
    channel: str = NOTIFY_CHANNEL


def make_producer(bootstrap: str, *, client_id: str) -> AIOKafkaProducer:
    """A producer that loses nothing: every in-sync replica acknowledges, retries keep order."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        # No lingering: a round hands the producer all its rows at once (they batch by themselves), and
        # a lone record waiting for company only adds to the time a reader waits (docs/performance.md).
        linger_ms=0,
        max_batch_size=1024 * 1024,
        request_timeout_ms=30000,
    )


class OutboxRelay:
    """Moves one outbox's committed rows to its topic."""

    def __init__(
        self,
        pool: Pool,
        producer: AIOKafkaProducer,
        *,
        service: str,
        topic: str,
        batch_size: int = 2000,
        idle_wait: float = 1.0,
        outbox: Outbox = Outbox(),
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._service = service
        self.topic = topic
        self._batch_size = batch_size
        self._idle_wait = idle_wait
        self._outbox = outbox
        self._rows_sql = f"{outbox.rows_sql} WHERE position > $1 ORDER BY position LIMIT $2"
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self.is_leader = False
        self._published: tuple[int, dict[int, int]] | None = None
        """While leading: the cursor and the partitions' heads, kept here too (nobody else moves them)."""
        self._head = 0
        """The newest position a commit notification named (for the lag metric)."""
        self._partitions: list[int] = []
        self._confirming: asyncio.Task[None] | None = None
        """The last round sent and not yet confirmed: its acknowledgements awaited, then the cursor saved.
        Each round's confirmation awaits the one before it, so cursors are saved in order."""
        self._unconfirmed = 0

    def stop(self) -> None:
        """Ask the relay to publish what is committed and then return (the leader) or return (a standby)."""
        self._stop.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until stopped: leader election, then publish on every commit notification.

        A round that fails (the broker away, the database restarting) is tried again from
        the saved cursor after a pause; the relay never gives up while the service runs.
        On `stop()` the leader publishes everything committed before it returns; being the
        only publisher, nothing goes out twice.
        """
        failures = 0
        while not self._stop.is_set():
            try:
                await self._lead()
            except Exception as error:  # noqa: BLE001 - logged, then tried again
                failures += 1
                log.warning("relay round failed", topic=self.topic, error=repr(error), failures=failures)
                metrics.RELAY_FAILURES.labels(self._service, self.topic).inc()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(30.0, 0.5 * 2 ** min(failures, 6)))
            else:
                return

    async def _lead(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.add_listener(self._outbox.channel, self._on_notify)
            try:
                # Another process may hold the lock: poll it (it lives in the database, not in this process).
                while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('relay:' || $1))", self.topic):
                    if self._stop.is_set():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self._idle_wait)
                self.is_leader = True
                self._published = await self.saved()
                self._head = int(await conn.fetchval(self._outbox.head_sql) or 0)
                log.info("relay leading", topic=self.topic)
                while not self._stop.is_set():
                    self._wakeup.clear()
                    # The next round is read and sent while the last one's acknowledgements are awaited:
                    # a commit that lands meanwhile does not wait for the broker's answer to go out.
                    sent = await self._send_round()
                    if sent < self._batch_size:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wakeup.wait(), self._idle_wait)
                # Stopping (no more appends come): publish everything committed, then go.
                while await self.publish_pending():
                    pass
            finally:
                self.is_leader = False
                self._published = None
                await self._abandon_confirming()
                with contextlib.suppress(Exception):
                    await conn.remove_listener(self._outbox.channel, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock(hashtext('relay:' || $1))", self.topic)

    def _on_notify(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        with contextlib.suppress(TypeError, ValueError):
            self._head = max(self._head, int(str(payload)))
        self._wakeup.set()

    async def cursor(self) -> int:
        """The position of the last event known to be on the topic."""
        return (await self.saved())[0]

    async def saved(self) -> tuple[int, dict[int, int]]:
        """The cursor and the last position sent to each partition, as saved."""
        row = await self._pool.fetchrow("SELECT position, heads FROM relay_cursor WHERE topic = $1", self.topic)
        if row is None:
            return 0, {}
        return int(row["position"]), {int(k): int(v) for k, v in orjson.loads(row["heads"]).items()}

    async def publish_pending(self) -> int:
        """Publish one batch after the cursor, acknowledged and its cursor saved; how many events were sent."""
        sent = await self._send_round()
        await self._confirmed()
        return sent

    async def _confirmed(self) -> None:
        """Wait until every round sent is acknowledged and its cursor saved (raises what failed)."""
        task, self._confirming, self._unconfirmed = self._confirming, None, 0
        if task is not None:
            await task

    async def _abandon_confirming(self) -> None:
        """After a failed or finished lead: let the confirmations end; a new lead starts from the saved cursor."""
        with contextlib.suppress(Exception):
            await self._confirmed()

    async def _send_round(self) -> int:
        """Read the rows after the last one sent and hand them to the producer; confirm them in the background.

        A confirmation that failed (the broker away, say) is raised here, before anything more is
        sent: the lead ends, and the next one resends from the saved cursor, with the same headers.
        """
        task = self._confirming
        if task is not None and (task.done() or self._unconfirmed >= MAX_UNCONFIRMED_ROUNDS):
            await self._confirmed()  # raises what failed
        cursor, heads = self._published if self._published is not None else await self.saved()
        rows = await self._pool.fetch(self._rows_sql, cursor, self._batch_size)
        if rows:
            if not self._partitions:
                self._partitions = sorted(await self._producer.partitions_for(self.topic))
            heads = dict(heads)  # the saved heads stay as they are until every record is acknowledged
            acks = []
            for row in rows:
                key = row["key"].encode()
                partition = _PARTITIONER(key, self._partitions, self._partitions)
                headers = [
                    ("content-type", b"application/json"),
                    ("event_type", row["event_type"].encode()),
                    ("event_id", str(row["event_id"]).encode()),
                    (POSITION_HEADER, str(row["position"]).encode()),
                    (PREV_HEADER, str(heads.get(partition, 0)).encode()),
                ]
                heads[partition] = row["position"]
                body = row["body"]
                value = body if isinstance(body, bytes) else body.encode()
                acks.append(
                    await self._producer.send(self.topic, value=value, key=key, partition=partition, headers=headers)
                )
            last = rows[-1]["position"]
            if self._published is not None:
                self._published = (last, heads)
            self._confirming = asyncio.create_task(self._confirm(self._confirming, acks, last, heads))
            self._confirming.add_done_callback(self._wake_on_failure)
            self._unconfirmed += 1
        done = rows[-1]["position"] if rows else cursor
        metrics.RELAY_LAG.labels(self._service, self.topic).set(max(0, self._head - done))
        return len(rows)

    async def _confirm(
        self, previous: asyncio.Task[None] | None, acks: list[asyncio.Future[object]], last: int, heads: dict[int, int]
    ) -> None:
        if previous is not None:
            await previous  # in order: a round's cursor is saved only after every round before it
        await asyncio.gather(*acks)
        await self._save(last, heads)
        metrics.RELAY_PUBLISHED.labels(self._service, self.topic).inc(len(acks))

    def _wake_on_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._wakeup.set()  # the lead loop raises it at its next round

    async def _save(self, position: int, heads: dict[int, int]) -> None:
        # Without waiting for the disk (asynchronous commit): a cursor lost in a crash of the database
        # is an older one, saved with its own heads, and re-sending from it repeats records with the
        # very same headers, which consumers drop (ADR 0009). Waiting for the flush held up every
        # next round by an fsync: end-to-end latency (bench/e2e.py).
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute(
                "INSERT INTO relay_cursor (topic, position, heads) VALUES ($1, $2, $3::jsonb)"
                " ON CONFLICT (topic) DO UPDATE SET position = EXCLUDED.position, heads = EXCLUDED.heads"
                " WHERE relay_cursor.position < EXCLUDED.position",
                self.topic,
                position,
                orjson.dumps({str(k): v for k, v in heads.items()}).decode(),
            )


MAX_UNCONFIRMED_ROUNDS: Final = 8
"""Rounds sent ahead of their acknowledgement at most (the producer's own buffer bounds the bytes)."""

_PARTITIONER: Final = DefaultPartitioner()
"""Kafka's default partitioner (murmur2 of the key): the partition a plain producer would pick."""
