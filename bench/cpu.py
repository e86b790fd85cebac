"""CPU per event of the append and projection paths: steadier than rates on a shared machine.

On a machine other work shares, a rate says as much about the neighbours as about the code.
The CPU time a path costs per event moves far less: this benchmark runs each path against
the run's PostgreSQL without Kafka and reports, per event, this process's CPU time
(`time.process_time`) and the CPU time of the PostgreSQL backends that served it (read from
/proc, so only for a server on this machine; background writers are not counted).

- append: the bench's commands (1 and 10 events each, 512 in flight) into a fresh store;
- projection: the same events, as the relay would publish them (position headers, three
  partitions), through `ProjectionSubscriber.process` into the registry's tables in batches
  of 5,000, without Kafka (the consumer's own cost is in the projection figure's baseline).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from bench import append
from bench.harness import Figure, Report, Series, Stack
from bench.projection import _dead_letter, _seed_units
from bench.workload import commands
from runtime import db, relay, store, subscriber
from services.registry.projection import SCHEMA as REGISTRY_SCHEMA
from services.registry.projection import RegistryProjection

BATCH = 5000
PARTITIONS = 3


def _backend_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (0 for those not found)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class _Meter:
    """This process's and the pool's backends' CPU seconds over a block."""

    def __init__(self, backends: list[int]) -> None:
        self._backends = backends
        self.python = 0.0
        self.postgres = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        python, postgres = time.process_time(), _backend_seconds(self._backends)
        yield
        self.python = time.process_time() - python
        self.postgres = _backend_seconds(self._backends) - postgres


async def _backends(pool: db.Pool, size: int) -> list[int]:
    """The backend pids of every connection of `pool` (all opened: `size` held at once)."""
    held = [await pool.acquire() for _ in range(size)]
    try:
        return [int(await conn.fetchval("SELECT pg_backend_pid()")) for conn in held]
    finally:
        for conn in held:
            await pool.release(conn)


async def _append(stack: Stack, per_command: int, events: int) -> tuple[_Meter, list[tuple[Any, ...]]]:
    dsn = await stack.fresh_database(f"bench_cpu_append_{per_command}")
    pool = await db.create_pool(dsn, max_size=4)
    try:
        await db.apply_schema(pool, store.SCHEMA)
        meter = _Meter(await _backends(pool, 4))
        es = store.EventStore(pool, source="registry", deployment="bench", batch_size=1000)
        work = commands(events, per_command=per_command, per_cadre=10 if per_command == 10 else 5)
        with meter.measure():
            await append.drive(es, work, append.CONCURRENCY, Series("cpu"))
            await es.close()
        rows = [tuple(r) for r in await pool.fetch(relay.EVENTS + " ORDER BY position")]
    finally:
        await pool.close()
    return meter, rows


def _records(rows: list[tuple[Any, ...]]) -> list[ConsumerRecord[bytes, bytes]]:
    """The events as the relay publishes them: keyed, in position order, each naming its partition predecessor."""
    heads: dict[int, int] = {}
    out: list[ConsumerRecord[bytes, bytes]] = []
    for position, key, event_id, event_type, body in rows:
        partition = hash(key) % PARTITIONS
        headers = [
            ("event_type", event_type.encode()),
            ("event_id", str(event_id).encode()),
            (relay.POSITION_HEADER, str(position).encode()),
            (relay.PREV_HEADER, str(heads.get(partition, 0)).encode()),
        ]
        heads[partition] = position
        value = body if isinstance(body, bytes) else body.encode()
        out.append(
            ConsumerRecord("bench", partition, len(out), 0, 0, key.encode(), value, None, 0, len(value), headers)
        )
    return out


async def _project(stack: Stack, records: list[ConsumerRecord[bytes, bytes]]) -> _Meter:
    dsn = await stack.fresh_database("bench_cpu_projection")
    pool = await db.create_pool(dsn, max_size=2)
    try:
        await db.apply_schema(pool, [*subscriber.SCHEMA, *REGISTRY_SCHEMA])
        await _seed_units(pool)
        meter = _Meter(await _backends(pool, 2))
        sub = subscriber.ProjectionSubscriber(
            service="bench", projection=RegistryProjection(), topics=["bench"], dead_letter=_dead_letter, pool=pool
        )
        with meter.measure():
            for start in range(0, len(records), BATCH):
                await sub.process(records[start : start + BATCH])
    finally:
        await pool.close()
    return meter


async def run(stack: Stack, report: Report, *, events: int) -> None:
    """CPU per event of appends (1 and 10 per command) and of the projection of the single-event run."""
    single: list[tuple[Any, ...]] = []
    for per_command in (1, 10):
        meter, rows = await _append(stack, per_command, events)
        single = single or rows
        report.add(_figure(f"CPU per event: append, {per_command} event(s) per command", meter, len(rows)))
    meter = await _project(stack, _records(single))
    report.add(_figure("CPU per event: projection into the registry's tables (no Kafka)", meter, len(single)))


def _figure(name: str, meter: _Meter, events: int) -> Figure:
    return Figure(
        name=name,
        value=meter.python / events * 1e6,
        unit="µs (Python)",
        notes=(
            f"PostgreSQL backends {meter.postgres / events * 1e6:.1f} µs per event; {events:,} events;"
            f" load {os.getloadavg()[0]:.1f}"
        ),
    )
