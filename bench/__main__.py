"""`python -m bench` (or `./dev bench`): measure the platform against its raw limits.

Starts the project's own Kafka and PostgreSQL (fsync on) unless KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL name others, runs the chosen benchmarks, prints a table, and writes
bench/results/<time>/results.json and PNG plots (bench/results/latest points to it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench import compare
from bench.harness import Report, Stack, machine_facts, stack, write
from contracts.envelope import uuid7
from runtime.serve import tune_gc
from services.registry.projection import SCHEMA as REGISTRY_SCHEMA

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()

SCALES = {"quick": 20_000, "standard": 100_000, "full": 1_000_000}
CADRES = {"quick": 100_000, "standard": 1_000_000, "full": 1_000_000}
HOLD_SECONDS = {"quick": 10.0, "standard": 60.0, "full": 60.0}


@app.command()
def run(
    scale: Annotated[str, typer.Option(help="quick (20k events), standard (100k) or full (1M)")] = "standard",
    only: Annotated[
        str,
        typer.Option(
            help="Comma-separated: append,relay,projection,peer,cpu,queries,console,e2e,footprint,import,mirror,"
            "bundles,sync,selection (and mirror-crash: a kill -9 of MirrorMaker under each delivery setting,"
            " about 10 minutes;"
            " restore: point-in-time restore of the scale's events beside pg_restore, and restore from the topic"
            " beside reading it and COPYing its rows)"
        ),
    ] = "append,relay,projection,peer,cpu,queries,console,e2e,footprint,import,mirror,bundles,sync,selection",
    against: Annotated[
        str | None,
        typer.Option(
            help="Measure this revision too (a git revision: a worktree with its own virtualenv), alternating"
            " the two, and print both with their ratio"
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="With --against: runs of each revision, alternating (ABBA...)")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write results.json and the plots here")] = None,
) -> None:
    """Run the benchmarks and write the results."""
    if against is not None:
        compare.run(against, scale=scale, only=only, rounds=rounds, out=out)
        return
    events = SCALES[scale]
    chosen = {name.strip() for name in only.split(",")}
    tune_gc()  # as every service process does
    report = Report(machine=machine_facts())
    report.begin()
    started = time.perf_counter()
    if chosen & {
        "append",
        "relay",
        "projection",
        "peer",
        "cpu",
        "queries",
        "console",
        "bundles",
        "restore",
        "selection",
    }:
        with stack() as running:
            console.print(f"Kafka {running.kafka}, PostgreSQL {running.postgres}; {events:,} events")
            asyncio.run(_run(running, report, events, chosen, CADRES[scale]))
    _standalone(report, chosen, scale, events)
    written = write(report, out)
    _table(report)
    noisy = (
        " The machine was busy: figures marked noisy judge no target." if any(f.noisy for f in report.figures) else ""
    )
    console.print(
        f"results: {written}/results.json (plots beside it); {time.perf_counter() - started:.0f} s in all.{noisy}"
    )


def _standalone(report: Report, chosen: set[str], scale: str, events: int) -> None:
    """The benchmarks that start their own stacks, each imported only when chosen (so that
    `--against` can run this bench on an older revision that lacks what the others import)."""
    if "e2e" in chosen:
        from bench import e2e  # noqa: PLC0415 - each benchmark imported when chosen (runs on older revisions)

        console.rule("end to end")
        e2e.run(report, seconds=HOLD_SECONDS[scale])
    if "import" in chosen:
        from bench import imports  # noqa: PLC0415

        console.rule("import")
        imports.run(report, rows=events)
    if "footprint" in chosen:
        from bench import footprint  # noqa: PLC0415

        console.rule("footprint")
        footprint.run(report)
    if chosen & {"mirror", "mirror-crash"}:
        from bench import mirror  # noqa: PLC0415
    if "mirror" in chosen:
        console.rule("MirrorMaker 2: replication lag")
        mirror.run_lag(report, seconds=HOLD_SECONDS[scale] / 2)
    if "sync" in chosen:
        from bench import sync  # noqa: PLC0415

        console.rule("multi-level sync: three stacks and MirrorMaker 2")
        sync.run(report, seconds=HOLD_SECONDS[scale] / 3)
    if "restore" in chosen:
        from bench import restore  # noqa: PLC0415

        console.rule("point-in-time restore")
        restore.run(report, events=events)
    if "mirror-crash" in chosen:
        console.rule("MirrorMaker 2: a kill -9 under each delivery setting")
        mirror.run_crash(report)


async def _run(running: object, report: Report, events: int, chosen: set[str], cadres: int) -> None:
    from bench import append, bundles, cpu, peer, projection, relay  # noqa: PLC0415

    assert isinstance(running, Stack)
    source = ""
    projected = 0.0
    if chosen & {"append", "relay", "projection", "peer", "restore"}:
        console.rule("append")
        source = await append.run(running, report, events=events)
    if chosen & {"relay", "projection", "peer", "restore"}:
        console.rule("relay")
        topic = f"bench.{uuid7().hex[-10:]}.registry.events"
        total = await relay.run(running, report, source_dsn=source, topic=topic)
        if chosen & {"projection", "peer"}:
            console.rule("projection")
            projected = await projection.run(running, report, topic=topic, total=total, label=f"{total:,} events")
        if "restore" in chosen:
            from bench import restore  # noqa: PLC0415 - each benchmark imported when chosen (runs on older revisions)

            console.rule("restore from the topic")
            await restore.run_from_log(running, report, source_dsn=source, topic=topic)
    if "peer" in chosen:
        # The library is synchronous (threads): it runs outside the event loop's thread.
        console.rule(f"peer: eventsourcing {peer.VERSION}")
        peer_source = await asyncio.to_thread(peer.run_append, running, report)
        await asyncio.to_thread(peer.run_projection, report, source=peer_source, ours=projected, schema=REGISTRY_SCHEMA)
    if "cpu" in chosen:
        console.rule("CPU per event")
        await cpu.run(running, report, events=min(events, 20_000))
    await _reads(running, report, chosen, cadres)
    if "bundles" in chosen:
        console.rule("signed bundles (offline links)")
        await bundles.run(running, report, events=events)


async def _reads(running: Stack, report: Report, chosen: set[str], cadres: int) -> None:
    """The benchmarks of reads on a generated province of `cadres` cadres."""
    from bench import console as console_bench  # noqa: PLC0415
    from bench import queries  # noqa: PLC0415

    if "queries" in chosen:
        console.rule("subtree queries")
        await queries.run(running, report, cadres=cadres)
    if "console" in chosen:
        console.rule("console: pool page")
        await console_bench.run(running, report, cadres=cadres)
    if "selection" in chosen:
        from bench import selection  # noqa: PLC0415 - imported when chosen (runs on older revisions)

        console.rule("succession: strength and statistics pages, statistics workbook")
        await selection.run(running, report, cadres=cadres)


def _table(report: Report) -> None:
    table = Table(title="Benchmarks (each figure beside a baseline from the same run)")
    for column in ("figure", "value", "baseline", "ratio", "target", "machine (start → end)", "notes"):
        table.add_column(column)
    for figure in report.figures:
        machine = (
            f"load {figure.start.load[0]:.2f} → {figure.end.load[0]:.2f},"
            f" steal {100 * figure.start.steal:.0f}% → {100 * figure.end.steal:.0f}%"
            if figure.start and figure.end
            else ""
        )
        table.add_row(
            figure.name,
            f"{figure.value:,.0f} {figure.unit}",
            f"{figure.baseline:,.0f} ({figure.baseline_name})" if figure.baseline is not None else "",
            f"{figure.ratio:.2f}" if figure.ratio is not None else "",
            figure.verdict,
            machine + (f" NOISY: {'; '.join(figure.noisy)}" if figure.noisy else ""),
            figure.notes,
        )
    console.print(table)


if __name__ == "__main__":
    app()
