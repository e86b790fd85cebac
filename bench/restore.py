"""Point-in-time restore of one service's database holding N events, beside pg_restore of the same rows.

On a private PostgreSQL 15 (fsync on) that archives its WAL (deploy.local.backup): a base
backup of the cluster, then N events written into the registry's event table (the store's own
schema; rows made by the server with `generate_series`, so the figure is the restore's, not
the writer's), then `restore_database` to a moment after the last one: the scratch server
replays every one of the N events from the archived WAL (the worst case: a base backup taken
just before them), `pg_dump`s the database and `pg_restore`s it in place of the live one.
Baseline from the same run: `pg_restore` alone of a dump of the same database into a fresh one
(which loads the rows with COPY and builds the indexes).

From the topic (`run_from_log`, in the shared stack): the N events the append benchmark recorded
(the registry's real events, hash-chained, ten per command) and the relay benchmark published,
signed at the end by a checkpoint (`runtime.checkpoint`, relayed like any event), are restored
into an empty registry database by `runtime.restore.restore_from_log`, as `./dev restore
--from-log` does: the whole topic read, every link checked, the rows written with COPY and the
registry's inline projection applied in one transaction, the relay's cursor set, then the record
verified end to end (chain, versions, the topic again, the signed checkpoint). Baseline from the
same run: the floor of that work, reading the same topic with a bare consumer and COPYing its
rows into an empty event table.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import workload
from bench.harness import Clock, Figure, Report, Stack
from contracts.envelope import Envelope
from deploy.local.backup import base_backup, prepare, restore_database
from deploy.local.postgres import LocalPostgres, pg_bin
from runtime import checkpoint, relay, store
from runtime.db import Pool, apply_schema, create_pool
from runtime.restore import event_row, prepare_schema, read_log, restore_from_log
from runtime.store import SCHEMA
from services.registry.app import SPEC as REGISTRY

_FILL = """
INSERT INTO events
SELECT p, gen_random_uuid(), 'CadreNominated', 1, 'cadre-' || p, 1, gen_random_uuid(), 'qs.' || (p % 97),
       now(), now(), gen_random_uuid(), repeat('x', 400), md5(p::text) || md5((p + 1)::text)
FROM generate_series($1::bigint, $2::bigint) AS p
"""


async def _fill(dsn: str, events: int) -> None:
    pool = await create_pool(dsn, max_size=2)
    try:
        await apply_schema(pool, SCHEMA)
        for first in range(1, events + 1, 100_000):
            await pool.execute(_FILL, first, min(first + 99_999, events))
    finally:
        await pool.close()


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def run(report: Report, *, events: int) -> None:
    """Measure both and add the figures to `report`."""
    with tempfile.TemporaryDirectory(prefix="cadre-bench-restore-") as name:
        root = Path(name)
        root.chmod(0o755)  # the server's user must reach it
        backups = root / "backups"
        with LocalPostgres(root / "server", archive=prepare(backups)) as server:
            dsn = server.create_database("cadre_registry")
            base_backup(server.dsn("postgres"), backups, label="bench")
            asyncio.run(_fill(dsn, events))
            moment = asyncio.run(_moment(dsn))

            started = time.perf_counter()
            restore_database(server.dsn("postgres"), backups, "cadre_registry", moment)
            pitr = time.perf_counter() - started
            restored = asyncio.run(_count(dsn))

            dump = backups / "baseline.dump"
            subprocess.run([pg_bin("pg_dump"), "-Fc", "-d", dsn, "-f", str(dump)], check=True)  # noqa: S603
            copy = server.create_database("cadre_registry_copy")
            started = time.perf_counter()
            subprocess.run([pg_bin("pg_restore"), "--exit-on-error", "-d", copy, str(dump)], check=True)  # noqa: S603
            baseline = time.perf_counter() - started
    report.add(
        Figure(
            f"point-in-time restore of {events:,} events",
            pitr,
            "s",
            baseline_name="pg_restore of the same rows",
            baseline=baseline,
            notes=f"{restored:,} events back; WAL replayed from a base backup taken before all of them",
        )
    )


async def _moment(dsn: str) -> datetime:
    conn = await asyncpg.connect(dsn)
    try:
        moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return moment
    finally:
        await conn.close()


async def run_from_log(stack: Stack, report: Report, *, source_dsn: str, topic: str) -> None:
    """Restore the registry's record from `topic` (which the relay filled from `source_dsn`) into an empty database."""
    seed = base64.b64encode(os.urandom(32)).decode()
    key = checkpoint.private_key(seed)
    await _sign_and_publish(stack, source_dsn, topic, key)
    total = await _count(source_dsn)

    dsn = await stack.fresh_database("bench_restore_log")
    await prepare_schema(dsn, REGISTRY.tables)
    pool = await create_pool(dsn, max_size=2)
    try:
        await _units(pool)
        with Clock() as restoring:
            result = await restore_from_log(
                pool,
                service="registry",
                deployment="bench",
                bootstrap=stack.kafka,
                topic=topic,
                public_keys=[key.public_key()],
                inline=REGISTRY.inline,
            )
        cadres = int(await pool.fetchval("SELECT count(*) FROM cadres"))
    finally:
        await pool.close()

    floor_dsn = await stack.fresh_database("bench_restore_floor")
    floor = await create_pool(floor_dsn, max_size=2)
    try:
        await apply_schema(floor, SCHEMA)
        with Clock() as baseline:
            records = await read_log(stack.kafka, topic)
            rows = [event_row(Envelope.from_bytes(r.value), r.value.decode()) for r in records]
            async with floor.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("events", records=rows, columns=store.EVENT_COLUMNS)
    finally:
        await floor.close()
    verdict = "restored and verified" if result.ok else "NOT restored: " + "; ".join(result.lines()[:3])
    report.add(
        Figure(
            f"restore from the topic of {total:,} events (read, chain, COPY, inline projection, verify)",
            restoring.seconds,
            "s",
            baseline_name="read the topic (bare consumer) and COPY its rows",
            baseline=baseline.seconds,
            notes=f"{verdict}: {result.restored:,} events, {cadres:,} cadres projected (the units put in first: the"
            f" workload records none), checkpoint at {result.signed}",
        )
    )


async def _units(pool: Pool) -> None:
    """The workload's units, which its log does not record (its events are nominations and their changes)."""
    rows = [
        (
            path.rsplit(".", 1)[-1],
            path,
            ("province", "city", "county", "township")[path.count(".")],
            path.rsplit(".", 2)[-2] if "." in path else None,
        )
        for path in workload.org_paths()
    ]
    await pool.executemany(
        "INSERT INTO org_units (code, name, level, parent_code, path, target_pool_size, registered_at, version)"
        " VALUES ($1, $1, $3, $4, $2, 10, now(), 1)",
        rows,
    )


async def _sign_and_publish(stack: Stack, source_dsn: str, topic: str, key: Ed25519PrivateKey) -> None:
    """Sign the source's chain head and relay the checkpoint to `topic`, as the registry does now and then."""
    pool = await create_pool(source_dsn, max_size=2)
    es = store.EventStore(pool, source="registry", deployment="bench")
    producer = relay.make_producer(stack.kafka, client_id="bench-restore")
    await producer.start()
    try:
        await checkpoint.Checkpointer(pool, es, key).checkpoint()
        outbox = relay.OutboxRelay(pool, producer, service="registry", topic=topic, batch_size=5000)
        while await outbox.publish_pending():
            pass
    finally:
        await producer.stop()
        await es.close()
        await pool.close()
