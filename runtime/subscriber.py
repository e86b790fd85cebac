"""Subscribers: fold another service's topic into this service's projection, exactly once.

Each batch from Kafka is handled in one database transaction that both updates
the projection and records every event id in the `inbox`; the offset is
committed to Kafka only afterwards. A redelivered event (after a crash, a
rebalance, or the same event reaching us by a second path) finds its id in the
inbox and has no second effect. A message that cannot be parsed, names an
unknown event type, or makes the projection raise goes to `<topic>.dlq` with
the error, is recorded as dead in the inbox, and the subscriber moves on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

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
from runtime.db import Conn, Pool
from runtime.projection import Projection, Recorded

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS inbox (
        consumer      text NOT NULL,
        event_id      uuid NOT NULL,
        topic         text NOT NULL,
        partition     int NOT NULL,
        kafka_offset  bigint NOT NULL,
        outcome       text NOT NULL CHECK (outcome IN ('applied', 'skipped', 'dead')),
        error         text,
        handled_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (consumer, event_id)
    )
    """,
)

DeadLetter = Callable[["ConsumerRecord[bytes, bytes]", str, str], Awaitable[None]]
"""Sends (record, consumer name, error) to the record's dead-letter topic."""


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord[bytes, bytes]
    recorded: Recorded | None = None
    event_id: UUID | None = None
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
        """Handle one batch: parse, drop repeats, project, dead-letter, record, in one transaction."""
        items = [self._parse(record) for record in records]
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await self._claim(conn, items)
            todo = [item for item in fresh if item.outcome == "applied"]
            if todo:
                await self._apply(conn, todo)
            dead = [item for item in fresh if item.outcome == "dead"]
            for item in dead:
                await self._dead_letter(item.record, self.consumer_name, item.error or "")
            if dead:
                await conn.executemany(
                    "UPDATE inbox SET outcome = 'dead', error = $3 WHERE consumer = $1 AND event_id = $2",
                    [(self.consumer_name, item.event_id, item.error) for item in dead],
                )
        for outcome in ("applied", "skipped", "dead"):
            count = sum(1 for item in fresh if item.outcome == outcome)
            if count:
                metrics.CONSUMED.labels(self._service, self.consumer_name, outcome).inc(count)
        if dead:
            metrics.HANDLER_ERRORS.labels(self._service, self.consumer_name).inc(len(dead))

    def _parse(self, record: ConsumerRecord[bytes, bytes]) -> _Item:
        item = _Item(record=record)
        try:
            envelope = Envelope.from_bytes(record.value or b"")
        except ValueError as error:
            item.outcome, item.error = "dead", f"unparseable envelope: {error}"
            return item
        item.event_id = envelope.event_id
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

    async def _claim(self, conn: Conn, items: list[_Item]) -> list[_Item]:
        """Record every new event id in the inbox; return the items seen for the first time.

        Messages without a readable event id get a synthetic one from their
        position on the topic, so even those are dead-lettered only once.
        """
        unique: dict[UUID, _Item] = {}
        for item in items:
            if item.event_id is None:
                item.event_id = _position_id(item.record)
            unique.setdefault(item.event_id, item)
        rows = await conn.fetch(
            "INSERT INTO inbox (consumer, event_id, topic, partition, kafka_offset, outcome, error)"
            " SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::text[], $7::text[])"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            self.consumer_name,
            [i.event_id for i in unique.values()],
            [i.record.topic for i in unique.values()],
            [i.record.partition for i in unique.values()],
            [i.record.offset for i in unique.values()],
            [i.outcome for i in unique.values()],
            [i.error for i in unique.values()],
        )
        claimed = {row["event_id"] for row in rows}
        return [item for event_id, item in unique.items() if event_id in claimed]

    async def _apply(self, conn: Conn, todo: list[_Item]) -> None:
        batch = [item.recorded for item in todo if item.recorded is not None]
        try:
            async with conn.transaction():
                await self.projection.apply(conn, batch)
        except Exception:  # noqa: BLE001 - narrowed below, one event at a time
            for item in todo:
                if item.recorded is None:
                    continue
                try:
                    async with conn.transaction():
                        await self.projection.apply(conn, [item.recorded])
                except Exception as error:  # noqa: BLE001 - the event goes to the dead-letter topic
                    log.warning(
                        "projection refused event",
                        consumer=self.consumer_name,
                        event_id=str(item.event_id),
                        error=repr(error),
                    )
                    item.outcome, item.error = "dead", f"{type(error).__name__}: {error}"


def _position_id(record: ConsumerRecord[bytes, bytes]) -> UUID:
    import uuid  # noqa: PLC0415

    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{record.topic}/{record.partition}/{record.offset}")


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
