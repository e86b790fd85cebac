"""End to end: an HTTP command to the registry until it is in ANOTHER service's projection.

Open loop: commands leave at a fixed rate whatever the answers do (a closed loop
would slow down with the system and hide its queueing). The time a command's event
became visible is the moment the other service's subscriber recorded its id in its
inbox (same transaction as its projection change), read from that service's own
database afterwards, so no polling distorts the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx

from bench.harness import Figure, Report, Series, percentile
from bench.workload import nomination_body
from contracts.envelope import Actor, Role
from deploy.local import stack as local_stack
from runtime.auth import issue_token
from runtime.settings import DEV_AUTH_SECRET
from services.registry import demo

CONSUMERS = ("training", "assessment", "notify", "audit")
"""Services that project the registry's events, in order of preference."""


@contextlib.contextmanager
def _stack(workdir: Path, services: list[str]) -> Iterator[local_stack.Stack]:
    with local_stack.run_stack(workdir, services=services) as running:
        yield running


async def nominate_open_loop(
    url: str, rate: float, seconds: float, org: demo.DemoOrg, reason: str
) -> list[tuple[float, UUID]]:
    """Nominate at `rate` per second for `seconds` whatever the answers do.

    Returns (wall time sent, event id) of every accepted command.
    """
    token = issue_token(DEV_AUTH_SECRET, Actor(user="bench", org_path=org.root.path, role=Role.ORGANIZER))
    headers = {"Authorization": f"Bearer {token}"}
    sent: list[tuple[float, UUID]] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(n: int) -> None:
            unit = org.units[2 + n % (len(org.units) - 2)]
            at = time.time()
            response = await client.post("/cadres", json=nomination_body(n, unit.code, reason), headers=headers)
            if response.status_code == httpx.codes.CREATED:
                sent.append((at, UUID(response.json()["events"][0]["event_id"])))

        tasks = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return sent


async def _seen(dsn: str, ids: list[UUID], deadline: float) -> dict[UUID, float]:
    """When the consumer recorded each event id (waits until all are there or `deadline`)."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            rows = await conn.fetch("SELECT event_id, handled_at FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
            if len(rows) >= len(ids) or time.time() > deadline:
                return {row["event_id"]: row["handled_at"].timestamp() for row in rows}
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def register_units(url: str, org: demo.DemoOrg) -> None:
    """Register the demo organization's units (no cadres) through the registry's API."""
    token = demo.root_token(DEV_AUTH_SECRET, org)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await demo.load(client, token, demo.DemoOrg(units=org.units, cadres=[]))


def run(report: Report, *, rates: tuple[int, ...] = (100, 250, 500), seconds: float = 20.0) -> None:
    """Measure p50/p95/p99 at each offered rate, and the highest rate held without a growing lag."""
    target = next((s for s in CONSUMERS if s in local_stack.available_services()), None)
    if target is None:
        report.add(Figure(name="end to end", value=float("nan"), unit="ms", notes="no service consumes the registry"))
        return
    workdir = Path(tempfile.mkdtemp(prefix="cadre-bench-e2e-"))
    saved = {name: os.environ.pop(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if name in os.environ}
    try:
        with _stack(workdir, ["registry", target]) as running:
            org = demo.plan(seed=31, cadres=0, today=date(2026, 11, 24))
            asyncio.run(register_units(running.services["registry"].url, org))
            dsn = local_stack.database_dsn(running.postgres_dsn, f"cadre_{target}")
            held = 0
            for rate in rates:
                url = running.services["registry"].url
                sent = asyncio.run(nominate_open_loop(url, rate, seconds, org, f"end to end at {rate}/s"))
                seen = asyncio.run(_seen(dsn, [i for _, i in sent], time.time() + 60))
                latencies = [(seen[i] - at) * 1000 for at, i in sent if i in seen]
                tail = latencies[-max(1, len(latencies) // 10) :]
                head = latencies[: max(1, len(latencies) // 10)]
                growing = len(seen) < len(sent) or percentile(tail, 50) > 3 * max(percentile(head, 50), 20)
                if not growing:
                    held = rate
                report.series.append(
                    Series(f"end-to-end latency at {rate} per s", ys=latencies, kind="hist", xlabel="ms")
                )
                report.add(
                    Figure(
                        name=f"end to end at {rate}/s: registry HTTP → {target} projection, p99",
                        value=percentile(latencies, 99),
                        unit="ms",
                        target="p99 <= 50 ms at 500/s" if rate == 500 else "",
                        notes=(
                            f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms;"
                            f" {len(sent)} accepted of {int(rate * seconds)} offered, {len(seen)} seen;"
                            f" lag {'grew' if growing else 'steady'}"
                        ),
                    )
                )
            report.add(
                Figure(
                    name=f"highest offered rate held for {seconds:.0f} s without a growing lag",
                    value=held,
                    unit="commands/s",
                    notes=f"rates tried: {', '.join(map(str, rates))}; measured {datetime.now(UTC):%H:%M} UTC",
                )
            )
    finally:
        os.environ.update(saved)
        shutil.rmtree(workdir, ignore_errors=True)
