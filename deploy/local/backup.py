"""Base backups, WAL archiving and point-in-time restore of one service's database (PostgreSQL's own tools).

Every service's database lives in one PostgreSQL cluster, and a cluster is what PostgreSQL
backs up: `pg_basebackup` copies it whole, `archive_command` copies each finished WAL segment
to the archive. A point-in-time restore of *one* service therefore replays a copy of the
cluster to the named moment in a scratch server beside the live one, dumps that service's
database from it (`pg_dump`), and puts it in place of the live database (`pg_restore`); the
other services' databases are not touched (docs/operations.md, ADR 0025).

    ./dev backup  --dsn DSN --dir var/backups                          # a base backup now
    ./dev restore --dsn DSN --dir var/backups --service registry --to 2026-12-06T17:30:00+08:00

The server must archive its WAL into `DIR/wal` (`deploy.local.postgres.archive_settings`; `./dev up` does with
BACKUP_DIR set). Run as root, the tools run as the server's user, which must reach DIR.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deploy.local.postgres import LocalPostgres, _as_user, _client_env, _server_user, pg_bin


def prepare(directory: Path) -> Path:
    """Make the backup directory (`base/`, `wal/`), owned by the server's user; return the WAL archive."""
    user = _server_user()
    for sub in (directory, directory / "base", directory / "wal"):
        sub.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(sub, user.pw_uid, user.pw_gid)
    return directory / "wal"


def _run(command: list[str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, our arguments
        command, capture_output=True, text=True, check=False, env=_client_env(), **_as_user(_server_user())
    )
    if result.returncode != 0:
        msg = f"{what} failed (exit code {result.returncode}): {(result.stdout + result.stderr).strip()[-2000:]}"
        raise RuntimeError(msg)
    return result


def base_backup(dsn: str, directory: Path, *, label: str) -> Path:
    """A base backup of the whole cluster into `directory/base/<label>` (plain files, WAL included)."""
    prepare(directory)
    target = directory / "base" / label
    _run(
        [pg_bin("pg_basebackup"), "-d", dsn, "-D", str(target), "-Fp", "-X", "stream", "--checkpoint=fast"],
        "pg_basebackup",
    )
    _run([pg_bin("pg_verifybackup"), "-n", str(target)], "pg_verifybackup")
    return target


_MARK = (
    "CREATE TABLE IF NOT EXISTS cadre_restore_marks (at timestamptz NOT NULL);"
    " INSERT INTO cadre_restore_marks VALUES (clock_timestamp())"
)
"""A commit after the moment: recovery to a time stops at the first commit past it, and fails without one."""


def switch_wal(dsn: str) -> None:
    """Commit a mark (in the admin database), then close the WAL segment: the archive holds everything until now."""
    _run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", _MARK], "marking the WAL")
    _run([pg_bin("psql"), "-X", "-q", "-d", dsn, "-c", "SELECT pg_switch_wal()"], "pg_switch_wal")


def latest_before(directory: Path, moment: datetime) -> Path:
    """The newest base backup that ended before `moment` (its `backup_label` names its start)."""
    found: list[tuple[datetime, Path]] = []
    for base in (directory / "base").iterdir():
        started = _backup_start(base)
        if started is not None and started < moment:
            found.append((started, base))
    if not found:
        msg = f"no base backup in {directory / 'base'} began before {moment.isoformat()}: restore from the topic"
        raise RuntimeError(msg)
    return max(found)[1]


def _backup_start(base: Path) -> datetime | None:
    label = base / "backup_label"
    if not label.exists():
        return None
    for line in label.read_text().splitlines():
        if line.startswith("START TIME:"):
            return _parse_start(line.removeprefix("START TIME:").strip())
    return None


def _parse_start(text: str) -> datetime:
    """`backup_label`'s START TIME ("2026-12-06 17:30:00 UTC", the server's time zone; ours are UTC)."""
    moment, _, zone = text.rpartition(" ")
    if zone != "UTC":
        msg = f"backup_label's time zone is {zone}, not UTC (the local servers log in UTC): {text}"
        raise RuntimeError(msg)
    return datetime.fromisoformat(moment + "+00:00")


@dataclass(frozen=True)
class Restored:
    """What a point-in-time restore did."""

    database: str
    base: Path
    to: datetime


def _await_promotion(scratch: LocalPostgres, *, timeout: float = 600.0) -> None:
    """Wait until recovery reached its target and the server was promoted.

    The server takes read-only connections as soon as its copy is consistent, long before the
    replay reaches the moment: a dump taken then holds some earlier moment (or misses the database).
    """
    deadline = time.monotonic() + timeout
    query = [pg_bin("psql"), "-X", "-tA", "-d", scratch.dsn("postgres"), "-c", "SELECT pg_is_in_recovery()"]
    while _run(query, "asking whether recovery is over").stdout.strip() != "f":
        if time.monotonic() > deadline:
            msg = f"recovery did not reach its target within {timeout:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.2)


def restore_database(dsn: str, directory: Path, database: str, to: datetime) -> Restored:
    """Put `database` of the live server at `dsn` back as it was at `to` (base backup + archived WAL).

    The live database is dropped and made again from the scratch server's copy; its services
    must be stopped meanwhile. Then `runtime.restore.reconcile` brings relay and consumers along.
    """
    admin = f"{dsn.rpartition('/')[0]}/postgres"
    server_now = _run([pg_bin("psql"), "-X", "-tA", "-d", admin, "-c", "SELECT clock_timestamp()"], "psql").stdout
    if to >= datetime.fromisoformat(server_now.strip().replace(" ", "T")):  # the WAL's times are the server's
        msg = f"{to.isoformat()} has not come yet on the server ({server_now.strip()}): name a moment in the past"
        raise ValueError(msg)
    switch_wal(admin)  # the archive gets everything until now, past `to`
    base = latest_before(directory, to)
    user = _server_user()
    scratch_root = Path(tempfile.mkdtemp(prefix="cadre-restore-", dir=directory))
    dump = scratch_root / "dump"
    try:
        if user is not None:
            os.chown(scratch_root, user.pw_uid, user.pw_gid)
        _run(["cp", "-a", str(base), str(scratch_root / "data")], "copying the base backup")
        with (scratch_root / "data" / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f'\nrestore_command = \'cp "{directory / "wal"}/%f" "%p"\'\n'
                f"recovery_target_time = '{to.isoformat()}'\n"
                "recovery_target_action = 'promote'\n"
                "archive_mode = 'off'\n"
            )
        _run(["touch", str(scratch_root / "data" / "recovery.signal")], "recovery.signal")
        scratch = LocalPostgres(scratch_root, fsync=False)
        scratch.start(timeout=600)
        try:
            _await_promotion(scratch)
            _run([pg_bin("pg_dump"), "-Fc", "-d", scratch.dsn(database), "-f", str(dump)], f"pg_dump of {database}")
        finally:
            scratch.stop()
        base_dsn = dsn.rpartition("/")[0]
        admin = f"{base_dsn}/postgres"
        drop, create = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"'
        psql = [pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin]
        _run([*psql, "-c", drop, "-c", create], f"making {database} again")
        _run(
            [pg_bin("pg_restore"), "--exit-on-error", "-d", f"{base_dsn}/{database}", str(dump)],
            f"pg_restore of {database}",
        )
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return Restored(database=database, base=base, to=to)
