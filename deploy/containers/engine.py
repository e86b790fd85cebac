"""A Docker engine to build and run the images, and the tools that drive it.

Where `DOCKER_HOST` names an engine, or one answers on the default socket, it is used
as it is. Otherwise the project starts Debian's `dockerd` itself, on a socket and with a
data root of its own (`/run/cadre-docker/docker.sock`, `docker/` in the machine's cache, deploy.paths), so that
nothing else on the machine (testcontainers, another engine) sees it; one such engine
runs on a machine at a time (a file lock), and whoever started it stops it, also when
the work it was started for failed. `DOCKER_HOST` is given to this module's own commands
only, never to the calling process.

Compose v2 and the Mailpit mail catcher are built from their Go modules on first use
(neither is packaged by Debian) and kept in `bin/` of the machine's cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from deploy.local import death_signal_prefix, stop_process_group, tail
from deploy.paths import cache_root

COMPOSE_MODULE: Final = "github.com/docker/compose/v2"
COMPOSE_VERSION: Final = "v2.40.3"
MAILPIT_MODULE: Final = "github.com/axllent/mailpit"
MAILPIT_VERSION: Final = "v1.27.11"
"""The mail catcher: the nearest release to the compose file's that the Go module proxy serves."""
RUN_DIR: Final = Path("/run/cadre-docker")
"""The private engine's socket, pid file and exec root (short: a socket path has 108 bytes at most)."""
DEFAULT_SOCKET: Final = Path("/var/run/docker.sock")
PACKAGES: Final = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
"""What the containers need from Debian, by the program that tells whether it is installed."""


def _run(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own tool list
        list(args), capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=timeout
    )


def _last_lines(done: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    return "\n".join((done.stdout + done.stderr).strip().splitlines()[-lines:]) or "(no output)"


def ensure_packages() -> None:
    """Install docker.io and debootstrap from Debian where they are missing (as root; never starting a service)."""
    missing = sorted({package for program, package in PACKAGES.items() if shutil.which(program) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        msg = (
            f"the containers need Debian's {', '.join(missing)}: run as root, or `apt-get install {' '.join(missing)}`"
        )
        raise RuntimeError(msg)
    # Debian starts an installed daemon unless policy-rc.d forbids it: that engine would answer on the
    # default socket, where the test suite's infrastructure selection would find it.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text(
            "#!/bin/sh\n# Written for a moment by deploy/containers: install without starting.\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=600"]
        for args in (
            ["apt-get", *wait, "update", "-qq"],
            ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", *missing],
        ):
            done = _run(args, env=env)
            if done.returncode != 0:
                msg = f"{' '.join(args)} failed: {_last_lines(done)}"
                raise RuntimeError(msg)
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)


def go_binary(module: str, version: str, package: str, name: str, version_variable: str) -> Path:
    """A program built from the Go module `module@version` (its `package`), kept in `.cache/bin/<name>-<version>`.

    `go install` refuses modules whose go.mod has replace or exclude directives (Compose has
    both), so the module is downloaded and built inside its own directory, where they apply.
    """
    binary = cache_root() / "bin" / f"{name}-{version}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        msg = f"{name} is built from the Go module {module}, and Go is not installed"
        raise RuntimeError(msg)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / f".{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        done = _run([go, "mod", "download", "-json", f"{module}@{version}"])
        if done.returncode != 0:
            msg = f"go mod download {module}@{version} failed: {_last_lines(done)}"
            raise RuntimeError(msg)
        source = Path(json.loads(done.stdout)["Dir"])
        partial = binary.with_name(f"{binary.name}.partial")
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
        ldflags = f"-s -w -X {version_variable}={version}"
        args = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), package]
        done = _run(args, env=env, cwd=source)
        if done.returncode != 0:
            msg = f"building {name} from {module}@{version} failed: {_last_lines(done)}"
            raise RuntimeError(msg)
        partial.rename(binary)
    return binary


def compose_binary() -> Path:
    """Docker Compose v2 (run as `docker-compose`, or placed in a cli-plugins folder as `docker compose`)."""
    return go_binary(COMPOSE_MODULE, COMPOSE_VERSION, "./cmd", "docker-compose", f"{COMPOSE_MODULE}/internal.Version")


