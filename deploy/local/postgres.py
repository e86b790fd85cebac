"""A private PostgreSQL 15 cluster made with the system's binaries, without Docker.

`initdb` into a work directory, start on a free loopback port (unix socket inside the
work directory), one database per service, stop cleanly. As root, the server runs as
the `postgres` system user (initdb refuses root).

    python -m deploy.local.postgres       # run a cluster in the foreground until Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from deploy.local.ports import accepts, free_port

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)


def _bin(name: str) -> str:
    override = os.environ.get("PG_BIN_DIR")
    for directory in ([Path(override)] if override else []) + list(BIN_DIRS):
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        msg = f"{name} not found: install PostgreSQL 15 (Debian: postgresql-15) or set PG_BIN_DIR"
        raise RuntimeError(msg)
    return found


class LocalPostgres:
    """One PostgreSQL cluster on a loopback port, owned by this object."""

    def __init__(self, workdir: Path | None = None, *, fsync: bool = True) -> None:
        self._given = workdir
        self._workdir: Path | None = None
        self._fsync = fsync
        self._started = False
        self.port = 0

    @property
    def workdir(self) -> Path:
        """The cluster's directory (data, socket, log)."""
        if self._workdir is None:
            msg = "not started"
            raise RuntimeError(msg)
        return self._workdir

    def _as_owner(self) -> list[str]:
        # initdb and postgres refuse to run as root: run them as the postgres system user.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - fixed binaries, our arguments
            [*self._as_owner(), *args], capture_output=True, text=True, check=False, cwd=self.workdir
        )
        if result.returncode != 0:
            msg = f"{Path(args[0]).name} failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
            raise RuntimeError(msg)
        return result

    def start(self, timeout: float = 30.0) -> str:
        """Create and start the cluster; return the admin DSN (database `postgres`)."""
        if self._given is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cadre-pg-"))
        else:
            self._workdir = self._given
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
            self.workdir.chmod(0o700)
            # The server must reach its directory through every parent.
            for parent in self.workdir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        data = self.workdir / "data"
        self._run(_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
        self.port = free_port()
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.workdir}",
                "-c listen_addresses=127.0.0.1",
                "-c max_connections=300",
                "-c shared_buffers=256MB",
                f"-c fsync={'on' if self._fsync else 'off'}",
                f"-c synchronous_commit={'on' if self._fsync else 'off'}",
                f"-c full_page_writes={'on' if self._fsync else 'off'}",
            ]
        )
        self._run(
            _bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.workdir / "postgres.log"), "-w", "start"
        )
        self._started = True
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            if time.monotonic() > deadline:
                self.stop()
                msg = f"PostgreSQL did not listen on port {self.port} in {timeout:.0f} s"
                raise RuntimeError(msg)
            time.sleep(0.1)
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        """The DSN of `database` in this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create `name` unless it exists; return its DSN."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            msg = f"not a plain database name: {name!r}"
            raise ValueError(msg)
        psql = [_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA"]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - name checked above
        exists = self._run(*psql, "-c", query).stdout.strip()
        if not exists:
            self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.dsn(name)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the cluster (fast shutdown) and remove a temporary work directory."""
        if self._started:
            self._started = False
            data = self.workdir / "data"
            try:
                self._run(_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-t", str(int(timeout)), "-w", "stop")
            except RuntimeError:
                self._kill(data)
        if self._given is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @staticmethod
    def _kill(data: Path) -> None:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    @property
    def running(self) -> bool:
        """Whether the server accepts connections."""
        return self._started and accepts(self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> int:
    """Run a cluster in the foreground until SIGINT/SIGTERM."""
    cluster = LocalPostgres()
    cluster.start()
    sys.stdout.write(f"DATABASE_URL={cluster.dsn('postgres')}\n")
    sys.stdout.flush()
    stopped = False

    def _stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopped and cluster.running:
            time.sleep(0.2)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main() if sys.argv[1:] == [] else 2)
