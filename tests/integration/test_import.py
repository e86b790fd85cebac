"""Spreadsheets in: every bad cell reported by a dry run, then an import through the services' commands, twice."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import openpyxl

from contracts.envelope import Actor, Role
from contracts.registry import CadreRetired, RetirementReason
from exchange import importer
from exchange.templates import TEMPLATES
from runtime import clock
from runtime.context import CommandContext
from runtime.received import cadre_stream
from services.assessment.app import AssessmentSettings
from services.assessment.app import create_app as assessment_app
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.selection.app import SelectionSettings
from services.selection.app import create_app as selection_app
from tests.integration.test_audit import AUDITOR, archived_everything
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, event_count, nomination
from tests.integration.test_training import schedule
from tests.support import Launch, Running, auth, eventually, in_pool_at

SOURCE = "cn.qs.bh"
COUNTY = auth("ly-organizer", "cn.qs.bh.bh_ly")
CITY_VIEWER = auth("bh-viewer", "cn.qs.bh", Role.VIEWER)


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
    # Each says it was imported: the nomination was made in the records it came from.
    assert {c["basis"] for c in imported.json()["items"]} == {"imported"}
    # Every nomination is an ordinary event of the actor who imported, with its rules applied.
    actors = await registry.service.pool.fetch(
        "SELECT DISTINCT body::jsonb #>> '{actor,user}' AS u FROM events WHERE event_type = 'CadreNominated'"
    )
    assert [row["u"] for row in actors] == ["bh-organizer"]


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
        await in_pool_at(training, cadres[-1])
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


async def import_four(registry: Running, tmp_path: Path) -> tuple[uuid.UUID, dict[str, str]]:
    """Four cadres imported in one run (three in Liuyang County, one in Xishan County): the run and their ids."""
    await build_tree(registry.client)
    other_county = {"code": "bh_xs", "name": "Xishan County", "level": "county", "parent_code": "bh"}
    assert (await registry.client.post("/org-units", json=other_county, headers=CITY)).status_code == 201
    path = tmp_path / "cadres.xlsx"
    write_sheet(
        path,
        [HEADER, cadre_row("U-1", "李伟"), cadre_row("U-2", "王芳"), cadre_row("U-3", "赵磊"),
         cadre_row("U-4", "陈杰", 单位代码="bh_xs")],
    )  # fmt: skip
    async with client(registry) as http:
        imported = await importer.run(http, TEMPLATES["cadres"], path, source=SOURCE)
    assert (imported.accepted, imported.problems) == (4, [])
    run = imported.run_id
    assert run is not None
    ids = {
        row["full_name"]: str(row["cadre_id"])
        for row in await registry.service.pool.fetch("SELECT cadre_id, full_name FROM cadres")
    }
    return run, ids


async def refused_whole_changing_nothing(registry: Running, run: uuid.UUID, ids: dict[str, str]) -> None:
    """By hand, by an organizer elsewhere, by one who holds only part of the run, by a viewer, a run never seen."""
    before = await event_count(registry)

    by_hand = {"reason": "import_reversed", "effective_on": clock.today().isoformat()}
    refused = await registry.client.post(f"/cadres/{ids['赵磊']}/retirement", json=by_hand, headers=CITY)
    assert refused.status_code == 422, refused.text
    reversal = f"/import-runs/{run}/reversal"
    assert (await registry.client.post(reversal, json={}, headers=OTHER_CITY)).status_code == 404
    async with client(registry) as http:
        http.headers.update(dict(OTHER_CITY))
        assert await importer.reverse(http, run) == (False, f"not reversed (HTTP 404): import run {run} not found")
    assert (await registry.client.post(reversal, json={}, headers=COUNTY)).status_code == 404
    assert (await registry.client.post(reversal, json={}, headers=CITY_VIEWER)).status_code == 403
    assert (
        await registry.client.post(f"/import-runs/{uuid.uuid4()}/reversal", json={}, headers=CITY)
    ).status_code == 404
    assert await event_count(registry) == before
    shown = await registry.client.get(f"/import-runs/{run}", headers=AUDITOR)
    assert shown.json() == {"run_id": str(run), "nominated": 4, "in_pool": 3, "reversal": None}, shown.text
    for refused_reader, status in ((OTHER_CITY, 404), (COUNTY, 404), (CITY_VIEWER, 403)):
        assert (await registry.client.get(f"/import-runs/{run}", headers=refused_reader)).status_code == status


async def test_a_mistaken_import_is_reversed_by_new_events_seen_everywhere(
    registry: Running, training: Running, launch: Launch, tmp_path: Path
) -> None:
    """`POST /import-runs/{run}/reversal`: compensating events, the log kept whole, once, by whoever may (ADR 0026)."""
    audit = await launch(audit_app, AuditSettings, "audit")
    assessment = await launch(assessment_app, AssessmentSettings, "assessment")
    run, ids = await import_four(registry, tmp_path)
    # Since the import: one cadre got a mentor (changed, still in the pool), one withdrew (already left).
    mentor = {"user_id": "m.sun", "name": "Sun Mentor", "email": "m.sun@example.org"}
    assert (await registry.client.put(f"/cadres/{ids['李伟']}/mentor", json=mentor, headers=CITY)).status_code == 200
    withdrew = {"reason": "withdrew", "effective_on": clock.today().isoformat()}
    left = await registry.client.post(f"/cadres/{ids['王芳']}/retirement", json=withdrew, headers=CITY)
    assert left.status_code == 200, left.text
    await in_pool_at(training, ids["赵磊"])
    nominations = await registry.service.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'CadreNominated' AND correlation_id = $1", run
    )
    assert nominations == 4
    await refused_whole_changing_nothing(registry, run, ids)

    async with client(registry) as http:  # what `./dev import --undo RUN` asks and prints
        done = await importer.reverse(http, run, "the wrong year's list")
        again = await importer.reverse(http, run)
    assert done == (True, f"import run {run} reversed: 3 of 4 cadres taken out of the pool, 1 had already left it")
    assert again == (False, f"not reversed (HTTP 409): import run {run} was already reversed")

    # The registry: out of the pool as reversed (effective on the nomination's day); the withdrawal stands.
    for name in ("李伟", "赵磊", "陈杰"):
        cadre = (await registry.client.get(f"/cadres/{ids[name]}", headers=CITY)).json()
        assert (cadre["status"], cadre["retired_reason"]) == ("retired", "import_reversed"), cadre
        nominated_on = clock.date_of(datetime.fromisoformat(cadre["nominated_at"]))
        assert cadre["retired_on"] == nominated_on.isoformat()
    kept = (await registry.client.get(f"/cadres/{ids['王芳']}", headers=CITY)).json()
    assert kept["retired_reason"] == "withdrew"
    pool = await registry.client.get("/cadres", params={"under": "bh"}, headers=CITY)
    assert pool.json()["items"] == []

    # History kept: the run's events all there, the reversal new events after them, and its record names who asked.
    rows = await registry.service.pool.fetch(
        "SELECT event_type, body::jsonb #>> '{actor,user}' AS actor, body::jsonb #>> '{payload,reason}' AS reason"
        " FROM events WHERE position > (SELECT max(position) FROM events WHERE correlation_id = $1) ORDER BY position",
        run,
    )
    assert sorted(r["event_type"] for r in rows) == [
        "CadreRetired", "CadreRetired", "CadreRetired", "CadreRetired", "ImportRunReversed", "MentorAssigned",
    ]  # fmt: skip
    record = rows[-1]
    assert (record["event_type"], record["actor"]) == ("ImportRunReversed", "bh-organizer")
    shown = (await registry.client.get(f"/import-runs/{run}", headers=AUDITOR)).json()
    assert (shown["in_pool"], shown["reversal"]["by"], shown["reversal"]["reversed"]) == (0, "bh-organizer", 3)
    assert shown["reversal"]["reason"] == "the wrong year's list"
    assert record["reason"] == "the wrong year's list"
    assert (
        await registry.service.pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'CadreNominated' AND correlation_id = $1", run
        )
        == 4
    )

    await seen_in_the_pools_and_audit([training, assessment], audit, registry, ids)


async def seen_in_the_pools_and_audit(
    consumers: list[Running], audit: Running, registry: Running, ids: dict[str, str]
) -> None:
    """Training's and assessment's pools, audit's timeline, pool and archive show the reversal."""
    cadres = [uuid.UUID(i) for i in ids.values()]
    for consumer in consumers:

        async def pool(consumer: Running = consumer) -> list[asyncpg.Record]:
            query = "SELECT in_pool, retired_reason FROM pool_cadres WHERE cadre_id = ANY($1::uuid[])"
            return await consumer.service.pool.fetch(query, cadres)

        reasons = await eventually(pool, until=lambda rows: len(rows) == 4 and not any(r["in_pool"] for r in rows))
        assert sorted(r["retired_reason"] for r in reasons) == ["import_reversed"] * 3 + ["withdrew"]
    await archived_everything(audit, registry, *consumers)
    timeline = await audit.client.get(f"/cadres/{ids['李伟']}/timeline", headers=AUDITOR)
    assert timeline.status_code == 200, timeline.text
    assert [e["event_type"] for e in timeline.json()] == ["CadreNominated", "MentorAssigned", "CadreRetired"]
    audit_pool = await audit.client.get("/pool", params={"under": "bh"}, headers=AUDITOR)
    assert audit_pool.status_code == 200, audit_pool.text
    assert audit_pool.json() == []
    archived = await audit.service.pool.fetch("SELECT actor_user FROM archive WHERE event_type = 'ImportRunReversed'")
    assert [row["actor_user"] for row in archived] == ["bh-organizer"]


