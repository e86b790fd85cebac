"""How busy the machine was around a figure: load average, CPU steal, and heavy processes not ours.

A figure taken while other work shares the cores measures the neighbours, not the code (a
2-3x latency regression once hid that way). Every figure carries a sample from its start and
one from its end; a figure is *noisy* when the machine was busy before the run began (load
average above `BUSY_LOAD` on two cores), when the hypervisor took more than `BUSY_STEAL` of
the CPU, or when processes outside the benchmark's own tree were using a CPU. Noisy figures
are printed and saved as such, and no target is judged on them.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

BUSY_LOAD: Final = 1.5
"""One-minute load average, on two cores, above which the machine counts as busy before a run."""
BUSY_STEAL: Final = 0.05
"""Share of CPU time taken by the hypervisor above which a figure is noisy."""
BUSY_PROCESS: Final = 0.25
"""Share of one CPU a process outside the benchmark may use before it counts as a neighbour."""
WINDOW: Final = 0.5
"""Seconds over which steal and the neighbours' CPU are sampled."""


@dataclass(frozen=True)
class Sample:
    """The machine at one moment."""

    load: tuple[float, float, float]
    steal: float
    """Share of CPU time stolen over the sampling window (0-1)."""
    neighbours: list[str] = field(default_factory=list)
    """`pid name cpu%` of processes outside the benchmark's tree that used a CPU in the window."""

    def text(self) -> str:
        """Short form for tables."""
        extra = f", busy: {'; '.join(self.neighbours)}" if self.neighbours else ""
        return f"load {self.load[0]:.2f}, steal {100 * self.steal:.1f}%{extra}"


def _cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal (guests are in user)
    return values[7] if len(values) > 7 else 0, sum(values)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, CPU jiffies so far, name) of every process."""
    out: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (entry / "stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2 :].split()
            out[int(entry.name)] = (int(rest[1]), int(rest[11]) + int(rest[12]), name)
    return out


def _ours(processes: dict[int, tuple[int, int, str]], root: int) -> set[int]:
    """`root`, its ancestors and every descendant: the benchmark and what it started."""
    mine = {root}
    pid = root
    while pid in processes and processes[pid][0] not in (0, pid):
        pid = processes[pid][0]
        mine.add(pid)
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(child)
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in mine:
                mine.add(child)
                todo.append(child)
    return mine


def sample(window: float = WINDOW, root: int | None = None) -> Sample:
    """Sample the machine over `window` seconds; `root` (this process) and its tree are not neighbours."""
    ticks = os.sysconf("SC_CLK_TCK")
    steal0, total0 = _cpu_times()
    before = _processes()
    time.sleep(window)
    steal1, total1 = _cpu_times()
    after = _processes()
    ours = _ours(after, root or os.getpid())
    neighbours = []
    for pid, (_, cpu, name) in after.items():
        if pid in ours or pid not in before:
            continue
        share = (cpu - before[pid][1]) / ticks / window
        if share > BUSY_PROCESS:
            neighbours.append(f"{pid} {name} {100 * share:.0f}%")
    stolen = (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
    return Sample(load=os.getloadavg(), steal=stolen, neighbours=neighbours)


def noisy(start: Sample, end: Sample, *, before_run: Sample | None) -> list[str]:
    """Why a figure measured between `start` and `end` is noisy (empty: it is not)."""
    reasons = []
    if before_run is not None and before_run.load[0] > BUSY_LOAD:
        reasons.append(f"load average {before_run.load[0]:.2f} before the run began")
    if max(start.steal, end.steal) > BUSY_STEAL:
        reasons.append(f"CPU steal {100 * max(start.steal, end.steal):.0f}%")
    others = start.neighbours + end.neighbours
    if others:
        reasons.append(f"other processes on the CPUs: {'; '.join(others)}")
    return reasons
