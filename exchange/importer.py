"""Import a spreadsheet through the services' own commands: check every cell, then send rows in batches.

1. **Cells**: each row's cells against its template (required, integer, date, allowed value) and
   duplicates of the `ref` column; every problem is kept, none stops the check.
2. **Commands**: each good row becomes the commands its template names, sent through the
   service's `POST /batch` (runtime.batch): the service's own routes decide them, with the same
   rules, scope checks and events as by hand. A dry run sends the same batches with `dry_run`:
   the services check everything, write nothing. What the services refuse comes back as problems
   of the row (and, where the server names a field, of its cell).
3. **Idempotent, resumable**: ids come from the `ref` column (exchange.templates), so a record
   already there answers 409 and is counted as skipped; a progress file beside the spreadsheet
   records the requests answered, so a run stopped half way resumes where it stopped.
4. **A run has an id**: every request of a run carries it as its correlation id, so every event
   the run recorded names it; a resumed run keeps its id (in the progress file). A mistaken run of
   cadres is reversed by that id (`POST /import-runs/{run}/reversal` of the registry, ADR 0026).

Rows whose template chains them (a cadre's postings) run in file order, command after command:
the k-th command of every chain goes out in the k-th wave.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from exchange import sheets
from exchange.templates import Column, Ids, Request, Template
from runtime.guard import CORRELATION_HEADER


@dataclass(frozen=True, order=True)
class Problem:
    """Something wrong with a row (and a cell, where known)."""

    row: int
    """The row's number in the sheet (the header is row 1; 0: the file as a whole)."""
    column: str | None
    message: str


@dataclass
class Report:
    """What an import checked, sent and found."""

    rows: int = 0
    commands: int = 0
    accepted: int = 0
    skipped: int = 0
    """Already recorded (409): an earlier import of the same rows."""
    unchecked: int = 0
    """Commands of a dry run that depend on an earlier command of their row's chain."""
    resumed_at: int = 0
    run_id: uuid.UUID | None = None
    """The run's id: the correlation id of its requests and of every event it recorded (none for a dry run)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


@dataclass
class _Row:
    number: int
    values: dict[str, Any]
    requests: list[Request] = field(default_factory=list)
    chain: str | None = None


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d")


def _cell(column: Column, raw: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - a case per kind of cell
    """The cell's value in the API's terms; ValueError with the reason when it cannot be."""
    if isinstance(raw, str):
        raw = raw.strip()
    if raw in (None, ""):
        if column.required:
            msg = "required"
            raise ValueError(msg)
        return None
    if column.kind == "int":
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(str(raw))
        except ValueError:
            msg = f"{raw!r} is not a whole number"
            raise ValueError(msg) from None
    if column.kind == "date":
        if isinstance(raw, datetime):
            return raw.date().isoformat()
        if isinstance(raw, date):
            return raw.isoformat()
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(str(raw), pattern).date().isoformat()  # noqa: DTZ007 - a calendar date
            except ValueError:
                continue
        msg = f"{raw!r} is not a date (YYYY-MM-DD)"
        raise ValueError(msg)
    text = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    if column.kind == "choice":
        for choice in column.choices:
            if text.casefold() in (choice.value.casefold(), choice.zh.casefold(), choice.en.casefold()):
                return choice.value
        allowed = ", ".join(f"{c.zh} / {c.en}" for c in column.choices)
        msg = f"{text!r} is not one of: {allowed}"
        raise ValueError(msg)
    return text


def _columns(template: Template, header: list[str]) -> tuple[dict[int, Column], list[Problem]]:
    by_label: dict[str, Column] = {}
    for column in template.columns:
        for label in (column.key, column.zh, column.en):
            by_label[label.casefold()] = column
    positions: dict[int, Column] = {}
    problems = []
    for index, title in enumerate(header):
        name = str(title).strip().rstrip("*").strip().casefold()
        if not name:
            continue
        known = by_label.get(name)
        if known is None:
            problems.append(Problem(1, str(title), "unknown column"))
        else:
            positions[index] = known
    found = {column.key for column in positions.values()}
    problems += [Problem(1, c.key, "missing column") for c in template.columns if c.required and c.key not in found]
    return positions, problems


def check(template: Template, header: list[str], rows: Iterator[list[Any]], ids: Ids) -> tuple[list[_Row], Report]:
    """Check every cell of every row; the rows that can be sent, and a report of every problem."""
    positions, problems = _columns(template, header)
    report = Report(problems=problems)
    good: list[_Row] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(rows, start=2):
        if all(cell in (None, "") for cell in cells):
            continue
        report.rows += 1
        values: dict[str, Any] = {}
        bad = False
        for index, column in positions.items():
            try:
                values[column.key] = _cell(column, cells[index] if index < len(cells) else None)
            except ValueError as error:
                report.problems.append(Problem(number, column.key, str(error)))
                bad = True
        ref = values.get("ref")
        if ref is not None:
            if ref in seen:
                report.problems.append(Problem(number, "ref", f"duplicate of row {seen[ref]}"))
                bad = True
            else:
                seen[ref] = number
        if not bad and not problems:
            good.append(_Row(number, values, template.commands(values, ids), template.chain(values, ids)))
    return good, report


@dataclass(frozen=True)
class _Sent:
    row: _Row
    request: Request
    last_of_row: bool


def _chain(row: _Row) -> str:
    return row.chain if row.chain is not None else f"row:{row.number}"


def waves(rows: list[_Row]) -> list[list[_Sent]]:
    """The commands in waves: the k-th command of every chain in wave k (a row without a chain is its own)."""
    chains: dict[str, list[_Sent]] = {}
    for row in rows:
        chain = chains.setdefault(_chain(row), [])
        chain += [_Sent(row, r, n == len(row.requests) - 1) for n, r in enumerate(row.requests)]
    depth = max((len(chain) for chain in chains.values()), default=0)
    return [[chain[k] for chain in chains.values() if k < len(chain)] for k in range(depth)]


class Progress:
    """How many requests of an import were answered, kept beside the file so that a stopped run resumes."""

    def __init__(self, path: Path, identity: str) -> None:
        self.path = path
        self.identity = identity
        self.run_id = uuid.uuid4()
        """The run's id: a new one, unless `load` finds the run this one resumes."""

    def load(self) -> int:
        """Requests already answered in an earlier run of the same import (0 if none); its run id is kept."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        if saved.get("identity") != self.identity:
            return 0
        if saved.get("run"):
            self.run_id = uuid.UUID(str(saved["run"]))
        return int(saved["done"])

    def save(self, done: int) -> None:
        """Record that `done` requests were answered, and the run's id (written whole, then renamed)."""
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"identity": self.identity, "done": done, "run": str(self.run_id)}))
        scratch.replace(self.path)

    def clear(self) -> None:
        """The import finished: nothing to resume."""
        self.path.unlink(missing_ok=True)


