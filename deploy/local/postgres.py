"""A private PostgreSQL 15 cluster made with the system's binaries, without Docker.

`initdb` (trust authentication, UTF8, C locale, superuser `postgres`) into a work
directory, then the server runs as a child process in its own session, listening
on a free port of 127.0.0.1 only, with its unix socket inside the work directory.
As root, initdb and the server run as the `postgres` system user (both refuse
root), so the work directory must be reachable by that user.

    python -m deploy.local.postgres                  # a cluster in the foreground until Ctrl-C
    python -m deploy.local.postgres --workdir var/pg # the same, keeping its data in var/pg
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deploy.local import ManagedProcess, death_signal_prefix, serve, tail
from deploy.local.ports import accepts, free_port

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
"""Where PostgreSQL 15's programs are looked for (after `$PG_BIN_DIR`, before PATH)."""
SERVER_USER = "postgres"
"""The system user the server runs as when we are root."""

_DATABASE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_SOCKET_PATH_MAX = 100
"""Longest unix socket path we use (the kernel's limit is 107 bytes)."""
_START_ATTEMPTS = 3


def pg_bin(name: str) -> str:
    """The path of PostgreSQL program `name`: `$PG_BIN_DIR`, then `BIN_DIRS`, then PATH."""
    override = os.environ.get("PG_BIN_DIR")
    for directory in ([Path(override)] if override else []) + list(BIN_DIRS):
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        msg = f"{name} not found: install PostgreSQL 15 (Debian: postgresql-15) or set PG_BIN_DIR"
        raise RuntimeError(msg)
    return found


def _client_env() -> dict[str, str]:
    """This environment without libpq's PG* variables, which would redirect or alter our commands."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _server_user() -> pwd.struct_passwd | None:
    """The user to run initdb and the server as: `postgres` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        msg = f"running as root, and PostgreSQL refuses root, but there is no '{SERVER_USER}' user to run it as"
        raise RuntimeError(msg) from None


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """`subprocess` arguments that run the child as `user` (no PAM, no extra process)."""
    if user is None:
        return {}
    return {
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid),
    }


def _check_reachable(directory: Path, user: pwd.struct_passwd) -> None:
    """Fail clearly unless `user` can search every parent of `directory`."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for parent in reversed(directory.parents):
        info = parent.stat()
        if info.st_uid == user.pw_uid:
            needed = stat.S_IXUSR
        elif info.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            msg = (
                f"PostgreSQL runs as user '{user.pw_name}' (it refuses root) and cannot reach {directory}: "
                f"{parent} is not searchable by that user; use a work directory it can reach "
                f"(for example under /tmp) or `chmod o+x {parent}`"
            )
            raise RuntimeError(msg)


def archive_settings(directory: Path) -> dict[str, str]:
    """Server settings that archive every finished WAL segment into `directory` (never overwriting one)."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"test ! -f '{directory}/%f' && cp '%p' '{directory}/%f'",
        "archive_timeout": "60",  # a quiet server still archives its last minute
    }


