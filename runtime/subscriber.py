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

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage

from contracts import catalog, topics
from contracts.envelope import Envelope
from contracts.topics import dlq as dead_letter_topic
from runtime import logs, metrics
from runtime.db import Conn, Pool, unreachable
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


async def _raw_body(_: StreamMessage[Any]) -> None:
    # The handler parses each record itself, so one bad message cannot stall the batch.
    return None


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
            batch_timeout_ms=50,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_raw_body,
        )
        self._subscriber = subscriber

        async def handle(message: KafkaMessage) -> None:
            raw = message.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            await self.process(records)
            self._record_lag(records)

        subscriber(handle)

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
            from aiokafka import TopicPartition  # noqa: PLC0415 - keeps the hot import list short

            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self._service, self.consumer_name, topic, str(partition)).set(
                    highwater - offset - 1
                )

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle one batch: parse, drop repeats, project, dead-letter, move the watermarks, in one transaction."""
        items = [self._parse(record) for record in records]
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await self._admit(conn, items)
            todo = [item for item in fresh if item.outcome == "applied"]
            if todo:
                await self._apply(conn, todo)
            dead = [item for item in fresh if item.outcome == "dead"]
            for item in dead:
                await self._dead_letter(item.record, self.consumer_name, item.error or "")
        for outcome in ("applied", "skipped", "dead"):
            count = sum(1 for item in fresh if item.outcome == outcome)
            if count:
                metrics.CONSUMED.labels(self._service, self.consumer_name, outcome).inc(count)
        repeats = len(items) - len(fresh)
        if repeats:
            metrics.CONSUMED.labels(self._service, self.consumer_name, "repeat").inc(repeats)
        if dead:
            metrics.HANDLER_ERRORS.labels(self._service, self.consumer_name).inc(len(dead))

    def _parse(self, record: ConsumerRecord[bytes, bytes]) -> _Item:
        item = _Item(record=record)
        headers = dict(record.headers or ())
        with contextlib.suppress(KeyError, ValueError):
            item.position = int(headers[POSITION_HEADER])
            item.prev = int(headers[PREV_HEADER])
        try:
            envelope = Envelope.from_bytes(record.value or b"")
        except ValueError as error:
            item.outcome, item.error = "dead", f"unparseable envelope: {error}"
            return item
        if not self.projection.handles(envelope.event_type):
            try:
                catalog.model_for(envelope.event_type)
            except catalog.UnknownEventError as error:
                item.outcome, item.error = "dead", str(error)
            else:
                item.outcome = "skipped"
            return item
        try:
            item.recorded = Recorded.from_envelope(envelope)
        except ValueError as error:  # UnknownEventError and pydantic's ValidationError
            item.outcome, item.error = "dead", f"invalid {envelope.event_type}: {error}"
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

    async def _apply(self, conn: Conn, todo: list[_Item]) -> None:
        batch = [item.recorded for item in todo if item.recorded is not None]
        try:
            async with conn.transaction():
                await self.projection.apply(conn, batch)
        except Exception as error:  # narrowed below, one event at a time
            if unreachable(error):
                raise  # not the events' fault: the whole batch is tried again, nothing is dead-lettered
            for item in todo:
                if item.recorded is None:
                    continue
                try:
                    async with conn.transaction():
                        await self.projection.apply(conn, [item.recorded])
                except Exception as error:  # the event goes to the dead-letter topic
                    if unreachable(error):
                        raise
                    log.warning(
                        "projection refused event",
                        consumer=self.consumer_name,
                        event_id=str(item.recorded.envelope.event_id),
                        error=repr(error),
                    )
                    item.outcome, item.error = "dead", f"{type(error).__name__}: {error}"


def _json(ahead: dict[int, int]) -> str:
    return orjson.dumps({str(k): v for k, v in ahead.items()}).decode()


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
