"""An import run's id: on every request of the run, kept by a resumed run; and how a reversal is reported."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson

from exchange import importer
from exchange.templates import TEMPLATES
from runtime.guard import CORRELATION_HEADER

HEADER = "ref,org_code,full_name,gender,birth_date,education,current_position,years_of_service,grassroots_months,reason"


def _file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "cadres.csv"
    lines = [f"R-{n},bh_ly,Name {n},female,1990-06-01,master,Deputy head,8,30,Led a programme" for n in range(rows)]
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _accepting(seen: list[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers[CORRELATION_HEADER])
        commands = orjson.loads(request.content)["commands"]
        outcomes = [{"status": 201, "body": {}} for _ in commands]
        return httpx.Response(200, json={"dry_run": False, "outcomes": outcomes})

    return httpx.MockTransport(answer)


def test_every_request_of_a_run_names_the_run_and_a_resumed_run_keeps_it(tmp_path: Path) -> None:
    path = _file(tmp_path, 5)
    seen: list[str] = []

    async def run() -> importer.Report:
        async with httpx.AsyncClient(transport=_accepting(seen), base_url="http://registry") as client:
            return await importer.run(client, TEMPLATES["cadres"], path, source="t", batch=2)

    first = asyncio.run(run())
    assert (first.accepted, first.problems) == (5, [])
    assert first.run_id is not None
    assert seen == [str(first.run_id)] * 3

    # Stopped after the first request: the next run resumes it, under the same id.
    progress = importer.Progress(
        path.with_name(path.name + ".import-progress"), importer.file_identity(path, TEMPLATES["cadres"], "t", 2)
    )
    progress.save(1)
    seen.clear()
    resumed = asyncio.run(run())
    assert (resumed.resumed_at, resumed.accepted, resumed.run_id) == (1, 3, progress.run_id)
    assert seen == [str(progress.run_id)] * 2
    # A new import of the file is a new run.
    seen.clear()
    again = asyncio.run(run())
    assert again.run_id not in {None, first.run_id, progress.run_id}
    assert seen == [str(again.run_id)] * 3


def test_a_progress_record_of_another_import_gives_neither_its_place_nor_its_run(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    mine = importer.Progress(path, "a")
    mine.save(4)
    other = importer.Progress(path, "b")
    assert other.load() == 0
    assert other.run_id != mine.run_id
    same = importer.Progress(path, "a")
    assert (same.load(), same.run_id) == (4, mine.run_id)


def test_a_reversal_is_reported_with_its_counts_or_the_reason_it_was_refused() -> None:
    run = uuid.uuid4()
    answers = {
        "done": httpx.Response(
            200,
            json={"run_id": str(run), "nominated": 4, "reversed": 3, "already_left": 1, "stream_id": "s", "version": 1},
        ),
        "twice": httpx.Response(409, json={"title": "Conflict", "detail": f"import run {run} was already reversed"}),
        "broken": httpx.Response(502, text="<html>bad gateway</html>"),
    }

    def ask(name: str) -> tuple[bool, str]:
        def answer(request: httpx.Request) -> httpx.Response:
            assert request.url.path == f"/import-runs/{run}/reversal"
            assert orjson.loads(request.content) == {"reason": "wrong list"}
            return answers[name]

        async def go() -> tuple[bool, str]:
            async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://r") as client:
                return await importer.reverse(client, run, "wrong list")

        return asyncio.run(go())

    assert ask("done") == (
        True,
        f"import run {run} reversed: 3 of 4 cadres taken out of the pool, 1 had already left it",
    )
    assert ask("twice") == (False, f"not reversed (HTTP 409): import run {run} was already reversed")
    assert ask("broken") == (False, "not reversed (HTTP 502): <html>bad gateway</html>")
