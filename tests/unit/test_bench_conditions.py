"""The bench's reading of the machine: what counts as ours, and when a figure is noisy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import conditions
from bench.conditions import Sample
from bench.harness import Figure, Report


def quiet(load: float = 0.2) -> Sample:
    return Sample(load=(load, load, load), steal=0.0)


def test_a_quiet_machine_gives_no_reason() -> None:
    assert conditions.noisy(quiet(), quiet(), before_run=quiet()) == []


def test_load_before_the_run_steal_and_neighbours_each_make_a_figure_noisy() -> None:
    busy_before = quiet(load=2.4)
    stolen = Sample(load=(0.3, 0.3, 0.3), steal=0.12)
    crowded = Sample(load=(0.3, 0.3, 0.3), steal=0.0, neighbours=["4242 pytest 95%"])

    reasons = conditions.noisy(stolen, crowded, before_run=busy_before)

    assert reasons == [
        "load average 2.40 before the run began",
        "CPU steal 12%",
        "other processes on the CPUs: 4242 pytest 95%",
    ]


def test_the_load_the_run_makes_itself_does_not_make_it_noisy() -> None:
    # Our own stack loads the machine during the run: only the load before it began counts.
    assert conditions.noisy(quiet(load=3.0), quiet(load=3.5), before_run=quiet(load=0.4)) == []


def test_a_busy_process_outside_the_bench_is_a_neighbour_and_a_child_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # A low bar: on a loaded machine (a whole test run beside it) a spinning process gets well under
    # the real 25 % of a core; what is tested is who counts as a neighbour, not how busy it is.
    monkeypatch.setattr(conditions, "BUSY_PROCESS", 0.01)
    spin = [sys.executable, "-c", "while True: pass"]
    child = subprocess.Popen(spin)  # noqa: S603 - our own interpreter
    try:
        # The same program, started apart from this process's tree (by a shell that exits at once).
        outsider = int(
            subprocess.run(  # noqa: S603
                ["/bin/sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        try:
            seen = conditions.sample(window=0.5)
        finally:
            os.kill(outsider, 9)
    finally:
        child.kill()
        child.wait()
    pids = {int(entry.split()[0]) for entry in seen.neighbours}
    assert outsider in pids
    assert child.pid not in pids


def test_a_noisy_figure_judges_no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conditions, "sample", lambda *_, **__: quiet(load=2.0))
    report = Report()
    report.begin()
    figure = Figure(name="end to end at 100/s, p99", value=40.0, unit="ms", target="p99 <= 50 ms")

    report.add(figure)

    assert figure.noisy == ["load average 2.00 before the run began"]
    assert figure.verdict == "p99 <= 50 ms (noisy: not judged)"
    assert figure.start is not None
    assert figure.end is not None
