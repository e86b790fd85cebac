"""Kafka and PostgreSQL without Docker, and the whole platform on one machine.

This package's own module holds what the local servers (Kafka, PostgreSQL, MirrorMaker 2)
share: how a server process is tied to its owner, stopped (`ManagedProcess`), diagnosed and run
in the foreground; `jvm` fetches the Java ones' class paths.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar

T = TypeVar("T")


class Server(Protocol):
    """What `serve` runs: a local server with a start, a stop and a liveness check."""

    def start(self, timeout: float = ...) -> str:
        """Start the server; return where to reach it."""
        ...

    def stop(self, timeout: float = ...) -> None:
        """Stop the server (idempotent)."""
        ...

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        ...


class ManagedProcess:
    """What every local server launcher shares: one process group, its work directory, stop and `with`.

    A subclass sets `_given` (a work directory named by the caller, kept on stop) in its
    `__init__`, starts its process with `start_new_session=True` into `_process` and its
    directory into `_workdir`, and says how it stops (`_stop_steps`, `_leader_only`).
    """

    _what: ClassVar[str] = "the server"
    """Its name in messages."""
    _leader_only: ClassVar[bool] = False
    """Whether the stop signals go to the group leader only (its children must not get them)."""
    _given: Path | None = None
    _workdir: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server; return where to reach it."""
        raise NotImplementedError

    def _stop_steps(self, timeout: float) -> list[tuple[signal.Signals, float]]:
        """The signals of a clean stop, each with how long to wait for it (SIGKILL follows)."""
        return [(signal.SIGTERM, timeout)]

    @property
    def workdir(self) -> Path:
        """The server's directory (its files, its log), once started."""
        if self._workdir is None:
            msg = f"{self._what} is not started"
            raise RuntimeError(msg)
        return self._workdir

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the group's leader (also the group's id) while started."""
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (the steps of `_stop_steps`, then SIGKILL). Idempotent.

        Removes the work directory if `start` made a temporary one.
        """
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, self._stop_steps(timeout), leader_only=self._leader_only)
        if self._given is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def death_signal_prefix(signame: str) -> list[str]:
    """A command prefix making the child receive `signame` when this process dies.

    Uses `setpriv --pdeathsig` (util-linux), so a broker never outlives a Python
    process that was killed without running its cleanup. The kernel ties the signal
    to the *thread* that started the child, so it is used only from the main thread
    (a worker thread that ends would otherwise take the server with it).
    """
    setpriv = shutil.which("setpriv")
    if not sys.platform.startswith("linux") or setpriv is None:
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", signame, "--"]


def stop_process_group(
    process: subprocess.Popen[bytes],
    steps: Sequence[tuple[signal.Signals, float]],
    *,
    leader_only: bool = False,
) -> int | None:
    """Stop a process started with `start_new_session=True`, and whatever else is in its group.

    Each step sends a signal (to the whole group, or to the leader only when its
    children must not get it) and waits up to its timeout for the leader to exit;
    SIGKILL ends the group if no step did. Stragglers of the group are killed
    after the leader is gone. Returns the leader's exit code.
    """
    for signum, timeout in steps:
        if process.poll() is not None:
            break
        if leader_only:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
        else:
            _signal_group(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
    _signal_group(process.pid, signal.SIGKILL)  # the leader is gone: nothing of its group stays
    return process.returncode


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="local-probe") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist."""
    if not path.exists():
        return f"({path.name} does not exist)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else f"({path.name} is empty)"


def fetch_only(ensure: Callable[[], Path]) -> int:
    """The `fetch` action of a server's command line: download what it runs, print where; the exit code."""
    try:
        sys.stdout.write(f"{ensure()}\n")
    except RuntimeError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


def serve(server: Server, announce: Callable[[], str], timeout: float | None = None) -> int:
    """Run `server` in the foreground until SIGINT or SIGTERM; print `announce()` once it is ready.

    Returns the process exit code: 0 after a requested stop, 1 if the server could
    not start or died on its own.
    """

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Both handlers are set explicitly: a shell starts background jobs with SIGINT ignored.
    previous_int = signal.signal(signal.SIGINT, interrupt)
    previous_term = signal.signal(signal.SIGTERM, interrupt)
    try:
        try:
            if timeout is None:
                server.start()
            else:
                server.start(timeout)
            sys.stdout.write(announce() + "\n")
            sys.stdout.flush()
            while server.running:
                time.sleep(0.2)
            sys.stderr.write("the server exited on its own\n")
        except KeyboardInterrupt:
            return 0
        except RuntimeError as error:
            sys.stderr.write(f"{error}\n")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            server.stop()
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
