"""Append: events/s into a service's event store vs plain COPY of the same rows."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

from bench.harness import Clock, Figure, Report, Series, Stack
from bench.workload import ACTOR, Command, commands
from contracts.envelope import uuid7
from runtime import db, store
from runtime.context import CommandContext
from runtime.errors import ConcurrencyError

CONCURRENCY = 512


async def drive(es: store.EventStore, work: list[Command], concurrency: int, samples: Series) -> int:
    """Send the commands, `concurrency` in flight, one version after another; return conflicts."""
    ctx = CommandContext(actor=ACTOR, correlation_id=uuid7())
    conflicts = 0
    done = 0
    started = time.perf_counter()

    async def sender(queue: Iterator[Command]) -> None:
        # `concurrency` of these share one phase's commands: as many in flight, and no semaphore (its
        # wake-up scans every waiting task: with a task per command it was a fifth of the process's CPU).
        nonlocal conflicts, done
        for command in queue:
            try:
                await es.append(
                    command.stream_id,
                    command.expected_version,
                    command.events,
                    ctx=ctx,
                    org_path=command.org_path,
                    cadre_id=command.cadre_id,
                )
            except ConcurrencyError:
                conflicts += 1
            done += len(command.events)

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.1)
            samples.xs.append(time.perf_counter() - started)
            samples.ys.append(done)

    sampler = asyncio.create_task(sample())
    # One stream version after another: a cadre's next command waits for its last.
    for _, phase in itertools.groupby(work, key=lambda c: c.expected_version):
        queue = iter(list(phase))
        await asyncio.gather(*(sender(queue) for _ in range(concurrency)))
    sampler.cancel()
    return conflicts


async def run(stack: Stack, report: Report, *, events: int) -> str:
    """Measure appends of single-event and ten-event commands; return the batched database's DSN."""
    dsn = ""
    for per_command in (1, 10):
        dsn = await stack.fresh_database(f"bench_append_{per_command}")
        pool = await db.create_pool(dsn, max_size=4)
        await db.apply_schema(pool, store.SCHEMA)
        es = store.EventStore(pool, source="registry", deployment="bench", batch_size=1000)
        work = commands(events, per_command=per_command, per_cadre=10 if per_command == 10 else 5)
        total = sum(len(c.events) for c in work)
        samples = Series(f"append throughput, {per_command} event(s) per command", xlabel="s", ylabel="events")
        with Clock() as clock:
            conflicts = await drive(es, work, CONCURRENCY, samples)
        await es.close()
        appended = await pool.fetchval("SELECT count(*) FROM events")
        transactions = await pool.fetchval("SELECT count(DISTINCT recorded_at) FROM events")
        baseline = await _plain_copy(pool, batches=int(transactions))
        await pool.close()
        report.series.append(samples)
        report.add(
            Figure(
                name=f"append, {per_command} event(s) per command ({CONCURRENCY} commands in flight)",
                value=appended / clock.seconds,
                unit="events/s",
                baseline_name="plain COPY of the same rows, same transactions",
                baseline=baseline,
                target=">= 35,000 events/s and >= 0.5 of baseline" if per_command > 1 else "",
                notes=f"{appended:,} of {total:,} events in {transactions:,} group commits; {conflicts} conflicts",
            )
        )
    return dsn


async def _plain_copy(pool: db.Pool, *, batches: int) -> float:
    """COPY the rows the store wrote into an identical table, in as many transactions; rows/s."""
    rows = await pool.fetch(f"SELECT {', '.join(store.EVENT_COLUMNS)} FROM events ORDER BY position")  # noqa: S608
    records = [tuple(row) for row in rows]
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS events_plain")
        await conn.execute("CREATE TABLE events_plain (LIKE events INCLUDING ALL)")
        size = max(1, len(records) // max(1, batches))
        with Clock() as clock:
            for start in range(0, len(records), size):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "events_plain",
                        records=records[start : start + size],
                        columns=store.EVENT_COLUMNS,
                    )
        await conn.execute("DROP TABLE events_plain")
    return len(records) / clock.seconds
