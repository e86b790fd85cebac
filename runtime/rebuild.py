"""Rebuild a projection from its topics while the live one keeps serving, then switch to it.

1. **Build** a fresh copy in a new schema (`rebuild_<time>`): the service's tables are
   created there, and the topics are read from their beginning up to their current end
   through the same `ProjectionSubscriber.process` the live consumer runs (with its own
   watermarks in the new schema). The live projection keeps serving and consuming meanwhile.
2. **Switch**, in one transaction: lock the watermarks, then the projection's tables (the
   live consumer waits for a moment; readers too), catch up on what arrived during the
   build, move the live tables into `replaced_<time>` and the rebuilt ones into `public`,
   and hand the consumer's watermarks over. The live consumer then goes on from its
   committed offsets: what the rebuild already applied lies below the watermarks it reads.

A projection can be rebuilt when it names the tables it alone writes (`tables`). Progress
is shown as a bar (events/s, ETA) by the command and exported as metrics
(`cadre_rebuild_events`, `cadre_rebuild_progress_ratio`).

    python -m runtime.rebuild training pool [--keep-replaced] [--metrics-port 9109]

reads the same environment as the service (DATABASE_OWNER_URL: it makes and moves tables, KAFKA_BOOTSTRAP_SERVERS, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiokafka import TopicPartition
from prometheus_client import Counter, Gauge

from runtime import clock, db, logs, subscriber
from runtime.kafka import read_range, topic_ends
from runtime.projection import Projection
from runtime.service import ServiceSpec
from runtime.settings import ServiceSettings, settings_class

log = logs.get(__name__)

REBUILD_EVENTS = Counter("cadre_rebuild_events", "Events read by a projection rebuild", ["service", "projection"])
REBUILD_PROGRESS = Gauge(
    "cadre_rebuild_progress_ratio", "Share of the topics a projection rebuild has read", ["service", "projection"]
)

Progress = Callable[[int, int], None]
"""Called with (messages read, messages to read) after every batch."""


class Rebuildable(Projection, Protocol):
    """A projection that names the tables it alone writes."""

    tables: Sequence[str]


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild did."""

    schema: str
    replaced_schema: str | None
    messages: int
    caught_up: int
    seconds: float


def rebuildable(spec: ServiceSpec, name: str) -> tuple[Rebuildable, list[str]]:
    """The projection `name` of `spec` and its logical topics; ValueError when it cannot be rebuilt."""
    for subscription in spec.projections:
        if subscription.projection is not None and subscription.projection.name == name:
            projection = subscription.projection
            if not getattr(projection, "tables", None):
                msg = f"{spec.name}.{name} names no tables of its own: it cannot be rebuilt"
                raise ValueError(msg)
            return projection, list(subscription.topics)  # type: ignore[return-value]
    known = [s.projection.name for s in spec.projections if s.projection is not None]
    msg = f"{spec.name} has no projection {name!r} fed from topics (it has: {', '.join(known)})"
    raise ValueError(msg)