class LocalPostgres(ManagedProcess):
    """One PostgreSQL cluster on a loopback port, owned by this object.

    Without `workdir`, a temporary directory holds everything and is removed by
    `stop`. With one, the cluster keeps its data there across restarts (`initdb`
    runs only when the directory holds no cluster); `stop` leaves it in place.
    `fsync=False` trades durability for speed (fsync, synchronous_commit and
    full_page_writes off): for tests.
    """

    _what = "PostgreSQL"
    _leader_only = True

    def _stop_steps(self, timeout: float) -> list[tuple[signal.Signals, float]]:
        """Fast shutdown (SIGINT, as `pg_ctl stop -m fast`), then immediate; to the postmaster only."""
        return [(signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)]

    def __init__(
        self, workdir: Path | None = None, *, fsync: bool = True, port: int | None = None, archive: Path | None = None
    ) -> None:
        self._given = workdir.resolve() if workdir is not None else None
        self._archive = archive.resolve() if archive is not None else None
        """Where finished WAL segments are archived (deploy.local.backup), if anywhere."""
        self._port = port
        """The port to listen on (a restart keeps its address); else a free one is picked."""
        self._workdir: Path | None = None
        self._fsync = fsync
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        """The server's TCP port on 127.0.0.1, once started."""

    def start(self, timeout: float = 30.0) -> str:
        """Create the cluster if needed, start the server; return the admin DSN (database `postgres`).

        Returns once the server accepts connections. On any failure everything
        started is stopped and a `RuntimeError` says why, with the end of
        `postgres.log`.
        """
        if self._process is not None:
            msg = f"PostgreSQL is already started on port {self.port}"
            raise RuntimeError(msg)
        deadline = time.monotonic() + timeout
        user = _server_user()
        initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
        self._workdir = self._given or Path(tempfile.mkdtemp(prefix="cadre-pg-"))
        try:
            self._prepare_workdir(user)
            if not (self.workdir / "data" / "PG_VERSION").exists():
                self._initdb(initdb, user)
            attempts = 1 if self._port else _START_ATTEMPTS
            for attempt in range(1, attempts + 1):
                self.port = self._port or free_port()
                self._launch(postgres, user)
                if self._wait_ready(deadline, timeout, retry_port_clash=attempt < attempts):
                    break
        except BaseException:
            self.stop()
            raise
        return self.dsn("postgres")

    def _prepare_workdir(self, user: pwd.struct_passwd | None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _check_reachable(self.workdir, user)
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
        self.workdir.chmod(0o700)

    def _initdb(self, initdb: str, user: pwd.struct_passwd | None) -> None:
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from a crash
        command = [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]
        if not self._fsync:
            command.append("--no-sync")
        result = subprocess.run(  # noqa: S603 - fixed program, our arguments
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
            env=_client_env(),
            **_as_user(user),
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            msg = f"initdb failed (exit code {result.returncode}): {output}"
            raise RuntimeError(msg)

    def _launch(self, postgres: str, user: pwd.struct_passwd | None) -> None:
        durable = "on" if self._fsync else "off"
        socket_dir = str(self.workdir) if len(f"{self.workdir}/.s.PGSQL.{self.port}") <= _SOCKET_PATH_MAX else ""
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": socket_dir,  # empty (no socket) when the path would be too long
            "max_connections": "300",
            "shared_buffers": "256MB",
            "fsync": durable,
            "synchronous_commit": durable,
            "full_page_writes": durable,
        }
        if self._archive is not None:
            settings.update(archive_settings(self._archive))
        command = [*death_signal_prefix("INT"), postgres, "-D", str(self.workdir / "data"), "-p", str(self.port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with (self.workdir / "postgres.log").open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed program, our arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_client_env(),
                start_new_session=True,
                **_as_user(user),
            )

    def _wait_ready(self, deadline: float, timeout: float, *, retry_port_clash: bool) -> bool:
        """Wait until the server accepts connections; False when it lost a port race (start again)."""
        while not (self._status() == "ready" and accepts(self.port)):
            process = self._process
            if process is not None and process.poll() is not None:
                self._process = None
                log = (self.workdir / "postgres.log").read_text(errors="replace")
                if retry_port_clash and "Address already in use" in log:
                    return False
                msg = f"PostgreSQL exited with code {process.returncode} while starting"
                raise self._failure(msg)
            if time.monotonic() > deadline:
                msg = f"PostgreSQL did not become ready in {timeout:.0f} s"
                raise self._failure(msg)
            time.sleep(0.05)
        return True

    def _status(self) -> str:
        """The server's state as its `postmaster.pid` says (what `pg_ctl -w` waits for: "ready")."""
        try:
            lines = (self.workdir / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return ""
        return lines[7].strip() if len(lines) > 7 else ""  # noqa: PLR2004 - line 8 is the status

    def _failure(self, message: str) -> RuntimeError:
        """`message` with the end of the server's log (read now: a temporary directory goes on stop)."""
        return RuntimeError(f"{message}; last lines of postgres.log:\n{tail(self.workdir / 'postgres.log')}")

    def dsn(self, database: str) -> str:
        """The DSN of `database` in this cluster (user `postgres`, no password)."""
        if self.port == 0:
            msg = "PostgreSQL is not started"
            raise RuntimeError(msg)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists (UTF8, C locale); return its DSN."""
        if not _DATABASE_NAME.fullmatch(name):
            msg = f"not a plain database name (letters, digits, '_', '-'; at most 63): {name!r}"
            raise ValueError(msg)
        if not self._database_exists(name):
            created = self._psql(f'CREATE DATABASE "{name}"')
            if created.returncode != 0 and not self._database_exists(name):  # (or another caller made it)
                msg = f"creating database {name} failed: {created.stderr.strip()}"
                raise RuntimeError(msg)
        return self.dsn(name)

    def _database_exists(self, name: str) -> bool:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - name checked by the caller
        found = self._psql(query)
        if found.returncode != 0:
            msg = f"psql failed on port {self.port}: {found.stderr.strip()}"
            raise RuntimeError(msg)
        return found.stdout.strip() == "1"

    def _psql(self, sql: str) -> subprocess.CompletedProcess[str]:
        command = [pg_bin("psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql]
        return subprocess.run(command, capture_output=True, text=True, check=False, env=_client_env())  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.local.postgres [--workdir DIR] [--no-fsync]`."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.postgres",
        description="Run a private PostgreSQL cluster in the foreground until SIGINT/SIGTERM.",
    )
    parser.add_argument("--workdir", type=Path, help="keep the cluster's data here (default: a temporary directory)")
    parser.add_argument("--no-fsync", action="store_true", help="fast and not crash-safe (tests)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for readiness (default: 30)")
    args = parser.parse_args(argv)
    cluster = LocalPostgres(args.workdir, fsync=not args.no_fsync)
    return serve(cluster, lambda: f"DATABASE_URL={cluster.dsn('postgres')}", args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
