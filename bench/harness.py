"""What every benchmark shares: the real stack, results paired with baselines, output."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg

from bench import conditions
from bench.conditions import Sample
from deploy.local.kafka import LocalKafka
from deploy.local.postgres import LocalPostgres
from runtime import clock

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured figure, paired with the baseline measured in the same run."""

    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    target: str = ""
    notes: str = ""
    start: Sample | None = None
    """The machine when the figure's measurement began (bench.conditions)."""
    end: Sample | None = None
    """The machine when it ended."""
    noisy: list[str] = field(default_factory=list)
    """Why the machine was too busy for the figure to judge the code (empty: it was quiet)."""

    @property
    def verdict(self) -> str:
        """The target as the table shows it: not judged on a busy machine."""
        if not self.target:
            return ""
        return f"{self.target} (noisy: not judged)" if self.noisy else self.target

    @property
    def ratio(self) -> float | None:
        """value / baseline (for throughputs: the share of the raw limit reached)."""
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Series:
    """A time series or a distribution, for the plots."""

    name: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    kind: str = "line"  # "line": ys are cumulative counts, plotted as a rate; "hist": a latency distribution
    xlabel: str = ""
    ylabel: str = ""


@dataclass
class Report:
    """All figures and series of one run."""

    started: str = field(default_factory=lambda: clock.now().isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    before_run: Sample | None = None
    """The machine before the run started anything (its load decides whether the run is noisy)."""
    _since: Sample | None = None

    def begin(self) -> None:
        """Sample the machine before the run starts anything."""
        self.before_run = self._since = conditions.sample()
        print(f"  machine before the run: {self.before_run.text()}", flush=True)

    def mark(self) -> None:
        """A measurement starts now: the next figures take the machine as it is now as their start."""
        self._since = conditions.sample()

    def add(self, *figures: Figure) -> None:
        """Record figures, each with the machine at its start and end (and print each as it comes)."""
        end = conditions.sample()
        for figure in figures:
            figure.start = figure.start or self._since or end
            figure.end = figure.end or end
            figure.noisy = conditions.noisy(figure.start, figure.end, before_run=self.before_run)
            self.figures.append(figure)
            ratio = f"  ratio {figure.ratio:.2f}" if figure.ratio is not None else ""
            base = f"  (baseline {figure.baseline_name}: {figure.baseline:,.0f})" if figure.baseline is not None else ""
            noise = f"  NOISY ({'; '.join(figure.noisy)})" if figure.noisy else ""
            print(f"  {figure.name}: {figure.value:,.1f} {figure.unit}{base}{ratio}{noise}", flush=True)
            print(f"    machine: start {figure.start.text()}; end {figure.end.text()}", flush=True)
        self._since = end


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()[0]
        facts["memory_kib"] = int(meminfo.split()[1])
    with contextlib.suppress(OSError):
        model = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        facts["cpu_model"] = model[0].split(":", 1)[1].strip() if model else "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        facts["load_average_at_start"] = os.getloadavg()
    return facts


@dataclass
class Stack:
    """The Kafka and PostgreSQL a run measures against."""

    kafka: str
    postgres: str

    def dsn(self, database: str) -> str:
        """DSN of `database` on the benchmark's server."""
        return self.postgres.rsplit("/", 1)[0] + "/" + database

    async def fresh_database(self, name: str) -> str:
        """Drop and create `name`; return its DSN."""
        conn = await asyncpg.connect(self.postgres)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.dsn(name)


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """The project's own Kafka and PostgreSQL (fsync on: durability is part of the price).

    KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL name others instead.
    """
    with contextlib.ExitStack() as exits:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        postgres = os.environ.get("DATABASE_URL")
        if kafka is None:
            broker = LocalKafka(heap="1g")
            exits.callback(broker.stop)
            kafka = broker.start()
        if postgres is None:
            cluster = LocalPostgres(fsync=True)
            exits.callback(cluster.stop)
            postgres = cluster.start()
        yield Stack(kafka=kafka, postgres=postgres)


class Clock:
    """Wall time of a block, in seconds."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Self:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started


class ThreadedWatcher:
    """Watches on a thread of its own (its own event loop) for as long as a `with` block lasts.

    A subclass notes what it sees in `_watch`, which runs until `_stop` is set: the end of the
    block sets it and waits for the thread.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    async def _watch(self) -> None:
        raise NotImplementedError


def generated(what: str, cadres: int, clock: Clock) -> Figure:
    """The data generator's figure: `cadres` (described by `what`) in the seconds `clock` took."""
    return Figure(
        name=f"data generator: {what}", value=cadres / clock.seconds, unit="cadres/s", notes=f"{clock.seconds:.1f} s"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def write(report: Report, out: Path | None = None) -> Path:
    """Write results.json and the plots into `out` (default: a new results directory); return it."""
    stamp = report.started.replace(":", "").replace("-", "")
    out = out or RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    body = {
        "started": report.started,
        "machine": report.machine,
        "before_run": asdict(report.before_run) if report.before_run else None,
        "noisy": any(f.noisy for f in report.figures),
        "figures": [asdict(f) | {"ratio": f.ratio} for f in report.figures],
        "series": [asdict(s) for s in report.series],
    }
    (out / "results.json").write_text(json.dumps(body, indent=2) + "\n")
    _plots(report, out)
    if out.parent != RESULTS:
        return out
    latest = RESULTS / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out.name)
    return out


def _plots(report: Report, out: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only when writing plots

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for series in report.series:
        fig, ax = plt.subplots(figsize=(7, 4))
        if series.kind == "hist":
            ax.hist(series.ys, bins=60)
            for q, style in ((50, "--"), (99, ":")):
                ax.axvline(percentile(series.ys, q), linestyle=style, color="black", label=f"p{q}")
            ax.legend()
            ax.set_xlabel(series.xlabel)
            ax.set_ylabel("queries")
        else:
            pairs = list(zip(series.xs, series.ys, strict=True))
            rates = [(x1, (y1 - y0) / (x1 - x0)) for (x0, y0), (x1, y1) in itertools.pairwise(pairs) if x1 > x0]
            ax.plot([x for x, _ in rates], [r for _, r in rates])
            ax.set_xlabel(series.xlabel)
            ax.set_ylabel(f"{series.ylabel} per second")
            ax.set_ylim(bottom=0)
        ax.set_title(series.name)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() else "-" for c in series.name.lower()).strip("-")
        fig.savefig(out / f"{safe}.png", dpi=110)
        plt.close(fig)
