"""Outbox relay and subscribers against real Kafka and PostgreSQL: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from contracts import topics
from contracts.envelope import Actor, Envelope, Role, uuid7
from contracts.registry import CadreNominated, CadreProfileUpdated, ProfileChanges
from runtime import db, relay, store, subscriber
from runtime.kafka import ensure_topics, platform_topics
from runtime.projection import Recorded
from tests import support
from tests.infra import Infra
from tests.support import DatabaseFactory, caught_up, command_context, eventually, read_topic

ACTOR = Actor(user="tester", org_path="cn", role=Role.ORGANIZER)


class CountingProjection:
    """Counts every event it applies; refuses events of cadres named 'Refuse Me'."""

    name = "counter"

    def handles(self, event_type: str) -> bool:
        return event_type in {"CadreNominated", "CadreProfileUpdated"}

    async def apply(self, conn: db.Conn, events: Sequence[Recorded]) -> None:
        for recorded in events:
            event = recorded.event
            if isinstance(event, CadreNominated) and event.full_name == "Refuse Me":
                msg = "this projection refuses the event"
                raise ValueError(msg)
            await conn.execute(
                "INSERT INTO applied (event_id, cadre_id, stream_version) VALUES ($1, $2, $3)",
                recorded.envelope.event_id,
                recorded.envelope.cadre_id,
                recorded.envelope.stream_version,
            )


COUNTER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS applied (event_id uuid, cadre_id uuid, stream_version int, n serial PRIMARY KEY)",
)


@pytest.fixture
async def pool(database: DatabaseFactory) -> AsyncIterator[db.Pool]:
    created = await db.create_pool(await database("svc"))
    await db.apply_schema(created, [*store.SCHEMA, *relay.SCHEMA, *subscriber.SCHEMA, *COUNTER_SCHEMA])
    yield created
    await created.close()


@pytest.fixture
async def topic(infra: Infra, namespace: str) -> str:
    await ensure_topics(infra.kafka_bootstrap, platform_topics(f"{namespace}."))
    return f"{namespace}.{topics.REGISTRY}"


def nominated(cadre_id: UUID, name: str = "Wu Gang") -> CadreNominated:
    return support.nominated(cadre_id, full_name=name, org_code="cn")


async def commit_history(es: store.EventStore, cadres: int, updates: int) -> list[UUID]:
    ids = [uuid7() for _ in range(cadres)]
    for cadre_id in ids:
        ctx = command_context(ACTOR)
        events: list[Any] = [nominated(cadre_id)]
        events += [
            CadreProfileUpdated(cadre_id=cadre_id, changes=ProfileChanges(years_of_service=5 + n))
            for n in range(1, updates + 1)
        ]
        await es.append(f"cadre-{cadre_id}", 0, events, ctx=ctx, org_path="cn", cadre_id=cadre_id)
    return ids


class KilledProducer:
    """A producer that dies (as a killed process would) after `sends` messages left it."""

    def __init__(self, real: AIOKafkaProducer, sends: int) -> None:
        self._real = real
        self._left = sends

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self._real.partitions_for(topic))

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        if self._left == 0:
            raise asyncio.CancelledError
        self._left -= 1
        return await self._real.send(*args, **kwargs)


@contextlib.asynccontextmanager
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    made = relay.make_producer(infra.kafka_bootstrap, client_id="test-relay")
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


@contextlib.asynccontextmanager
async def counting_subscriber(infra: Infra, pool: db.Pool, topic: str) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(infra.kafka_bootstrap, logger=None)
    sub = subscriber.ProjectionSubscriber(
        service="test",
        projection=CountingProjection(),
        topics=[topic],
        dead_letter=subscriber.broker_dead_letter(broker, "test"),
        pool=pool,
    )
    sub.attach(broker)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def test_relay_killed_mid_publish_loses_nothing_and_projection_counts_once(
    infra: Infra, pool: db.Pool, topic: str
) -> None:
    es = store.EventStore(pool, source="registry", deployment="local")
    ids = await commit_history(es, cadres=6, updates=4)  # 30 events committed, none published
    total = 30

    async with producer(infra) as real:
        # First relay process: killed after 13 messages left it, before it saved its cursor.
        doomed = relay.OutboxRelay(pool, KilledProducer(real, 13), service="registry", topic=topic)
        with pytest.raises(asyncio.CancelledError):
            await doomed.publish_pending()
        assert await doomed.cursor() == 0
        # Restarted relay: resumes from the cursor, publishes everything.
        restarted = relay.OutboxRelay(pool, real, service="registry", topic=topic, batch_size=7)
        while await restarted.publish_pending():
            pass
        assert await restarted.cursor() == total

    records = await read_topic(infra.kafka_bootstrap, topic, count=total + 13)
    envelopes = [Envelope.from_bytes(r.value) for r in records]
    first_seen: dict[UUID, Envelope] = {}
    per_key: dict[bytes, list[int]] = {}
    for record, envelope in zip(records, envelopes, strict=True):
        assert record.key == str(envelope.cadre_id).encode()
        if envelope.event_id not in first_seen:
            first_seen[envelope.event_id] = envelope
            per_key.setdefault(record.key, []).append(envelope.stream_version)
    committed = {row[0] for row in await pool.fetch("SELECT event_id FROM events")}
    assert set(first_seen) == committed
    assert per_key == {str(i).encode(): [1, 2, 3, 4, 5] for i in ids}

    # Every record says where it stands: its position, and the one before it in its partition.
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for record in records:
        headers = dict(record.headers)
        by_partition.setdefault(record.partition, []).append((int(headers["position"]), int(headers["prev"])))
    for sent in by_partition.values():
        firsts = sorted(set(sent))
        assert [prev for _, prev in firsts] == [0, *[position for position, _ in firsts[:-1]]]

    # A consumer reading the topic (duplicates included) counts each event exactly once.
    async with counting_subscriber(infra, pool, topic):
        await caught_up(pool, "test.counter", pool, topic)
        await eventually(lambda: pool.fetchval("SELECT count(*) FROM applied"), until=lambda n: n >= total)
    applied = await pool.fetch("SELECT event_id, count(*) FROM applied GROUP BY event_id")
    assert len(applied) == total
    assert all(row[1] == 1 for row in applied)
    await es.close()


async def test_redelivered_batch_has_no_second_effect(infra: Infra, pool: db.Pool, topic: str) -> None:
    es = store.EventStore(pool, source="registry", deployment="local")
    await commit_history(es, cadres=3, updates=1)
    async with producer(infra) as real:
        await relay.OutboxRelay(pool, real, service="registry", topic=topic).publish_pending()
    records = await read_topic(infra.kafka_bootstrap, topic, count=6)
    sub = subscriber.ProjectionSubscriber(
        service="test", projection=CountingProjection(), topics=[topic], dead_letter=_no_dead_letter, pool=pool
    )
    await sub.process(records)
    await sub.process(records)  # the same batch again, as after a crash before the offset commit
    assert await pool.fetchval("SELECT count(*) FROM applied") == 6
    await es.close()


async def _no_dead_letter(*_: Any) -> None:
    msg = "nothing should be dead-lettered here"
    raise AssertionError(msg)


async def test_unreadable_messages_go_to_the_dead_letter_topic_and_the_consumer_goes_on(
    infra: Infra, pool: db.Pool, topic: str
) -> None:
    es = store.EventStore(pool, source="registry", deployment="local")
    good = uuid7()
    refused = uuid7()
    for cadre_id, name in ((refused, "Refuse Me"), (good, "Wu Gang")):
        ctx = command_context(ACTOR)
        await es.append(f"cadre-{cadre_id}", 0, [nominated(cadre_id, name)], ctx=ctx, org_path="cn", cadre_id=cadre_id)
    unknown_type = (await es.read_stream(f"cadre-{good}"))[0].envelope.model_copy(
        update={"event_type": "CadreTeleported", "event_id": uuid7()}
    )
    async with producer(infra) as real:
        # Poison first, on the same key as the good event, so order matters.
        await real.send_and_wait(topic, value=b"{not an envelope", key=str(good).encode())
        await real.send_and_wait(topic, value=unknown_type.to_bytes(), key=str(good).encode())
        await relay.OutboxRelay(pool, real, service="registry", topic=topic).publish_pending()

    async with counting_subscriber(infra, pool, topic):
        await caught_up(pool, "test.counter", pool, topic)
        dead = await read_topic(infra.kafka_bootstrap, topics.dlq(topic), count=3)
    assert await pool.fetchval("SELECT cadre_id FROM applied") == good
    errors = sorted(dict(r.headers)["dlq-error"].decode() for r in dead)
    assert errors[0].startswith("ValueError: this projection refuses")
    assert "unknown event type 'CadreTeleported'" in errors[1]
    assert errors[2].startswith("unparseable envelope")
    assert b"{not an envelope" in {r.value for r in dead}
    await es.close()


async def test_a_record_ahead_of_a_gap_is_applied_and_the_gap_awaited_then_filled_once(
    infra: Infra, pool: db.Pool, topic: str
) -> None:
    # Four events of one cadre: one partition. Delivered as a broken link might: 3 and 4 before 2,
    # then everything again.
    es = store.EventStore(pool, source="registry", deployment="local")
    cadre_id = uuid7()
    updates = [CadreProfileUpdated(cadre_id=cadre_id, changes=ProfileChanges(years_of_service=n)) for n in (6, 7, 8)]
    ctx = command_context(ACTOR)
    await es.append(f"cadre-{cadre_id}", 0, [nominated(cadre_id), *updates], ctx=ctx, org_path="cn", cadre_id=cadre_id)
    async with producer(infra) as real:
        await relay.OutboxRelay(pool, real, service="registry", topic=topic).publish_pending()
    first, second, third, fourth = await read_topic(infra.kafka_bootstrap, topic, count=4)
    sub = subscriber.ProjectionSubscriber(
        service="test", projection=CountingProjection(), topics=[topic], dead_letter=_no_dead_letter, pool=pool
    )
    await sub.process([first])
    await sub.process([third, fourth])
    assert await pool.fetchval("SELECT count(*) FROM applied") == 3
    [mark] = await pool.fetch("SELECT low, ahead FROM consumed")
    assert (mark["low"], orjson.loads(mark["ahead"])) == (1, {"3": 2, "4": 3})  # waiting for position 2
    await sub.process([fourth, third])  # repeats of what came early
    await sub.process([first, second, third, fourth])  # the gap filled, and everything again
    assert [row[0] for row in await pool.fetch("SELECT stream_version FROM applied ORDER BY n")] == [1, 3, 4, 2]
    [mark] = await pool.fetch("SELECT low, ahead FROM consumed")
    assert (mark["low"], mark["ahead"]) == (4, "{}")
    await es.close()


def test_a_watermark_tells_repeats_next_and_early_records_apart() -> None:
    mark = subscriber.Watermark()
    assert mark.admit(1, 0) == "next"
    assert mark.admit(1, 0) == "repeat"
    assert mark.admit(5, 4) == "early"  # 4 has not come yet
    assert mark.admit(5, 4) == "repeat"
    assert mark.admit(9, 5) == "early"
    assert (mark.low, mark.ahead) == (1, {5: 4, 9: 5})
    assert mark.admit(4, 1) == "next"  # closes the gap: 5 and 9 follow
    assert (mark.low, mark.ahead) == (9, {})
    assert mark.admit(3, 1) == "repeat"  # below the watermark
    assert mark.admit(12, None) == "next"  # no predecessor named (published by hand): taken as it comes
    assert mark.low == 12


async def test_a_batch_that_cannot_be_written_is_tried_again_in_place_and_its_offsets_committed_after(
    infra: Infra, pool: db.Pool, topic: str
) -> None:
    es = store.EventStore(pool, source="registry", deployment="local")
    await commit_history(es, cadres=4, updates=2)  # 12 events
    async with producer(infra) as real:
        await real.send_and_wait(topic, value=b"{not an envelope", key=b"poison")
        await relay.OutboxRelay(pool, real, service="registry", topic=topic).publish_pending()
    attempts: list[str] = []

    async def flaky_dead_letter(record: Any, consumer: str, error: str) -> None:
        # The dead-letter topic unreachable twice: the whole batch's transaction fails and is tried again.
        attempts.append(error)
        if len(attempts) <= 2:
            msg = "dead-letter topic unreachable"
            raise ConnectionError(msg)
        del record, consumer

    broker = KafkaBroker(infra.kafka_bootstrap, logger=None)
    sub = subscriber.ProjectionSubscriber(
        service="test", projection=CountingProjection(), topics=[topic], dead_letter=flaky_dead_letter, pool=pool
    )
    sub.attach(broker)
    await broker.start()
    try:
        await caught_up(pool, "test.counter", pool, topic)
        await eventually(lambda: _committed(infra, sub.group_id, topic), until=lambda done: done == 13)
    finally:
        await broker.stop()
        await sub.close()
    assert len(attempts) == 3
    assert all(a.startswith("unparseable envelope") for a in attempts)
    assert await pool.fetchval("SELECT count(*) FROM applied") == 12
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM applied") == 12
    await es.close()


async def _committed(infra: Infra, group: str, topic: str) -> int:
    """How many records of `topic` the consumer group `group` has committed."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)
