"""Subtree queries at scale: a page of cadres of a subtree, p50/p95/p99, on a generated province."""

from __future__ import annotations

import random
import time

from bench import datagen, harness
from bench.harness import Clock, Figure, Report, Series, Stack, percentile
from contracts.envelope import Actor, Role
from runtime import db
from services.registry import statistics
from services.registry.queries import RegistryQueries

QUERIES_PER_LEVEL = 300


async def run(stack: Stack, report: Report, *, cadres: int) -> None:
    """Generate the province, then time pages of cadres under units of every level."""
    dsn = await stack.fresh_database("bench_queries")
    with Clock() as generated:
        unit_count = await datagen.load_registry_tables(dsn, cadres=cadres)
    report.add(harness.generated(f"{cadres:,} cadres in {unit_count} units", cadres, generated))
    pool = await db.create_pool(dsn, max_size=2)
    try:
        reads = RegistryQueries(pool, store=None, counts=statistics.pool_counts(pool))  # type: ignore[arg-type]
        actor = Actor(user="bench", org_path="qs", role=Role.VIEWER)
        tree = datagen.units()
        rng = random.Random(3)
        latencies: list[float] = []
        for depth in (1, 2, 3, 4):
            codes = [code for code, _, _, _, path in tree if len(path.split(".")) == depth]
            level: list[float] = []
            for _ in range(QUERIES_PER_LEVEL if depth > 1 else 50):
                code = rng.choice(codes)
                started = time.perf_counter()
                page = await reads.cadres(actor, under=code, limit=50)
                if page.next_cursor:  # and the page after it, as a user paging on would
                    await reads.cadres(actor, under=code, limit=50, cursor=page.next_cursor)
                level.append((time.perf_counter() - started) * 1000 / (2 if page.next_cursor else 1))
            latencies += level
            report.add(
                Figure(
                    name=f"subtree page of 50 cadres, {datagen.LEVELS[depth]} root, p99",
                    value=percentile(level, 99),
                    unit="ms",
                    target="p99 <= 50 ms",
                    notes=(
                        f"p50 {percentile(level, 50):.1f} ms, p95 {percentile(level, 95):.1f} ms, {len(level)} queries"
                    ),
                )
            )
        report.series.append(Series("subtree page latency (all levels)", ys=latencies, kind="hist", xlabel="ms"))
    finally:
        await pool.close()
