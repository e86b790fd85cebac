"""`./dev bench --against REV`: the same figures for another revision, in the same run, alternating.

A regression should show as a number on the day it lands, not weeks later on another
machine. REV is checked out into a worktree of its own (`.cache/against/<commit>`) with a
virtualenv of its own (built from its lock file, kept by the lock's hash), and the two
revisions run one after the other, round after round, in the order ABBA..., so that a drift
of the machine weighs on both alike.

The instrument is this revision's bench: its files are laid over REV's worktree, so the
same code measures both and only the platform under it differs. When REV's code lacks what
this bench calls (an older revision), REV's own bench measures it instead, and the table
says so. Each child run samples the machine itself (bench.conditions): a figure that is
noisy in any run is noisy in the comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import conditions
from runtime import clock

REPO = Path(__file__).resolve().parent.parent
WORKTREES = REPO / ".cache" / "against"
VENVS = REPO / ".cache" / "against-venvs"

console = Console()


@dataclass
class Revision:
    """A revision the bench runs on: where its code is and which Python runs it."""

    label: str
    tree: Path
    python: Path
    instrument: str = "this bench"
    runs: list[dict[str, Any]] = field(default_factory=list)


def _git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)  # noqa: S603, S607
    return done.stdout.strip()


def _venv(tree: Path) -> Path:
    """A virtualenv with REV's locked dependencies (shared by revisions with the same lock)."""
    lock = tree / "requirements.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    venv = VENVS / digest
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        console.print(f"building a virtualenv for {tree.name} from its lock file ({venv})")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--require-hashes", "-r", str(lock)], check=True)  # noqa: S603 - REV's lock
        (venv / ".complete").write_text(digest + "\n")
    return python


def prepare(rev: str) -> Revision:
    """REV's worktree (made once, kept under .cache/against) with its virtualenv."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = WORKTREES / commit[:12]
    if not (tree / ".git").exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", "--force", str(tree), commit)
    # Kafka's jars, the load generator and the console's assets come from this checkout's cache.
    for shared in (Path(".cache"), Path("services/console/node_modules")):
        link, target = tree / shared, REPO / shared
        if target.exists() and not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return Revision(label=f"{rev} ({commit[:9]})", tree=tree, python=_venv(tree))


def _overlay(revision: Revision) -> None:
    """Lay this bench's files over REV's (the same instrument on both)."""
    _restore(revision)
    for source in (REPO / "bench").glob("*.py"):
        shutil.copy2(source, revision.tree / "bench" / source.name)


def _restore(revision: Revision) -> None:
    """REV's own bench, as committed."""
    _git("checkout", "--", "bench", cwd=revision.tree)
    _git("clean", "-fdq", "--", "bench", cwd=revision.tree)


def _cool_down(most: float = 90.0) -> None:
    """Wait (up to `most` s) for the load the previous run left to fade, so that the next starts on a quiet machine."""
    deadline = time.monotonic() + most
    while os.getloadavg()[0] > conditions.BUSY_LOAD - 0.3 and time.monotonic() < deadline:
        time.sleep(2)
    console.print(f"load average {os.getloadavg()[0]:.2f} before the next run")


def _run_once(revision: Revision, scale: str, only: str) -> dict[str, Any]:
    _cool_down()
    with tempfile.TemporaryDirectory(prefix="cadre-against-") as scratch:
        out = Path(scratch) / "results"
        command = [str(revision.python), "-m", "bench", "--scale", scale, "--only", only]
        if revision.instrument == "this bench":
            command += ["--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(revision.tree), "ENVIRONMENT": "development"}
        console.rule(f"{revision.label}: {' '.join(command[2:])}")
        done = subprocess.run(command, cwd=revision.tree, env=env, check=False)  # noqa: S603
        if done.returncode != 0:
            msg = f"the bench failed on {revision.label} (exit {done.returncode})"
            raise RuntimeError(msg)
        written = out if out.exists() else revision.tree / "bench" / "results" / "latest"
        result: dict[str, Any] = json.loads((written / "results.json").read_text())
        return result


def _measure(revision: Revision, scale: str, only: str) -> None:
    if revision.tree != REPO and not revision.runs and revision.instrument == "this bench":
        _overlay(revision)
        try:
            revision.runs.append(_run_once(revision, scale, only))
        except RuntimeError as error:
            console.print(f"[yellow]{error}: measuring it with its own bench instead[/yellow]")
            _restore(revision)
            revision.instrument = "its own bench"
        else:
            return
    revision.runs.append(_run_once(revision, scale, only))


def _figures(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for figure in run["figures"]:
            by_name.setdefault(figure["name"], []).append(figure)
    return by_name


def _value(figures: list[dict[str, Any]]) -> float:
    return float(statistics.median(f["value"] for f in figures))


def run(rev: str, *, scale: str, only: str, rounds: int, out: Path | None) -> None:
    """Measure this checkout and REV alternately, `rounds` runs each; print and save both with their ratio."""
    theirs = prepare(rev)
    ours = Revision(
        label=f"this checkout ({_git('rev-parse', '--short=9', 'HEAD')})", tree=REPO, python=Path(sys.executable)
    )
    try:
        for n in range(rounds):
            order = (ours, theirs) if n % 2 == 0 else (theirs, ours)
            for revision in order:
                _measure(revision, scale, only)
    finally:
        if theirs.instrument == "this bench":
            _restore(theirs)
    mine, other = _figures(ours.runs), _figures(theirs.runs)
    rows = []
    for name in list(mine) + [n for n in other if n not in mine]:
        a, b = mine.get(name, []), other.get(name, [])
        value_a = _value(a) if a else None
        value_b = _value(b) if b else None
        noisy = sorted({reason for f in a + b for reason in f.get("noisy", [])})
        rows.append(
            {
                "name": name,
                "unit": (a or b)[0]["unit"],
                "ours": value_a,
                "ours_runs": [f["value"] for f in a],
                "theirs": value_b,
                "theirs_runs": [f["value"] for f in b],
                "ratio": value_a / value_b if value_a is not None and value_b else None,
                "noisy": noisy,
            }
        )
    table = Table(title=f"This checkout against {theirs.label} (measured by {theirs.instrument}), medians of runs")
    for column in ("figure", "this checkout", rev, "ratio (this / that)", "runs", "machine"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['ours']:,.1f} {row['unit']}" if row["ours"] is not None else "-",
            f"{row['theirs']:,.1f} {row['unit']}" if row["theirs"] is not None else "-",
            f"{row['ratio']:.2f}" if row["ratio"] is not None else "-",
            f"{len(row['ours_runs'])} + {len(row['theirs_runs'])}",
            "NOISY: " + "; ".join(row["noisy"]) if row["noisy"] else "quiet",
        )
    console.print(table)
    stamp = clock.now().strftime("%Y%m%dT%H%M%S")
    target = out or REPO / "bench" / "results" / f"{stamp}-against-{theirs.tree.name}"
    target.mkdir(parents=True, exist_ok=True)
    body = {
        "against": theirs.label,
        "instrument": theirs.instrument,
        "rounds": rounds,
        "order": "ABBA: this checkout first in even rounds",
        "figures": rows,
        "runs": {"this checkout": ours.runs, theirs.label: theirs.runs},
    }
    (target / "results.json").write_text(json.dumps(body, indent=2) + "\n")
    console.print(f"results: {target}/results.json")
