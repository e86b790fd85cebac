"""Subscribers: fold another service's topic into this service's projection, exactly once.

Each batch from Kafka is handled in one database transaction that both updates the
projection and moves the subscriber's watermark of each partition it read (ADR 0009);
the offset is committed to Kafka only afterwards. Every record carries its position in
the outbox it came from and the position of the record before it in its partition
(`runtime.relay`): a record at or below the watermark (a redelivery after a crash or a
rebalance, a second path) has no second effect, and one that arrives before an earlier
record of its partition is applied and the gap before it is awaited. A message that
cannot be parsed, names an unknown event type, or makes the projection raise goes to
`<topic>.dlq` with the error, and the subscriber moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage

from contracts import catalog, topics
from contracts.envelope import Envelope
from contracts.topics import dlq as dead_letter_topic
from runtime import logs, metrics
from runtime.db import Conn, Pool, system_only, transient
from runtime.projection import Projection, Recorded
from runtime.relay import POSITION_HEADER, PREV_HEADER

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS consumed (
        consumer    text NOT NULL,
        topic       text NOT NULL,
        partition   int NOT NULL,
        low         bigint NOT NULL,
        ahead       jsonb NOT NULL DEFAULT '{}',
        updated_at  timestamptz NOT NULL,
        PRIMARY KEY (consumer, topic, partition)
    )
    """,
    *system_only("consumed"),
)
"""`low`: every record of the partition up to this position is handled; `ahead`: records handled
before a gap, position → the position before it (normally empty)."""


@dataclass(slots=True)
class Watermark:
    """What one consumer has handled of one partition."""

    low: int = 0
    ahead: dict[int, int] = field(default_factory=dict)

    def admit(self, position: int, prev: int | None) -> str:
        """`repeat` (handled before), `next` (in order) or `early` (an earlier record is still missing).

        Moves the watermark as if the record is handled (the caller handles it in the same
        transaction). Without `prev` (a record published by hand), positions are taken as
        they come: anything above the watermark is new.
        """
        if position <= self.low or position in self.ahead:
            return "repeat"
        if prev is not None and prev > self.low:
            self.ahead[position] = prev
            return "early"
        self.low = position
        while self.ahead:  # the gap is closed: take up what came early
            follower = next((p for p, before in self.ahead.items() if before == self.low), None)
            if follower is None:
                break
            self.low = follower
            del self.ahead[follower]
        return "next"


DeadLetter = Callable[["ConsumerRecord[bytes, bytes]", str, str], Awaitable[None]]
"""Sends (record, consumer name, error) to the record's dead-letter topic."""


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord[bytes, bytes]
    recorded: Recorded | None = None
    position: int | None = None
    prev: int | None = None
    outcome: str = "applied"
    error: str | None = None


Records = tuple["ConsumerRecord[bytes, bytes]", ...]
"""One batch as Kafka gave it."""


async def raw_records(message: StreamMessage[Any]) -> Records:
    """A batch subscriber's decoder: the batch's records, as they came, for the handler to parse itself.

    The handler takes them as its body (typed `Any`: fast_depends would otherwise have pydantic
    validate every record), so that one bad message cannot stall the batch, and so that faststream
    resolves no context field per batch (a `KafkaMessage` parameter is one, and fast_depends solves
    it in a worker thread: a thread hand-off on the path of every batch).
    """
    raw = message.raw_message
    return tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)  # a list from the in-memory broker


