"""Multi-level sync: lag from a county's commit to the city's and the province's projections, convergence
after a backlog, and the memory of the three-level topology.

The topology is `./dev up --levels 3` (deploy/local/levels.py): three stacks as processes and one
MirrorMaker 2. Nominations go to the county's registry at a fixed rate (vegeta, open loop); a
watcher polls the city's and the province's registry tables every 5 ms for them. Latency is from
the county's commit (`recorded_at` in its event table) to the row showing up. The baseline of the
same run is the bare copy: when each record first appears in the city's cluster on MirrorMaker's
copy of the county's topic (a plain consumer), so what the platform adds on top of MirrorMaker is
the difference (signed checkpoints every second, verification, release, the relay, the projection).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench import e2e
from bench.footprint import _own_infrastructure, _processes_named, _tree, pss_kib
from bench.harness import Figure, Report, Series, ThreadedWatcher, percentile
from bench.workload import NAMESPACE, nomination_body
from contracts import topics
from contracts.envelope import Actor, Role, uuid7
from contracts.registry import CadreNominated
from deploy.local import levels as local_levels
from deploy.local import stack as local_stack
from runtime import clock, db, store
from runtime.context import CommandContext
from runtime.received import cadre_stream
from services.registry import demo

PROVINCE, CITY, COUNTY = (level.name for level in local_levels.LEVELS)


def _dsn(running: local_levels.Running, level: str, service: str) -> str:
    stack = running.stacks[level]
    return local_stack.database_dsn(stack.postgres_dsn, local_stack.database_name(stack.namespace, service))


class CopyWatcher(ThreadedWatcher):
    """A plain consumer at the city on MirrorMaker's copy of the county's registry topic: first arrival per key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self._bootstrap = bootstrap
        self._topic = topic
        self.seen: dict[str, float] = {}

    async def _watch(self) -> None:
        consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=self._bootstrap, auto_offset_reset="latest", group_id=None
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            self.seen.setdefault(record.key.decode(), now)
        finally:
            await consumer.stop()


async def _committed(dsn: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT cadre_id, recorded_at FROM events WHERE event_type = 'CadreNominated' AND cadre_id = ANY($1)", ids
        )
    finally:
        await conn.close()
    return {row["cadre_id"]: row["recorded_at"].timestamp() for row in rows}


def _lag(report: Report, running: local_levels.Running, rate: int, seconds: float) -> None:
    county = running.stacks[COUNTY]
    org = demo.plan(seed=41, cadres=0, today=clock.today()).part(local_levels.LEVELS[2].root)
    reason = f"sync lag at {rate}/s"
    ids = [uuid.UUID(str(nomination_body(n, "x", reason)["cadre_id"])) for n in range(e2e.attack_size(rate, seconds))]
    mirrored = f"{COUNTY}.{topics.REGISTRY}"
    go = threading.Event()
    with (
        CopyWatcher(running.stacks[CITY].kafka_bootstrap, mirrored) as copies,
        e2e.Watcher(_dsn(running, CITY, "registry"), "cadres", ids, rate=rate, started=go) as city,
        e2e.Watcher(_dsn(running, PROVINCE, "registry"), "cadres", ids, rate=rate, started=go) as province,
    ):
        report.mark()
        attack = e2e.nominate_open_loop(county.services["registry"].url, rate, seconds, org, reason, started=go)
        accepted = [cadre for _, cadre in attack.accepted]
        deadline = time.monotonic() + 120
        city.wait(deadline, set(accepted))
        province.wait(deadline, set(accepted))
    committed = asyncio.run(_committed(_dsn(running, COUNTY, "registry"), accepted))

    def latencies(seen: dict[uuid.UUID, float]) -> list[float]:
        return [(seen[c] - committed[c]) * 1000 for c in accepted if c in seen and c in committed]

    copy_ms = [
        (copies.seen[str(c)] - committed[c]) * 1000 for c in accepted if str(c) in copies.seen and c in committed
    ]
    one, two = latencies(city.seen), latencies(province.seen)
    for name, values in (("one hop (county → city)", one), ("two hops (county → city → province)", two)):
        report.series.append(Series(f"sync {name} at {rate}/s", ys=values, kind="hist", xlabel="ms"))
    notes = (
        f"{len(accepted)} committed at the county; seen at the city {len(one)}, at the province {len(two)};"
        f" MirrorMaker copy p50 {percentile(copy_ms, 50):.0f} ms"
    )
    report.add(
        Figure(
            name=f"sync lag at {rate}/s, one hop: county commit → city projection, p99",
            value=percentile(one, 99),
            unit="ms",
            baseline_name="MirrorMaker's copy alone, p99",
            baseline=percentile(copy_ms, 99),
            target="p99 <= 2,000 ms a hop",
            notes=f"p50 {percentile(one, 50):.0f} ms; {notes}",
        ),
        Figure(
            name=f"sync lag at {rate}/s, two hops: county commit → province projection, p99",
            value=percentile(two, 99),
            unit="ms",
            baseline_name="MirrorMaker's copy alone (first hop), p99",
            baseline=percentile(copy_ms, 99),
            target="p99 <= 4,000 ms (2 s a hop)",
            notes=f"p50 {percentile(two, 50):.0f} ms",
        ),
    )


