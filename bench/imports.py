"""Import of 100,000 rows from a spreadsheet through the registry's commands, beside the raw HTTP command rate.

The registry runs as its own process (the command its image runs) on the project's Kafka and
PostgreSQL (fsync on). The import is `exchange.importer.run` over real HTTP: cells checked, rows
sent in `POST /batch` requests of 1,000 nominations, each decided by the registry's own route.
Baseline from the same run: nominations sent one per HTTP request, 64 in flight.
Also measured: a second import of the same file (every row answers 409), with and without the
progress record, which is what a resumed import pays for the rows it already sent; and the
registry process's own CPU time per row and the time its threads waited for a CPU (Linux's
/proc/<pid>/schedstat), which tell the work from the machine's load.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.e2e import organizer_tokens, register_units
from bench.harness import Figure, Report
from bench.workload import nomination_body
from contracts.envelope import Actor, Role
from deploy.local import stack as local_stack
from exchange import importer
from exchange.templates import TEMPLATES
from runtime import clock
from runtime.auth import issue_token
from runtime.settings import DEV_AUTH_SECRET
from services.registry import demo

HEADER = [c.key for c in TEMPLATES["cadres"].columns if c.required]


def write_file(path: Path, org: demo.DemoOrg, rows: int) -> None:
    units = [u.code for u in org.units[2:]]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(rows):
            body = nomination_body(n, units[n % len(units)], "import benchmark")
            writer.writerow([f"R{n:07d}", *(body[k] for k in HEADER[1:])])


async def raw_rate(url: str, org: demo.DemoOrg, count: int) -> float:
    """Nominations one per request, 64 in flight, each by an organizer of its unit.

    One actor sending them all would meet the per-actor write limit (429), which the bench
    leaves as deployed; people at many units is also how the load comes in use.
    """
    units = [u.code for u in org.units[2:]]
    tokens = organizer_tokens(org)
    limit = asyncio.Semaphore(64)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(n: int) -> None:
            unit = units[n % len(units)]
            async with limit:
                response = await client.post(
                    "/cadres",
                    json=nomination_body(n, unit, "raw baseline"),
                    headers={"Authorization": f"Bearer {tokens[unit]}"},
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(count)))
        return count / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's time on a CPU and its time runnable but waiting for one, in seconds (all its threads)."""
    on_cpu = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        ran, waited, _ = (task / "schedstat").read_text().split()
        on_cpu, waiting = on_cpu + int(ran), waiting + int(waited)
    return on_cpu / 1e9, waiting / 1e9


async def timed_import(
    url: str, token: str, path: Path, *, keep_progress: bool = True
) -> tuple[float, importer.Report]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
        started = time.perf_counter()
        report = await importer.run(
            client, TEMPLATES["cadres"], path, source="bench", batch=1000, keep_progress=keep_progress
        )
        return time.perf_counter() - started, report


def run(report: Report, *, rows: int = 100_000, baseline_rows: int = 5_000) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cadre-bench-import-"))
    try:
        with local_stack.run_stack(workdir, services=["registry"]) as running:
            url = running.services["registry"].url
            org = demo.plan(seed=31, cadres=0, today=clock.today())
            asyncio.run(register_units(url, org))
            token = issue_token(DEV_AUTH_SECRET, Actor(user="bench", org_path=org.root.path, role=Role.ORGANIZER))
            report.mark()
            baseline = asyncio.run(raw_rate(url, org, baseline_rows))
            path = workdir / "cadres.csv"
            write_file(path, org, rows)
            pid = running.services["registry"].process.pid
            cpu_before, waited_before = cpu_seconds(pid)
            seconds, first = asyncio.run(timed_import(url, token, path))
            cpu_after, waited_after = cpu_seconds(pid)
            cpu, waited = cpu_after - cpu_before, waited_after - waited_before
            again, second = asyncio.run(timed_import(url, token, path, keep_progress=False))
            report.add(
                Figure(
                    name=f"import {rows:,} rows (CSV) through the registry's commands, POST /batch of 1,000",
                    value=rows / seconds,
                    unit="rows/s",
                    baseline_name="one nomination per HTTP request, 64 in flight",
                    baseline=baseline,
                    target=f"{rows:,} rows < 60 s",
                    notes=f"{seconds:.1f} s in all; {first.accepted:,} accepted, {len(first.problems)} problems;"
                    f" load average {os.getloadavg()[0]:.1f} at the end",
                ),
                Figure(
                    name="the registry's CPU time per imported row",
                    value=1000 * cpu / rows,
                    unit="ms/row",
                    notes=f"{cpu:.1f} s on a CPU, {waited:.1f} s runnable but waiting for one (the machine's load),"
                    f" in {seconds:.1f} s",
                ),
                Figure(
                    name=f"the same {rows:,} rows again (all answer 409: nothing added)",
                    value=again,
                    unit="s",
                    notes=f"{second.skipped:,} skipped, {second.accepted} accepted; a resumed import skips"
                    " the requests its progress record names instead",
                ),
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
