"""Spreadsheets in: every bad cell reported by a dry run, then an import through the services' commands, twice."""

from __future__ import annotations

import io
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import openpyxl
import pytest

from exchange import importer
from exchange.templates import TEMPLATES
from runtime import clock
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests.conftest import Launch
from tests.integration.test_registry_api import CITY, build_tree, nomination
from tests.integration.test_training import schedule, visible_in_training
from tests.support import Running

SOURCE = "cn.qs.bh"


def write_sheet(path: Path, rows: list[list[object]]) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)


def cadre_row(ref: str, name: str, **changes: object) -> list[object]:
    born = date(clock.today().year - 30, 6, 1)
    row: dict[str, object] = {
        "编号": ref, "单位代码": "bh_ly", "姓名": name, "性别": "女", "出生日期": born, "学历": "硕士研究生",
        "现任职务": "县扶贫办副主任", "工作年限": 8, "基层工作月数": 30, "推荐理由": "主持全县农村公路建设",
    }  # fmt: skip
    row.update(changes)
    return list(row.values())


HEADER: list[object] = [
    "编号",
    "单位代码",
    "姓名",
    "性别",
    "出生日期",
    "学历",
    "现任职务",
    "工作年限",
    "基层工作月数",
    "推荐理由",
]


def client(registry: Running) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=registry.app)
    return httpx.AsyncClient(transport=transport, base_url="http://registry", headers=dict(CITY))


async def test_a_dry_run_reports_every_bad_cell_and_changes_nothing(registry: Running, tmp_path: Path) -> None:
    await build_tree(registry.client)
    template = await registry.client.get("/import-templates/cadres", params={"lang": "en"}, headers=CITY)
    assert template.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(template.content))
    assert [c.value for c in book.worksheets[0][1]][:3] == ["reference", "org unit code", "full name"]
    assert book.worksheets[0]["C2"].value == "李伟"  # the example row
    assert "female / male" in [c.value for c in book.worksheets[1]["D"]]

    path = tmp_path / "cadres.xlsx"
    too_old = date(clock.today().year - 60, 1, 1)
    write_sheet(
        path,
        [
            HEADER,
            cadre_row("A-1", "李伟"),
            cadre_row("A-2", "王芳", 工作年限="eight"),  # type
            cadre_row("A-3", "赵磊", 基层工作月数=9999),  # range (the service's own validation)
            cadre_row("A-4", "陈杰", 单位代码="nowhere"),  # unknown org unit
            cadre_row("A-5", "刘洋", 出生日期=too_old),  # entry rule
            cadre_row("A-1", "李伟"),  # duplicate
            cadre_row("A-6", "孙丽", 性别="其他"),  # not an allowed value
        ],
    )
    async with client(registry) as http:
        cells = await importer.run(http, TEMPLATES["cadres"], path, source=SOURCE, dry_run=True)
        # Cell problems stop the run before anything is sent: fix them, then the services check the rest.
        assert [(p.row, p.column) for p in cells.problems] == [(3, "years_of_service"), (7, "ref"), (8, "gender")]
        write_sheet(path, [HEADER, *[cadre_row(f"A-{n}", "x") for n in (1,)],
                           cadre_row("A-3", "赵磊", 基层工作月数=9999), cadre_row("A-4", "陈杰", 单位代码="nowhere"),
                           cadre_row("A-5", "刘洋", 出生日期=too_old)])  # fmt: skip
        checked = await importer.run(http, TEMPLATES["cadres"], path, source=SOURCE, dry_run=True)
    problems = {(p.row, p.column): p.message for p in checked.problems}
    assert set(problems) == {(3, "grassroots_months"), (4, None), (5, None)}, problems
    assert "less than or equal to 720" in problems[(3, "grassroots_months")]
    assert "org unit nowhere not found" in problems[(4, None)]
    assert "entry rules" in problems[(5, None)]
    assert checked.accepted == 1
    assert await registry.service.pool.fetchval("SELECT count(*) FROM cadres") == 0
    assert await registry.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'CadreNominated'") == 0