class ProjectionSubscriber:
    """Feeds one projection from Kafka topics through a faststream batch subscriber."""

    def __init__(
        self,
        *,
        service: str,
        projection: Projection,
        topics: Sequence[str],
        dead_letter: DeadLetter,
        batch_size: int = 1000,
        group_id: str | None = None,
        pool: Pool | None = None,
    ) -> None:
        self._service = service
        self._pool = pool
        self.projection = projection
        self.topics = list(topics)
        self._dead_letter = dead_letter
        self._batch_size = batch_size
        self.consumer_name = f"{service}.{projection.name}"
        # Expose the error counters at zero from the start, so dashboards and alerts see them.
        metrics.HANDLER_ERRORS.labels(service, self.consumer_name)
        for topic in self.topics:
            metrics.DEAD_LETTERED.labels(service, dead_letter_topic(topic))
        self.group_id = group_id or self.consumer_name
        self._subscriber: BatchSubscriber | None = None
        self._writing: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._closing = False

    def bind(self, pool: Pool) -> None:
        """Give the subscriber its database (the pool exists only once the service starts)."""
        self._pool = pool

    @property
    def pool(self) -> Pool:
        """The database pool this subscriber writes to."""
        if self._pool is None:
            msg = f"{self.consumer_name} has no database yet"
            raise RuntimeError(msg)
        return self._pool

    def attach(self, broker: KafkaBroker) -> None:
        """Register the batch subscriber on `broker` (before the broker starts)."""
        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.group_id,
            batch=True,
            max_records=self._batch_size,
            batch_timeout_ms=POLL_MS,
            auto_offset_reset="earliest",
            # Offsets are committed by `_write_then_commit`, each batch's own, after its transaction.
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_records,
        )
        self._subscriber = subscriber
        subscriber.get_msg = poll_without_pause(self._batch_size)  # type: ignore[method-assign,assignment]

        async def handle(records: Any) -> None:  # Records, from raw_records (not validated again)
            try:
                await self._pipelined(records)
            except Exception:
                # Nothing of this batch was written: read it again (as faststream's NACK did), so that
                # no later batch's offsets pass over it.
                log.exception("batch not taken, reading it again", consumer=self.consumer_name)
                self._rewind(records)
                raise

        subscriber(handle)

    async def _pipelined(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Parse this batch while the one before it is written, then write it in the background.

        Python parses on one core while PostgreSQL applies the previous batch on another; one
        batch is written at a time, in order. A batch's offsets are committed once its
        transaction is (`_write_then_commit`): a crash re-reads what was not committed yet,
        and the watermarks drop what was applied already (ADR 0009).
        """
        items = [self._parse(record) for record in records]
        await self.drain()
        self._writing = asyncio.create_task(self._write_then_commit(records, items))

    async def drain(self) -> None:
        """Wait until the batch being written is committed (or given up, when closing)."""
        task, self._writing = self._writing, None
        if task is not None:
            # Shielded: a stop that cancels the consumer's loop lets the transaction finish or roll back whole.
            await asyncio.shield(task)

    async def settle(self) -> None:
        """Wait until the offsets of every written batch are committed to Kafka (or their commit failed)."""
        await self.drain()
        task, self._committing = self._committing, None
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Finish the batch being written; a write that fails now is given up (its batch is read again later)."""
        self._closing = True
        with contextlib.suppress(Exception):
            await self.settle()

    async def _write_then_commit(self, records: Sequence[ConsumerRecord[bytes, bytes]], items: list[_Item]) -> None:
        failures = 0
        while True:
            try:
                await self._write(items)
                break
            except Exception as error:
                # As the relay does: tried again (the database restarting, say), never skipped. Its
                # offsets stay uncommitted meanwhile, so a stop or a crash reads the batch again.
                if self._closing:
                    raise
                failures += 1
                log.warning("batch not applied, trying again", consumer=self.consumer_name, error=repr(error))
                metrics.HANDLER_ERRORS.labels(self._service, self.consumer_name).inc()
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                items = [self._parse(record) for record in records]  # outcomes of the failed try are void
        # The offsets go to Kafka while the next batch is written: commits stay in order (each waits
        # for the one before), and the next transaction does not wait for the broker's answer.
        self._committing = asyncio.create_task(self._commit(self._committing, records))

    async def _commit(
        self, previous: asyncio.Task[None] | None, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        if previous is not None:
            await previous  # never raises: every commit error is logged below
        consumer = self._subscriber.consumer if self._subscriber else None
        if consumer is not None:
            ends = {
                TopicPartition(record.topic, record.partition): OffsetAndMetadata(record.offset + 1, "")
                for record in records
            }
            try:
                await consumer.commit(ends)
            except Exception as error:  # noqa: BLE001 - a later commit covers them, or a new owner drops the repeats
                log.info("offsets not committed", consumer=self.consumer_name, error=repr(error))
        self._record_lag(records)

    def _rewind(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        consumer = self._subscriber.consumer if self._subscriber else None
        firsts: dict[TopicPartition, int] = {}
        for record in records:
            firsts.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        for partition, offset in firsts.items():
            if consumer is not None and partition in consumer.assignment():
                consumer.seek(partition, offset)

    @property
    def assigned(self) -> bool:
        """Whether the consumer holds partitions (ready to work)."""
        consumer = self._subscriber.consumer if self._subscriber else None
        return bool(consumer and consumer.assignment())

    def _record_lag(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        consumer = self._subscriber.consumer if self._subscriber else None
        if consumer is None:
            return
        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[(record.topic, record.partition)] = record.offset
        for (topic, partition), offset in last.items():
            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self._service, self.consumer_name, topic, str(partition)).set(
                    highwater - offset - 1
                )

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle one batch: parse, drop repeats, project, dead-letter, move the watermarks, in one transaction."""
        await self._write([self._parse(record) for record in records])

    async def _write(self, items: list[_Item]) -> None:
        """The transaction of one parsed batch (see `process`).

        The batch is applied whole, with no savepoint (two round trips fewer on every batch's path);
        when the projection refuses it, that transaction is rolled back and the batch is written
        again, each event in a savepoint of its own, so that only the refused ones are dead-lettered.
        """
        try:
            fresh, dead = await self._transaction(items, one_by_one=False)
        except _Refused:
            fresh, dead = await self._transaction(items, one_by_one=True)
        counts = Counter(item.outcome for item in fresh)
        for outcome, count in counts.items():
            metrics.CONSUMED.labels(self._service, self.consumer_name, outcome).inc(count)
        repeats = len(items) - len(fresh)
        if repeats:
            metrics.CONSUMED.labels(self._service, self.consumer_name, "repeat").inc(repeats)
        if dead:
            metrics.HANDLER_ERRORS.labels(self._service, self.consumer_name).inc(len(dead))

    def _parse(self, record: ConsumerRecord[bytes, bytes]) -> _Item:
        item = _Item(record=record)
        for name, value in record.headers or ():
            if name == POSITION_HEADER:
                item.position = _header_int(value)
            elif name == PREV_HEADER:
                item.prev = _header_int(value)
        if item.position is None:
            item.prev = None
        try:
            envelope = Envelope.from_bytes(record.value or b"")
        except ValueError as error:
            item.outcome, item.error = "dead", f"unparseable envelope: {error}"
            return item
        handled = self.projection.handles(envelope.event_type)
        try:
            if handled:
                catalog.check_readable(envelope.event_type, envelope.schema_version)
            else:
                catalog.model_for(envelope.event_type)
        except catalog.UnknownEventError as error:
            item.outcome, item.error = "dead", str(error)
            return item
        if not handled:
            item.outcome = "skipped"
            return item
        # The payload is validated when the projection first reads `event` (a refusal then dead-letters
        # the event like any other); projections that read the plain `payload` skip that work.
        item.recorded = Recorded(envelope)
        return item

    async def _admit(self, conn: Conn, items: list[_Item]) -> list[_Item]:
        """Move the watermarks of the batch's partitions (locked till commit); return the records seen first now.

        A record without a position header did not come from a relay (published by hand, or
        junk): it cannot be told apart from a repeat, claims no place in its partition and
        moves no watermark; it is handled each time it is read.
        """
        partitions = sorted({(i.record.topic, i.record.partition) for i in items})
        rows = await conn.fetch(
            "SELECT topic, partition, low, ahead FROM consumed WHERE consumer = $1"
            " AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[])) FOR UPDATE",
            self.consumer_name,
            [t for t, _ in partitions],
            [p for _, p in partitions],
        )
        marks = {
            (row["topic"], row["partition"]): Watermark(
                row["low"], {int(k): int(v) for k, v in orjson.loads(row["ahead"]).items()}
            )
            for row in rows
        }
        fresh = []
        for item in items:
            if item.position is None:
                fresh.append(item)
                continue
            where = (item.record.topic, item.record.partition)
            mark = marks.get(where)
            if mark is None:  # first sight: what came before this record was handled before the offset we start at
                mark = marks[where] = Watermark(low=item.prev or 0)
            admitted = mark.admit(item.position, item.prev)
            if admitted == "repeat":
                continue
            if admitted == "early":
                metrics.CONSUMER_OUT_OF_ORDER.labels(self._service, self.consumer_name, item.record.topic).inc()
                log.warning(
                    "record arrived before an earlier one of its partition",
                    consumer=self.consumer_name,
                    topic=item.record.topic,
                    partition=item.record.partition,
                    position=item.position,
                    awaiting=item.prev,
                )
            fresh.append(item)
        await conn.executemany(
            "INSERT INTO consumed (consumer, topic, partition, low, ahead, updated_at)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, clock_timestamp())"
            " ON CONFLICT (consumer, topic, partition)"
            " DO UPDATE SET low = EXCLUDED.low, ahead = EXCLUDED.ahead, updated_at = EXCLUDED.updated_at",
            [
                (
                    self.consumer_name,
                    topic,
                    partition,
                    mark.low,
                    orjson.dumps({str(k): v for k, v in mark.ahead.items()}).decode(),
                )
                for (topic, partition), mark in marks.items()
            ],
        )
        return fresh

    async def _transaction(self, items: list[_Item], *, one_by_one: bool) -> tuple[list[_Item], list[_Item]]:
        """Admit, apply and dead-letter in one transaction; the records seen first now, and the dead ones."""
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await self._admit(conn, items)
            todo = [item for item in fresh if item.outcome == "applied"]
            if todo:
                await self._apply(conn, todo, one_by_one=one_by_one)
            dead = [item for item in fresh if item.outcome == "dead"]
            for item in dead:
                await self._dead_letter(item.record, self.consumer_name, item.error or "")
        return fresh, dead

    async def _apply(self, conn: Conn, todo: list[_Item], *, one_by_one: bool) -> None:
        if not one_by_one:
            try:
                await self.projection.apply(conn, [item.recorded for item in todo if item.recorded is not None])
            except Exception as error:
                if transient(error):
                    raise  # not the events' fault: the whole batch is tried again, nothing is dead-lettered
                raise _Refused from error  # rolls the transaction back; written again one event at a time
        else:
            for item in todo:
                if item.recorded is None:
                    continue
                try:
                    async with conn.transaction():
                        await self.projection.apply(conn, [item.recorded])
                except Exception as error:  # the event goes to the dead-letter topic
                    if transient(error):
                        raise
                    log.warning(
                        "projection refused event",
                        consumer=self.consumer_name,
                        event_id=str(item.recorded.envelope.event_id),
                        error=repr(error),
                    )
                    item.outcome, item.error = "dead", f"{type(error).__name__}: {error}"


class _Refused(Exception):  # noqa: N818 - a signal, not an error anyone sees
    """The projection refused a batch applied whole: write it again, one event at a time."""


POLL_MS: Final = 100
"""How long one poll waits for records. A record that arrives meanwhile ends the wait at once."""


def poll_without_pause(
    max_records: int,
) -> Callable[[AIOKafkaConsumer], Coroutine[Any, Any, tuple[ConsumerRecord[bytes, bytes], ...]]]:
    """The batch poll of faststream, without the pause it takes after a poll that found nothing.

    faststream sleeps `batch_timeout_ms` after an empty poll; a record that arrives during that
    sleep waits for its end, so at low rates a record waited up to that long on top of its
    trip (docs/performance.md). The poll itself already waits for records, and returns as
    soon as one arrives.
    """

    async def poll(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[bytes, bytes], ...]:
        batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=max_records)
        return tuple(chain.from_iterable(batches.values()))

    return poll


def _header_int(value: bytes | None) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]  # None is refused like junk
    except (TypeError, ValueError):
        return None


def broker_dead_letter(broker: KafkaBroker, service: str) -> DeadLetter:
    """A `DeadLetter` that publishes through `broker`, keeping the original bytes and key."""

    async def send(record: ConsumerRecord[bytes, bytes], consumer: str, error: str) -> None:
        target = topics.dlq(record.topic)
        await broker.publish(
            record.value or b"",
            topic=target,
            key=record.key,
            headers={
                "dlq-error": error[:2000],
                "dlq-consumer": consumer,
                "dlq-topic": record.topic,
                "dlq-partition": str(record.partition),
                "dlq-offset": str(record.offset),
            },
        )
        metrics.DEAD_LETTERED.labels(service, target).inc()

    return send
