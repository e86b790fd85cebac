"""Relay: events/s from the store to Kafka vs a bare aiokafka producer sending the same bytes."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from bench.harness import Clock, Figure, Report, Stack
from runtime import db, relay
from runtime.kafka import TopicSpec, ensure_topics


async def run(stack: Stack, report: Report, *, source_dsn: str, topic: str) -> int:
    """Relay every event of `source_dsn` to `topic`; return how many."""
    await ensure_topics(stack.kafka, [TopicSpec(topic, partitions=3), TopicSpec(topic + ".bare", partitions=3)])
    pool = await db.create_pool(source_dsn, max_size=4)
    await db.apply_schema(pool, relay.SCHEMA)
    await pool.execute("DELETE FROM relay_cursor")
    total = int(await pool.fetchval("SELECT count(*) FROM events"))
    producer = relay.make_producer(stack.kafka, client_id="bench-relay")
    await producer.start()
    try:
        outbox = relay.OutboxRelay(pool, producer, service="registry", topic=topic, batch_size=5000)
        with Clock() as relayed:
            while await outbox.publish_pending():
                pass
        rows = await pool.fetch("SELECT coalesce(cadre_id::text, stream_id) AS key, body FROM events ORDER BY position")
        messages = [(row["key"].encode(), row["body"].encode()) for row in rows]
    finally:
        await producer.stop()
    await pool.close()
    bare = await _bare_producer(stack.kafka, topic + ".bare", messages)
    report.add(
        Figure(
            name="relay: store → Kafka (acks=all, idempotent, cursor after acks)",
            value=total / relayed.seconds,
            unit="events/s",
            baseline_name="bare aiokafka producer, same bytes and keys, acks=all",
            baseline=bare,
            notes=f"{total:,} events",
        )
    )
    return total


async def _bare_producer(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        with Clock() as clock:
            acks = [await producer.send(topic, value=value, key=key) for key, value in messages]
            await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return len(messages) / clock.seconds