def mailpit_binary() -> Path:
    """Mailpit, the mail catcher of the compose file (for the stand-in image)."""
    return go_binary(MAILPIT_MODULE, MAILPIT_VERSION, ".", "mailpit", f"{MAILPIT_MODULE}/config.Version")


@dataclass(frozen=True)
class Engine:
    """A Docker engine: where it answers, and whether this process started it."""

    host: str
    started: bool

    def env(self) -> dict[str, str]:
        """The environment for a command that must talk to this engine (and to no other)."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine."""
        client = shutil.which("docker")
        if client is None:
            msg = "the docker client is not installed (Debian's docker.io brings one)"
            raise RuntimeError(msg)
        return _run([client, *args], env=self.env(), timeout=timeout)

    def check(self, *args: str, timeout: float | None = 600) -> str:
        """Run the docker client; its output, or a RuntimeError with it."""
        done = self.docker(*args, timeout=timeout)
        if done.returncode != 0:
            msg = f"docker {' '.join(args[:3])} failed: {_last_lines(done)}"
            raise RuntimeError(msg)
        return done.stdout

    def versions(self) -> dict[str, str]:
        """The engine's and the client's versions."""
        found = json.loads(self.check("version", "--format", "{{json .}}"))
        return {"client": found["Client"]["Version"], "engine": found["Server"]["Version"]}


def answers(host: str) -> bool:
    """Whether a Docker engine answers at `host` (a docker client URL)."""
    client = shutil.which("docker")
    if client is None:
        return False
    try:
        done = _run([client, "version", "--format", "{{.Server.Version}}"], env={**os.environ, "DOCKER_HOST": host},
                    timeout=10)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@contextlib.contextmanager
def engine(timeout: float = 60.0) -> Iterator[Engine]:
    """The engine `DOCKER_HOST` names, else one on the default socket, else a private one started here."""
    given = os.environ.get("DOCKER_HOST")
    if given:
        if not answers(given):
            msg = f"no Docker engine answers at DOCKER_HOST={given}"
            raise RuntimeError(msg)
        yield Engine(given, started=False)
        return
    default = f"unix://{DEFAULT_SOCKET}"
    if DEFAULT_SOCKET.exists() and answers(default):
        yield Engine(default, started=False)
        return
    with private_engine(timeout) as started:
        yield started


@contextlib.contextmanager
def private_engine(timeout: float = 60.0) -> Iterator[Engine]:
    """Start Debian's dockerd on its own socket and data root; stop it (and its containers) at the end."""
    ensure_packages()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    socket = RUN_DIR / "docker.sock"
    host = f"unix://{socket}"
    data = cache_root() / "docker"
    data.mkdir(parents=True, exist_ok=True)
    log = data / "dockerd.log"
    with (RUN_DIR / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one private engine per machine: its bridge and iptables chains are shared
        _end_leftover(RUN_DIR / "dockerd.pid")
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    *death_signal_prefix("TERM"),
                    "dockerd",
                    "--host", host,
                    "--data-root", str(data / "root"),
                    "--exec-root", str(RUN_DIR / "exec"),
                    "--pidfile", str(RUN_DIR / "dockerd.pid"),
                    "--log-level", "warn",
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while not answers(host):
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"dockerd did not start (exit code {process.poll()}); the end of {log}:\n{tail(log)}"
                    raise RuntimeError(msg)
                time.sleep(0.3)
            yield Engine(host, started=True)
        finally:
            # dockerd stops its containers (each with its own grace period) and its containerd on SIGTERM.
            stop_process_group(process, [(signal.SIGTERM, 90.0)], leader_only=True)
            socket.unlink(missing_ok=True)


def _end_leftover(pidfile: Path) -> None:
    """End a private dockerd left by a run that was killed before it could stop it (we hold the lock)."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.2)
    pidfile.unlink(missing_ok=True)


def temporary_dir(prefix: str) -> Path:
    """A fresh directory under `.cache/tmp` (same file system as the caches, so renames are atomic)."""
    root = cache_root() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