def file_identity(path: Path, template: Template, source: str, batch: int) -> str:
    """What makes a progress record apply: the file's bytes, the template, the source, the batch size."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()}:{template.kind}:{source}:{batch}"


def _problems_of(sent: _Sent, template: Template, status: int, body: Any) -> list[Problem]:
    detail = body.get("detail", "") if isinstance(body, dict) else str(body)
    row = sent.row.number
    if isinstance(body, dict) and body.get("errors"):
        found = []
        for error in body["errors"]:
            loc = [str(part) for part in error.get("loc", []) if part != "body"]
            column = template.column_of(".".join(loc)) if loc else None
            found.append(Problem(row, column, f"{error.get('msg', 'invalid')} ({'.'.join(loc)})"))
        return found
    violations = body.get("violations") if isinstance(body, dict) else None
    if violations:
        return [Problem(row, None, f"{detail}: {v}") for v in violations]
    return [Problem(row, None, f"HTTP {status}: {detail}")]


class _BatchRefusedError(Exception):
    """The service refused a whole batch (not one of its commands)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


Plan = list[tuple[int, list[_Sent]]]
"""Requests in the order sent: each with its wave and its commands."""


@dataclass
class _Sender:
    """Sends the requests of a plan, up to `in_flight` of a wave at once, and accounts for the answers."""

    client: httpx.AsyncClient
    template: Template
    plan: Plan
    report: Report
    dry_run: bool
    run_id: uuid.UUID
    progress: Progress | None
    on_progress: Callable[[int, int], None] | None
    failed: set[str] = field(default_factory=set)
    """Chains (or rows) with a refused command: their later commands are not sent."""
    answered: set[int] = field(default_factory=set)
    saved: int = 0
    done: int = 0

    async def send_all(self, start: int, in_flight: int) -> None:
        """Send requests `start`… one wave after the other; `_BatchRefusedError`s when the service refuses any."""
        self.saved = start
        self.done = sum(len(part) for _, part in self.plan[:start])
        slots = asyncio.Semaphore(max(1, in_flight))

        async def limited(index: int) -> None:
            async with slots:
                await self.send(index)

        index = start
        while index < len(self.plan):
            # One wave at a time: the k-th command of a chain goes out after its (k-1)-th was answered.
            end = index
            while end < len(self.plan) and self.plan[end][0] == self.plan[index][0]:
                end += 1
            async with asyncio.TaskGroup() as group:
                for n in range(index, end):
                    group.create_task(limited(n))
            index = end

    async def send(self, index: int) -> None:
        """Send one request and account for each of its commands' answers."""
        part = [sent for sent in self.plan[index][1] if _chain(sent.row) not in self.failed]
        if part:
            body = orjson.dumps({"dry_run": self.dry_run, "commands": [sent.request for sent in part]})
            headers = {"content-type": "application/json", CORRELATION_HEADER: str(self.run_id)}
            response = await self.client.post("/batch", content=body, headers=headers, timeout=600)
            if response.status_code != 200:  # noqa: PLR2004 - the batch itself was refused
                raise _BatchRefusedError(Problem(part[0].row.number, None, f"batch refused: {response.text}"))
            for sent, outcome in zip(part, orjson.loads(response.content)["outcomes"], strict=True):
                self.account(sent, outcome["status"], outcome["body"])
        self.done += len(self.plan[index][1])
        self.answered.add(index)
        while self.saved in self.answered:  # a stopped run resumes after the requests answered in order
            self.saved += 1
        if self.progress is not None:
            self.progress.save(self.saved)
        if self.on_progress is not None:
            self.on_progress(self.done, sum(len(part) for _, part in self.plan))

    def account(self, sent: _Sent, status: int, body: Any) -> None:
        """Count one command's answer."""
        if status < 300:  # noqa: PLR2004
            self.report.accepted += 1
        elif status == 409:  # noqa: PLR2004
            self.report.skipped += 1
        else:
            self.failed.add(_chain(sent.row))
            self.report.problems.extend(_problems_of(sent, self.template, status, body))