async def _backlog(dsn: str, count: int) -> int:
    """Append `count` nominations straight to the county registry's store (its relay publishes them)."""
    pool = await db.create_pool(dsn, max_size=4)
    try:
        es = store.EventStore(pool, source="registry", deployment=COUNTY, batch_size=500)
        actor = Actor(user="bench", org_path=local_levels.LEVELS[2].root, role=Role.ORGANIZER)

        async def one(n: int) -> None:
            body = nomination_body(n, "bh_c1_t1", "sync backlog")
            event = CadreNominated(**{**body, "cadre_id": uuid.uuid5(NAMESPACE, f"backlog:{n}")})
            ctx = CommandContext(actor=actor, correlation_id=uuid7())
            await es.append(cadre_stream(event.cadre_id), 0, [event], ctx=ctx, org_path=f"{actor.org_path}.bh_c1_t1",
                            cadre_id=event.cadre_id)  # fmt: skip

        for start in range(0, count, 500):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 500))))
        head = int(await pool.fetchval("SELECT position FROM chain_head WHERE id = 1"))
        await es.close()
        return head
    finally:
        await pool.close()


async def _wait_released(dsn: str, position: int, *, within: float) -> float:
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while time.monotonic() - started < within:
            released = await conn.fetchval(
                "SELECT released FROM chains WHERE deployment = $1 AND source = 'registry'", COUNTY
            )
            if released is not None and released >= position:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return float("nan")


def _convergence(report: Report, running: local_levels.Running, count: int) -> None:
    assert running.mirror is not None
    running.mirror.stop()
    try:
        head = asyncio.run(_backlog(_dsn(running, COUNTY, "registry"), count))
        time.sleep(5)  # the county's relay publishes the backlog meanwhile; the link is down
    finally:
        running.mirror.start()
    # From the link back (MirrorMaker ready) to the province holding every backlog event, released.
    seconds = asyncio.run(_wait_released(_dsn(running, PROVINCE, "sync"), head, within=300))
    report.add(
        Figure(
            name=f"convergence after a {count:,}-event backlog, link back → all released at the province",
            value=seconds,
            unit="s",
            target="<= 30 s",
            notes="the backlog appended at the county while MirrorMaker was stopped; two hops",
        )
    )


def _memory(running: local_levels.Running, workdir: Path) -> float:
    pids: set[int] = set()
    for stack in running.stacks.values():
        for service in stack.services.values():
            pids |= set(_tree(service.process.pid))
    for level in running.levels:
        for root in _processes_named(str(workdir / level.name / "kafka")):
            pids |= set(_tree(root))
    for root in _processes_named("cadre-pg-"):
        pids |= set(_tree(root))
    if running.mirror is not None and running.mirror.pid is not None:
        pids |= set(_tree(running.mirror.pid))
    return sum(pss_kib(pid) for pid in pids) / 1024


@contextlib.contextmanager
def _levels(workdir: Path) -> Iterator[local_levels.Running]:
    with _own_infrastructure(), local_levels.run_levels(workdir, 3) as running:
        for level in running.levels:  # the org units of each level, no cadres
            stack = running.stacks[level.name]
            asyncio.run(local_stack.load_demo(stack, seed=41, cadres=0, part=running.demo_part(level)))
        yield running


def run(report: Report, *, rates: tuple[int, ...] = (100, 500), seconds: float = 20.0, backlog: int = 10_000) -> None:
    """Lag at each rate, convergence after a backlog, memory idle and after the load."""
    workdir = Path(tempfile.mkdtemp(prefix="cadre-bench-levels-"))
    with _levels(workdir) as running:
        idle = _memory(running, workdir)
        for rate in rates:
            _lag(report, running, rate, seconds)
        loaded = _memory(running, workdir)
        _convergence(report, running, backlog)
    report.add(
        Figure(
            name="memory of the three-level topology (PSS of every process)",
            value=loaded,
            unit="MiB",
            target="<= 4,096 MiB",
            notes=f"idle {idle:,.0f} MiB; after the load runs {loaded:,.0f} MiB: three Kafka, three PostgreSQL,"
            " 18 services, one MirrorMaker 2",
        )
    )
