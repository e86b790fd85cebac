"""Point-in-time restore of one service's database from a base backup and the archived WAL (real PostgreSQL 15)."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from deploy.local.backup import base_backup, prepare, restore_database
from deploy.local.postgres import LocalPostgres
from tests.support import events_in, fetch_rows


async def _append(dsn: str, first: int, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS events (position bigint PRIMARY KEY, body text NOT NULL)")
        await conn.executemany(
            "INSERT INTO events VALUES ($1, $2)", [(p, f"event {p}") for p in range(first, first + count)]
        )
    finally:
        await conn.close()


async def test_a_dropped_database_comes_back_as_it_was_at_the_named_moment() -> None:
    # The server's user (postgres, when the tests run as root) must reach the directories: under /tmp.
    with tempfile.TemporaryDirectory(prefix="cadre-backup-") as name:
        root = Path(name)
        root.chmod(0o755)
        backups = root / "backups"
        archive = prepare(backups)
        with LocalPostgres(root / "server", archive=archive) as server:
            registry, training = server.create_database("cadre_registry"), server.create_database("cadre_training")
            await _append(registry, 1, 100)
            await _append(training, 1, 10)
            base = base_backup(server.dsn("postgres"), backups, label="first")
            assert (base / "backup_label").exists()
            await _append(registry, 101, 50)  # after the base backup: only the archived WAL has these
            conn = await asyncpg.connect(registry)
            moment = await conn.fetchval("SELECT clock_timestamp()")
            await conn.close()
            await _append(registry, 151, 25)  # after the moment: not restored
            await _append(training, 11, 5)

            admin = await asyncpg.connect(server.dsn("postgres"))
            await admin.execute('DROP DATABASE "cadre_registry" WITH (FORCE)')  # the disk died
            await admin.close()

            restored = restore_database(server.dsn("postgres"), backups, "cadre_registry", moment)
            assert restored.base == base
            assert await events_in(registry) == 150  # everything committed before the moment, nothing after
            positions = [row[0] for row in await fetch_rows(registry, "SELECT position FROM events ORDER BY position")]
            assert positions == list(range(1, 151))  # no gap, nothing twice
            assert await events_in(training) == 15  # the other service's database was not touched

            # A quiet moment (nothing committed after it) restores too: the restore commits a mark past it.
            conn = await asyncpg.connect(registry)
            quiet = await conn.fetchval("SELECT clock_timestamp()")
            await conn.close()
            restore_database(server.dsn("postgres"), backups, "cadre_registry", quiet)
            assert await events_in(registry) == 150
            with pytest.raises(ValueError, match="has not come yet"):  # a moment the server has not reached
                restore_database(server.dsn("postgres"), backups, "cadre_registry", quiet + timedelta(hours=1))
            assert await events_in(registry) == 150  # refused before anything was dropped
