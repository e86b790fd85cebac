"""Footprint: time from the start command to ready, and resident memory idle and under load.

Memory is PSS (proportional set size, /proc/<pid>/smaps_rollup): shared pages are
split between the processes sharing them, so the numbers add up honestly across
PostgreSQL's many processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import e2e
from bench.harness import Clock, Figure, Report
from deploy.local import stack as local_stack
from runtime import clock
from services.registry import demo


def pss_kib(pid: int) -> int:
    """PSS of one process in KiB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _tree(pid: int) -> list[int]:
    found = [pid]
    for child in _children(pid):
        found += _tree(child)
    return found


def _processes_named(fragment: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if fragment in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


def memory(stack: local_stack.Stack, workdir: Path) -> dict[str, float]:
    """MiB of PSS per part of the stack."""
    parts = {name: sum(pss_kib(p) for p in _tree(svc.process.pid)) for name, svc in stack.services.items()}
    parts["kafka"] = sum(pss_kib(p) for root in _processes_named(str(workdir / "kafka")) for p in _tree(root))
    # Only the postmaster's command line names its directory; its children are its workers.
    parts["postgresql"] = sum(pss_kib(p) for root in _processes_named("cadre-pg-") for p in _tree(root))
    return {name: kib / 1024 for name, kib in parts.items()}


async def _load(url: str, seconds: float, rate: float) -> int:
    """Nominate cadres at a fixed rate for `seconds`; return how many were accepted."""
    org = demo.plan(seed=21, cadres=0, today=clock.today())
    await e2e.register_units(url, org)
    return len(e2e.nominate_open_loop(url, int(rate), seconds, org, "footprint load").accepted)


@contextlib.contextmanager
def _own_infrastructure() -> Iterator[None]:
    # The figure is about the project's own stack, even when the run was given servers.
    saved = {name: os.environ.pop(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run(report: Report) -> None:
    """Start the whole local stack as `./dev up` does, then measure it idle and under load."""
    workdir = Path(tempfile.mkdtemp(prefix="cadre-bench-stack-"))
    try:
        with _own_infrastructure(), Clock() as startup, local_stack.run_stack(workdir) as running:
            ready = startup.started
            ready_seconds = time.perf_counter() - ready
            time.sleep(5)  # let start-up garbage settle before the idle reading
            idle = memory(running, workdir)
            registry = running.services["registry"].url
            accepted = asyncio.run(_load(registry, seconds=20, rate=200))
            loaded = memory(running, workdir)
        report.add(
            Figure(
                name="start command to ready (Kafka, PostgreSQL, every service; jars cached)",
                value=ready_seconds,
                unit="s",
                target="<= 20 s",
                notes=f"services: {', '.join(running.services)}",
            ),
            Figure(
                name="whole stack idle, PSS",
                value=sum(idle.values()),
                unit="MiB",
                target="<= 1.5 GiB",
                notes=", ".join(f"{k} {v:.0f}" for k, v in idle.items()),
            ),
            Figure(
                name="whole stack after 20 s at 200 nominations/s, PSS",
                value=sum(loaded.values()),
                unit="MiB",
                notes=", ".join(f"{k} {v:.0f}" for k, v in loaded.items()) + f"; {accepted} nominations accepted",
            ),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