async def test_an_import_goes_through_the_commands_once_and_resumes_where_it_stopped(
    registry: Running, tmp_path: Path
) -> None:
    await build_tree(registry.client)
    path = tmp_path / "cadres.csv"
    rows = [cadre_row(f"B-{n:03d}", f"干部{n}") for n in range(30)]
    path.write_text(
        "\ufeff" + "\n".join(",".join(str(c) for c in row) for row in [HEADER, *rows]) + "\n", encoding="utf-8"
    )
    async with client(registry) as http:
        first = await importer.run(http, TEMPLATES["cadres"], path, source=SOURCE, batch=7)
        assert (first.accepted, first.skipped, first.problems) == (30, 0, [])
        events = await registry.service.pool.fetchval("SELECT count(*) FROM events")
        again = await importer.run(http, TEMPLATES["cadres"], path, source=SOURCE, batch=7)
        assert (again.accepted, again.skipped, again.problems) == (0, 30, [])
        assert await registry.service.pool.fetchval("SELECT count(*) FROM events") == events

        # Stopped after two requests: the next run starts at the third.
        progress = importer.Progress(
            path.with_name(path.name + ".import-progress"),
            importer.file_identity(path, TEMPLATES["cadres"], "cn.qs.other", 7),
        )
        progress.save(2)
        resumed = await importer.run(http, TEMPLATES["cadres"], path, source="cn.qs.other", batch=7)
        assert resumed.resumed_at == 2
        assert (resumed.accepted, resumed.skipped) == (16, 0)
        assert not progress.path.exists()
    imported = await registry.client.get("/cadres", params={"limit": 500}, headers=CITY)
    names = [c["full_name"] for c in imported.json()["items"]]
    assert len(names) == 30 + 16
    # Every nomination is an ordinary event of the actor who imported, with its rules applied.
    actors = await registry.service.pool.fetch(
        "SELECT DISTINCT body::jsonb #>> '{actor,user}' AS u FROM events WHERE event_type = 'CadreNominated'"
    )
    assert [row["u"] for row in actors] == ["bh-organizer"]


@pytest.fixture
async def training(launch: Launch, registry: Running) -> Running:
    return await launch(training_app, TrainingSettings, "training")


async def test_completed_organized_training_is_imported_after_the_fact(
    registry: Running, training: Running, tmp_path: Path
) -> None:
    """Past training comes in through `TrainingAttendanceRecorded`: enrolment closed when the programme started."""
    await build_tree(registry.client)
    cadres = []
    for name in ("李伟", "王芳"):
        response = await registry.client.post("/cadres", json=nomination(full_name=name), headers=CITY)
        assert response.status_code == 201, response.text
        cadres.append(str(response.json()["stream_id"]).removeprefix("cadre-"))
        await visible_in_training(training, cadres[-1])
    program_id = await schedule(training, starts_in=-60, capacity=2)  # ran two months ago, 80 hours
    finished = (clock.today() - timedelta(days=46)).isoformat()
    header: list[object] = ["编号", "干部编号", "培训班编号", "结业日期", "学时", "成绩", "是否合格", "证明材料"]
    path = tmp_path / "training.xlsx"
    write_sheet(
        path,
        [
            header,
            ["T-1", cadres[0], program_id, finished, 80, 91, "合格", "结业证书 2024-017"],
            ["T-2", cadres[1], program_id, finished, 120, None, None, "结业证书 2024-018"],  # more than 80 hours
        ],
    )
    template = TEMPLATES["training"]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=training.app), base_url="http://training")
    async with http:
        http.headers.update(dict(CITY))
        first = await importer.run(http, template, path, source=SOURCE)
        assert first.accepted == 1
        assert [(p.row, "more than the programme's 80" in p.message) for p in first.problems] == [(3, True)]
        write_sheet(path, [header, ["T-1", cadres[0], program_id, finished, 80, 91, "合格", "结业证书 2024-017"]])
        again = await importer.run(http, template, path, source=SOURCE)
        assert (again.accepted, again.skipped, again.problems) == (0, 1, [])
    row = await training.service.pool.fetchrow(
        "SELECT status, hours, score, passed FROM enrolments WHERE program_id = $1", uuid.UUID(program_id)
    )
    assert row is not None
    assert dict(row) == {"status": "completed", "hours": 80, "score": 91, "passed": True}
    events = await training.service.pool.fetch(
        "SELECT event_type FROM events WHERE stream_id = $1", f"program-{program_id}"
    )
    assert [e["event_type"] for e in events] == ["TrainingProgramScheduled", "TrainingAttendanceRecorded"]
    # Enrolment itself stays closed: a started programme takes no enrolment.
    late = await training.client.post(f"/programs/{program_id}/enrolments", json={"cadre_id": cadres[1]}, headers=CITY)
    assert late.status_code == 422