async def test_two_reversals_of_one_run_at_once_retire_each_cadre_once_and_record_one(
    registry: Running, tmp_path: Path
) -> None:
    run, ids = await import_four(registry, tmp_path)
    reversal = f"/import-runs/{run}/reversal"
    answers = await asyncio.gather(*(registry.client.post(reversal, json={}, headers=CITY) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    retirements = await registry.service.pool.fetch(
        "SELECT cadre_id FROM events WHERE event_type = 'CadreRetired' ORDER BY cadre_id"
    )
    assert sorted(str(r["cadre_id"]) for r in retirements) == sorted(ids.values())
    records = await registry.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'ImportRunReversed'")
    assert records == 1


async def test_a_reversal_cut_short_is_asked_for_again_and_finishes_the_rest(registry: Running, tmp_path: Path) -> None:
    run, ids = await import_four(registry, tmp_path)
    # What a reversal stopped after its first cadre leaves behind: one retirement, no record of the run.
    first = uuid.UUID(ids["李伟"])
    ctx = CommandContext(actor=Actor(user="bh-organizer", org_path="cn.qs.bh", role=Role.ORGANIZER), correlation_id=run)
    retired = CadreRetired(
        cadre_id=first, reason=RetirementReason.IMPORT_REVERSED, effective_on=clock.today(), note="cut short"
    )
    await registry.service.store.append(
        cadre_stream(first), 1, [retired], ctx=ctx, org_path="cn.qs.bh.bh_ly", cadre_id=first
    )
    async with client(registry) as http:
        done = await importer.reverse(http, run)
    assert done == (True, f"import run {run} reversed: 4 of 4 cadres taken out of the pool")
    retirements = await registry.service.pool.fetch("SELECT cadre_id FROM events WHERE event_type = 'CadreRetired'")
    assert sorted(str(r["cadre_id"]) for r in retirements) == sorted(ids.values())


async def test_posts_and_their_incumbents_come_in_from_spreadsheets_once(
    registry: Running, launch: Launch, tmp_path: Path
) -> None:
    """A unit's team from two sheets: its posts, then who holds them; beyond the quota a row is refused with why."""
    await build_tree(registry.client)
    selection = await launch(selection_app, SelectionSettings, "selection")
    for kind in ("principal", "deputy"):
        body: dict[str, object] = {"kind": kind, "approved": 1, "document_number": "BH-2026-7"}

        async def quota_set(body: dict[str, object] = body) -> bool:  # once selection knows the unit
            answer = await selection.client.post("/teams/bh_ly/quotas", json=body, headers=CITY)
            return answer.status_code == 200

        await eventually(quota_set)
    posts = tmp_path / "posts.xlsx"
    write_sheet(
        posts,
        [["编号", "单位代码", "职位类别", "职务名称", "职级"],
         ["P-1", "bh_ly", "正职", "县长", "正处级"],
         ["P-2", "bh_ly", "副职", "常务副县长", "副处级"],
         ["P-3", "bh_ly", "副职", "副县长", "副处级"]],
    )  # fmt: skip
    since, ends = clock.today() - timedelta(days=700), clock.today() + timedelta(days=400)
    born = date(clock.today().year - 50, 9, 2)
    holders = tmp_path / "incumbents.xlsx"
    header: list[object] = ["职位编号", "单位代码", "姓名", "任职日期", "任期或年龄届满日期", "出生日期"]
    write_sheet(
        holders,
        [header,
         ["P-1", "bh_ly", "张明", since, ends, born],
         ["P-2", "bh_ly", "刘洋", since, None, born],
         ["P-3", "bh_ly", "陈静", since, None, None]],  # a second deputy where one is approved
    )  # fmt: skip
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=selection.app), base_url="http://selection")
    async with http:
        http.headers.update(dict(CITY))
        made = await importer.run(http, TEMPLATES["posts"], posts, source=SOURCE)
        assert (made.accepted, made.problems) == (3, [])
        held = await importer.run(http, TEMPLATES["incumbents"], holders, source=SOURCE)
        assert held.accepted == 2
        assert [(p.row, "over-quota" in p.message) for p in held.problems] == [(4, True)]
        again = await importer.run(http, TEMPLATES["posts"], posts, source=SOURCE)
        assert (again.accepted, again.skipped, again.problems) == (0, 3, [])
        template = await http.get("/import-templates/incumbents", params={"lang": "en", "format": "csv"})
        assert template.status_code == 200
        assert template.text.lstrip("\ufeff").splitlines()[0].startswith("post,org unit code,holder")
    team = (await selection.client.get("/teams/bh_ly", headers=CITY)).json()
    seated = {p["title"]: (p["holder"] or {}).get("holder_name") for p in team["posts"]}
    assert seated == {"县长": "张明", "常务副县长": "刘洋", "副县长": None}
