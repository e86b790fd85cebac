"""Point-in-time restore of one service's database holding N events, beside pg_restore of the same rows.

On a private PostgreSQL 15 (fsync on) that archives its WAL (deploy.local.backup): a base
backup of the cluster, then N events written into the registry's event table (the store's own
schema; rows made by the server with `generate_series`, so the figure is the restore's, not
the writer's), then `restore_database` to a moment after the last one: the scratch server
replays every one of the N events from the archived WAL (the worst case: a base backup taken
just before them), `pg_dump`s the database and `pg_restore`s it in place of the live one.
Baseline from the same run: `pg_restore` alone of a dump of the same database into a fresh one
(which loads the rows with COPY and builds the indexes). Restoring from the topic is not built
yet, so it is not measured.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg

from bench.harness import Figure, Report
from deploy.local.backup import base_backup, prepare, restore_database
from deploy.local.postgres import LocalPostgres, pg_bin
from runtime.db import apply_schema, create_pool
from runtime.store import SCHEMA

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