async def run(
    client: httpx.AsyncClient,
    template: Template,
    path: Path,
    *,
    source: str,
    dry_run: bool = False,
    batch: int = 1000,
    in_flight: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    keep_progress: bool = True,
) -> Report:
    """Check `path` and, when every cell is good, send its rows (see the module's description).

    `client` talks to the template's service (base URL and token set). Up to `in_flight` requests
    of one wave are sent at once (while the service decides one, the next is on its way).
    `on_progress(done, total)` is called after each answered request, in commands.
    """
    try:
        header, rows = sheets.read(path)
        good, report = check(template, header, rows, Ids(source))
    except sheets.SheetError as error:  # bounded before reading: nothing checked, nothing sent
        return Report(problems=[Problem(0, None, str(error))])
    if not report.ok:
        return report
    ordered = waves(good)
    if dry_run:
        ordered = ordered[:1]  # later waves depend on what the first would have written
        report.unchecked = sum(len(r.requests) for r in good) - sum(len(w) for w in ordered)
    plan = [(k, wave[i : i + batch]) for k, wave in enumerate(ordered) for i in range(0, len(wave), batch)]
    report.commands = sum(len(part) for _, part in plan)
    progress = Progress(path.with_name(path.name + ".import-progress"), file_identity(path, template, source, batch))
    keep = keep_progress and not dry_run
    start = progress.load() if keep else 0
    report.resumed_at = start
    report.run_id = None if dry_run else progress.run_id
    sender = _Sender(client, template, plan, report, dry_run, progress.run_id, progress if keep else None, on_progress)
    refusals: list[Problem] = []
    try:
        await sender.send_all(start, in_flight)
    except* _BatchRefusedError as refused:
        refusals = [error.problem for error in refused.exceptions if isinstance(error, _BatchRefusedError)]
    report.problems.extend(refusals)
    if keep and not refusals:
        progress.clear()
    report.problems.sort()
    return report


async def reverse(client: httpx.AsyncClient, run_id: uuid.UUID, reason: str = "") -> tuple[bool, str]:
    """Ask the registry (`client`'s base URL and token) to reverse import run `run_id` (ADR 0026).

    Whether it was reversed, and what to tell the person who asked: the counts, or why it was refused.
    """
    try:
        response = await client.post(f"/import-runs/{run_id}/reversal", json={"reason": reason})
    except httpx.HTTPError as error:
        return False, f"the registry did not answer: {error!r}"
    if response.status_code != 200:  # noqa: PLR2004
        try:
            detail = str(orjson.loads(response.content).get("detail", response.text))
        except (orjson.JSONDecodeError, AttributeError):
            detail = response.text
        return False, f"not reversed (HTTP {response.status_code}): {detail}"
    done = orjson.loads(response.content)
    already = f", {done['already_left']} had already left it" if done["already_left"] else ""
    return True, (
        f"import run {done['run_id']} reversed: {done['reversed']} of {done['nominated']} cadres"
        f" taken out of the pool{already}"
    )
