"""Projection (and rebuild): events/s consumed and projected exactly once (watermarks), vs raw limits.

Baselines measured in the same run: a bare aiokafka consumer reading the same
topic and decoding JSON, and a COPY of the rows the projection wrote (its
tables) into empty tables with the same indexes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker

from bench.harness import Clock, Figure, Report, Series, Stack
from bench.workload import org_paths
from contracts.envelope import uuid7
from runtime import db, subscriber
from services.registry.projection import SCHEMA as REGISTRY_SCHEMA
from services.registry.projection import RegistryProjection


async def _seed_units(pool: db.Pool) -> None:
    # The units exist before their cadres in the registry's own tables; here they are given.
    rows = [(path.rsplit(".", 1)[-1], path, path.rsplit(".", 1)[0] if "." in path else None) for path in org_paths()]
    await pool.executemany(
        "INSERT INTO org_units (code, name, level, parent_code, path, target_pool_size, registered_at, version)"
        " VALUES ($1, $1, 'county', (SELECT code FROM org_units WHERE path = $3), $2, 10, now(), 1)",
        rows,
    )


async def _dead_letter(_record: ConsumerRecord[bytes, bytes], _consumer: str, error: str) -> None:
    msg = f"bench event dead-lettered: {error}"
    raise RuntimeError(msg)


async def run(stack: Stack, report: Report, *, topic: str, total: int, label: str) -> float:
    """Project `total` events of `topic` into a fresh database, compare with the baselines; events/s."""
    dsn = await stack.fresh_database(f"bench_projection_{label}")
    pool = await db.create_pool(dsn, max_size=4)
    await db.apply_schema(pool, [*subscriber.SCHEMA, *REGISTRY_SCHEMA])
    await _seed_units(pool)
    sub = subscriber.ProjectionSubscriber(
        service="bench",
        projection=RegistryProjection(),
        topics=[topic],
        dead_letter=_dead_letter,
        pool=pool,
        batch_size=5000,
        group_id=f"bench-{label}-{uuid7()}",
    )
    samples = Series(f"projection throughput ({label})", xlabel="s", ylabel="events")
    window: list[float] = []
    # The subscriber's own path (parse a batch while the previous one is written): the window opens
    # when the first batch arrives and closes when the last one is committed.
    received, written = sub._pipelined, sub._write  # noqa: SLF001 - measured where they happen

    async def first(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        if not window:
            window.append(time.perf_counter())
        await received(records)

    async def timed(items: list[Any]) -> None:
        await written(items)
        samples.xs.append(time.perf_counter() - window[0])
        samples.ys.append((samples.ys[-1] if samples.ys else 0) + len(items))
        window[1:] = [time.perf_counter()]

    sub._pipelined = first  # type: ignore[method-assign]  # noqa: SLF001
    sub._write = timed  # type: ignore[method-assign]  # noqa: SLF001
    broker = KafkaBroker(stack.kafka, logger=None)
    sub.attach(broker)
    await broker.start()
    try:
        while not samples.ys or samples.ys[-1] < total:  # noqa: ASYNC110 - the subscriber runs meanwhile
            await asyncio.sleep(0.2)
    finally:
        await broker.stop()
        await sub.close()
    projected = total / (window[1] - window[0])
    bare = await _bare_consumer(stack.kafka, topic, total)
    copied = await _copy_written_rows(pool, total)
    await pool.close()
    report.series.append(samples)
    slower = min(bare, copied)
    report.add(
        Figure(
            name=f"projection ({label}): topic → registry tables, exactly once",
            value=projected,
            unit="events/s",
            baseline_name="slower of bare consumer / COPY of the written rows",
            baseline=slower,
            target=">= 100,000 events/s and >= 0.6 of the slower baseline",
            notes=(
                f"rebuilt in {window[1] - window[0]:.1f} s; bare consumer {bare:,.0f}/s;"
                f" COPY {copied:,.0f} events/s; {total:,} events"
            ),
        )
    )
    return projected


async def _bare_consumer(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    try:
        while not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public call for this
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        decoded: Any = None
        with Clock() as clock:
            while seen < total:
                batch = await consumer.getmany(timeout_ms=500, max_records=10000)
                for records in batch.values():
                    for record in records:
                        decoded = orjson.loads(record.value)
                    seen += len(records)
        del decoded
    finally:
        await consumer.stop()
    return total / clock.seconds


async def _copy_written_rows(pool: db.Pool, total: int) -> float:
    """COPY what the projection wrote into empty tables with the same indexes: events/s equivalent."""
    async with pool.acquire() as conn:
        tables = {}
        for table in ("cadres",):
            tables[table] = [tuple(row) for row in await conn.fetch(f"SELECT * FROM {table}")]  # noqa: S608 - fixed
            await conn.execute(f"DROP TABLE IF EXISTS {table}_copy")
            await conn.execute(f"CREATE TABLE {table}_copy (LIKE {table} INCLUDING ALL)")
        with Clock() as clock:
            async with conn.transaction():
                for table, rows in tables.items():
                    await conn.copy_records_to_table(f"{table}_copy", records=rows)
    return total / clock.seconds