async def rebuild(
    spec: ServiceSpec,
    settings: ServiceSettings,
    projection_name: str,
    *,
    keep_replaced: bool = True,
    progress: Progress | None = None,
) -> Rebuilt:
    """Rebuild `projection_name` of the service from its topics and switch to it (see the module)."""
    projection, logical = rebuildable(spec, projection_name)
    topics = [settings.topic(t) for t in logical]
    stamp = clock.now().strftime("%Y%m%d%H%M%S%f")
    schema, replaced = f"rebuild_{stamp}", f"replaced_{stamp}"
    started = time.monotonic()
    admin = await asyncpg.connect(settings.owner_dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(
        settings.owner_dsn, min_size=1, max_size=2, server_settings={"search_path": schema, "timezone": "UTC"}
    )
    assert pool is not None
    consumer = subscriber.ProjectionSubscriber(
        service=spec.name, projection=projection, topics=topics, dead_letter=_already_dead_lettered, pool=pool
    )
    labels = (spec.name, projection_name)
    try:
        await db.apply_schema(pool, [*subscriber.SCHEMA, *spec.tables], secured=True)
        ends = await topic_ends(settings.kafka_bootstrap_servers, topics)
        total = sum(ends.values())
        read = 0
        async for records in read_range(settings.kafka_bootstrap_servers, {}, ends, settings.consumer_batch_size):
            await consumer.process(records)
            read += len(records)
            REBUILD_EVENTS.labels(*labels).inc(len(records))
            REBUILD_PROGRESS.labels(*labels).set(read / total if total else 1.0)
            if progress is not None:
                progress(read, total)
        caught_up = await _switch(
            settings, consumer=consumer, projection=projection, schema=schema, replaced=replaced, built_to=ends
        )
        if not keep_replaced:
            live = await asyncpg.connect(settings.owner_dsn)
            try:
                await live.execute(f'DROP SCHEMA "{replaced}" CASCADE')
            finally:
                await live.close()
        REBUILD_PROGRESS.labels(*labels).set(1.0)
    finally:
        await pool.close()
    seconds = time.monotonic() - started
    log.info("projection rebuilt", service=spec.name, projection=projection_name, messages=read, seconds=seconds)
    return Rebuilt(schema, replaced if keep_replaced else None, read, caught_up, seconds)


async def _switch(
    settings: ServiceSettings,
    *,
    consumer: subscriber.ProjectionSubscriber,
    projection: Rebuildable,
    schema: str,
    replaced: str,
    built_to: dict[TopicPartition, int],
) -> int:
    """Lock, catch up, swap the tables and hand the watermarks over, in one transaction."""
    conn = await asyncpg.connect(settings.owner_dsn, server_settings={"timezone": "UTC"})
    try:
        async with conn.transaction():
            # The watermarks first, then the tables: the order the live consumer takes them in. EXCLUSIVE
            # makes its SELECT ... FOR UPDATE wait, so it reads the watermarks handed over below.
            await conn.execute("LOCK TABLE public.consumed IN EXCLUSIVE MODE")
            for table in projection.tables:
                await conn.execute(f'LOCK TABLE public."{table}" IN ACCESS EXCLUSIVE MODE')
            ends = await topic_ends(settings.kafka_bootstrap_servers, consumer.topics)
            caught_up = 0
            batch = settings.consumer_batch_size
            async for records in read_range(settings.kafka_bootstrap_servers, built_to, ends, batch):
                await consumer.process(records)
                caught_up += len(records)
            await conn.execute(f'CREATE SCHEMA "{replaced}"')
            for table in projection.tables:
                await conn.execute(f'ALTER TABLE public."{table}" SET SCHEMA "{replaced}"')
                await conn.execute(f'ALTER TABLE "{schema}"."{table}" SET SCHEMA public')
            await conn.execute("DELETE FROM public.consumed WHERE consumer = $1", consumer.consumer_name)
            await conn.execute(
                f'INSERT INTO public.consumed SELECT * FROM "{schema}".consumed WHERE consumer = $1',  # noqa: S608
                consumer.consumer_name,
            )
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        return caught_up
    finally:
        await conn.close()


async def _already_dead_lettered(record: Any, consumer: str, error: str) -> None:
    """A rebuild meets the poison messages the live consumer already sent to the dead-letter topic."""
    del record, consumer, error


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m runtime.rebuild <service> <projection>`: rebuild with a progress bar."""
    import argparse  # noqa: PLC0415
    from importlib import import_module  # noqa: PLC0415

    from prometheus_client import start_http_server  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="Rebuild a projection from its topics without downtime.")
    parser.add_argument("service")
    parser.add_argument("projection")
    parser.add_argument("--keep-replaced", action="store_true", help="keep the replaced tables in their schema")
    parser.add_argument("--metrics-port", type=int, help="serve the rebuild's metrics on this port meanwhile")
    args = parser.parse_args(argv)
    module = import_module(f"services.{args.service}.app")
    spec: ServiceSpec = module.SPEC
    settings = settings_class(module)()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
        TextColumn("{task.fields[rate]:,.0f} events/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(f"{args.service}.{args.projection}", total=0, rate=0.0)
        began = time.monotonic()

        def show(read: int, total: int) -> None:
            rate = read / max(time.monotonic() - began, 1e-9)
            bar.update(task, completed=read, total=total, rate=rate)

        done = asyncio.run(rebuild(spec, settings, args.projection, keep_replaced=args.keep_replaced, progress=show))
    print(  # noqa: T201
        f"rebuilt {args.service}.{args.projection}: {done.messages:,} events in {done.seconds:.1f} s,"
        f" {done.caught_up:,} caught up at the switch"
        + (f"; old tables in {done.replaced_schema}" if done.replaced_schema else "")
    )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
