"""The structure statistics of the pool as of a date, against the real Kafka and PostgreSQL.

A past date's figures are what a replay of the events recorded by then gives (the audit
service's archive, folded); the workbook holds the API's figures; another city's cadres are
never counted.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import pytest
from openpyxl import load_workbook

from contracts.envelope import Envelope, Role
from runtime import clock
from runtime.projection import Recorded
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.registry import statistics
from services.selection.app import SelectionSettings
from services.selection.app import create_app as selection_app
from tests.integration.test_audit import archived_everything
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nominate, nomination
from tests.support import Launch, Running, auth, in_pool_at

pytestmark = pytest.mark.dates

AUDITOR = auth("auditor.zhou", "cn.qs.bh", Role.AUDITOR)


async def figures(registry: Running, headers: Any = CITY, **params: Any) -> dict[str, Any]:
    response = await registry.client.get("/statistics", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def replayed(audit: Running, root: str, end: datetime, on: date) -> dict[str, Any]:
    """The statistics of a subtree folded from the audit's archive of events recorded before `end`."""
    rows = await audit.service.pool.fetch(
        "SELECT body FROM archive WHERE source = 'registry' AND event_type = ANY($1::text[]) AND recorded_at < $2"
        " ORDER BY recorded_at, position",
        list(statistics.EVENT_TYPES),
        end,
    )
    events = [Recorded.from_envelope(Envelope.model_validate(orjson.loads(r["body"]))) for r in rows]
    units = await audit.service.pool.fetch(
        "SELECT code, name, level FROM units WHERE path = $1 OR path LIKE $1 || '.%' ORDER BY path", root
    )
    members = statistics.pool_on(events, root)
    folded = statistics.tally(
        root, units[0]["name"], on, (statistics.Unit(u["code"], u["name"], u["level"]) for u in units), members
    )
    return folded.model_dump(mode="json")


def without_empty_units(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures with only the lines that count someone (units registered later have none)."""
    return {
        **stats,
        "levels": [
            {**sheet, "units": [u for u in sheet["units"] if u["total"]]}
            for sheet in stats["levels"]
            if sheet["total"]["total"]
        ],
    }


async def test_a_past_date_is_what_a_replay_of_that_date_gives(launch: Launch, registry: Running) -> None:
    audit = await launch(audit_app, AuditSettings, "audit")
    await build_tree(registry.client)
    first_day = clock.today()
    year = first_day.year
    born = date(year - 33, 1, 1).isoformat()  # 33 on the first day, 33 or 34 two days later: the band 30-34
    han_member: dict[str, Any] = {"ethnicity": "han", "party": "member", "party_joined_year": year - 12}
    kept = await nominate(
        registry,
        full_name="Li Wei",
        birth_date=born,
        full_time_education="bachelor",
        in_service_education="master",
        rank="正科级",
        reserve_kind="县处级副职",
        **han_member,
    )
    leaving = await nominate(
        registry, full_name="Zhang Min", gender="male", birth_date=born, ethnicity="minority", party="non_party"
    )
    unrecorded = await nominate(registry, full_name="Chen Jie", gender="male", birth_date=born, org_code="bh")
    await nominate(registry, OTHER_CITY, full_name="Wang Fang", org_code="hx", ethnicity="minority")

    before = clock.current()
    try:
        # Two days later: a profile gains its categories, one cadre leaves, another comes in.
        clock.use(before.at(clock.start_of(first_day + timedelta(days=2)) + timedelta(hours=9)))
        today = clock.today()
        changed = await registry.client.patch(
            f"/cadres/{unrecorded}",
            json={"ethnicity": "han", "party": "member", "party_joined_year": year - 3, "rank": "副科级"},
            headers=CITY,
        )
        assert changed.status_code == 200, changed.text
        retired = await registry.client.post(f"/cadres/{leaving}/retirement", json={"reason": "withdrew"}, headers=CITY)
        assert retired.status_code == 200, retired.text
        await nominate(registry, full_name="Zhao Lei", birth_date=born, in_service_education="bachelor")
        await archived_everything(audit, registry)

        then = await figures(registry, under="bh", on=first_day.isoformat())
        now = await figures(registry, under="bh")
        assert now["on"] == today.isoformat()
        assert then["on"] == first_day.isoformat()

        # The past date folded from the registry's own events equals the audit's replay of that day.
        end_of_first_day = clock.start_of(first_day + timedelta(days=1))
        assert without_empty_units(then) == without_empty_units(
            await replayed(audit, "cn.qs.bh", end_of_first_day, first_day)
        )
        # Today's, counted from the projection, equal the replay of everything recorded so far.
        assert without_empty_units(now) == without_empty_units(await replayed(audit, "cn.qs.bh", clock.now(), today))
        # The same cadres the audit's pool shows at the end of the first day.
        pool = await audit.client.get(
            "/pool",
            params={"under": "bh", "at": (end_of_first_day - timedelta(microseconds=1)).isoformat()},
            headers=AUDITOR,
        )
        assert pool.status_code == 200, pool.text
        shown = Counter(entry["org_code"] for entry in pool.json())
        assert {u["code"]: u["total"] for s in then["levels"] for u in s["units"] if u["total"]} == shown

        on_record_each_day(then, now)
        assert kept  # the first cadre stays in the pool throughout
    finally:
        clock.use(before)


async def test_the_workbook_holds_the_api_figures_one_sheet_per_level(registry: Running) -> None:
    await build_tree(registry.client)
    await nominate(registry, full_name="Li Wei", ethnicity="minority", party="member", rank="正科级")
    await nominate(registry, full_name="Chen Jie", gender="male", org_code="bh", full_time_education="master")
    api = await figures(registry, under="bh")
    response = await registry.client.get("/statistics", params={"under": "bh", "format": "xlsx"}, headers=CITY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["市级", "县级"]
    on = date.fromisoformat(api["on"])
    columns = [(group, category) for group, categories in api["groups"].items() for category in categories]
    for sheet in api["levels"]:
        ws = book["县级" if sheet["level"] == "county" else "市级"]
        rows = [list(row) for row in ws.iter_rows(min_row=5, values_only=True)]
        assert ws.cell(3, 1).value == "单位"
        assert ws.cell(2, 1).value == f"截至{on.year}年{on.month}月{on.day}日"
        expected = [
            [line["name"] if line["code"] else "合计", line["total"], line["average_age"]]
            + [line["counts"][group][category] for group, category in columns]
            for line in [*sheet["units"], sheet["total"]]
        ]
        assert rows == expected
    county = book["县级"]
    header = [county.cell(3, c).value for c in range(1, county.max_column + 1)]
    assert "民族" in header
    assert "职级" in header


async def test_scope_dates_and_bad_input(registry: Running) -> None:
    await build_tree(registry.client)
    await nominate(registry, full_name="Li Wei")
    await nominate(registry, OTHER_CITY, full_name="Wang Fang", org_code="hx")
    mine = await figures(registry)
    assert mine["root"] == "cn.qs.bh"
    assert mine["total"]["total"] == 1
    assert all(u["code"] != "hx" for s in mine["levels"] for u in s["units"])
    theirs = await figures(registry, OTHER_CITY)
    assert theirs["total"]["total"] == 1
    assert theirs["root"] == "cn.qs.hx"
    outside = await registry.client.get("/statistics", params={"under": "hx"}, headers=CITY)
    assert outside.status_code in {403, 404}, outside.text
    tomorrow = (clock.today() + timedelta(days=1)).isoformat()
    for params in ({"on": tomorrow}, {"on": "yesterday"}, {"on": "2026-02-30"}, {"format": "pdf"}):
        response = await registry.client.get("/statistics", params=params, headers=CITY)
        assert 400 <= response.status_code < 500, (params, response.text)
    long_ago = await figures(registry, on=(clock.today() - timedelta(days=400)).isoformat())
    assert long_ago["total"]["total"] == 0
    assert long_ago["levels"] == []
    bad = await registry.client.post(
        "/cadres", json=nomination(full_name="Zhou Yu", ethnicity="tibetan", party_joined_year=1850), headers=CITY
    )
    assert bad.status_code == 422, bad.text
    assert (await figures(registry))["total"]["total"] == 1


def on_record_each_day(then: dict[str, Any], now: dict[str, Any]) -> None:
    """What was on the record on the first day, and two days later."""
    assert then["total"]["total"] == 3
    assert now["total"]["total"] == 3
    counts_then, counts_now = then["total"]["counts"], now["total"]["counts"]
    assert counts_then["gender"] == {"female": 1, "male": 2}
    assert counts_now["gender"] == {"female": 2, "male": 1}
    assert counts_then["ethnicity"] == {"han": 1, "minority": 1, "not_recorded": 1}
    assert counts_now["ethnicity"] == {"han": 2, "minority": 0, "not_recorded": 1}
    assert counts_then["party"] == {"member": 1, "non_party": 1, "not_recorded": 1}
    assert counts_now["party_years"]["under 5 years"] == 1
    assert counts_now["party_years"]["10-19 years"] == 1
    assert counts_then["age"]["30-34"] == 3
    assert counts_now["women_by_age"]["30-34"] == 2
    assert counts_then["rank"] == {"正科级": 1, "not_recorded": 2}
    assert counts_now["rank"] == {"副科级": 1, "正科级": 1, "not_recorded": 1}
    assert counts_now["in_service_education"]["bachelor"] == 1
    assert counts_now["in_service_education"]["master"] == 1
    assert counts_now["reserve_kind"] == {"县处级副职": 1, "not_recorded": 2}
    county = next(s for s in now["levels"] if s["level"] == "county")
    assert [(u["code"], u["total"]) for u in county["units"]] == [("bh_ly", 2)]
    assert county["total"]["total"] == 2


async def test_the_age_structure_of_each_leadership_team_on_a_day(launch: Launch, registry: Running) -> None:
    selection = await launch(selection_app, SelectionSettings, "selection")
    await build_tree(registry.client)
    today = clock.today()
    reserve = await nominate(registry, full_name="Li Wei", birth_date=date(today.year - 33, 1, 1).isoformat())
    await in_pool_at(selection, reserve)
    for kind, approved in (("principal", 1), ("deputy", 2)):
        quota = await selection.client.post(
            "/teams/bh_ly/quotas", json={"kind": kind, "approved": approved, "document_number": "BH-1"}, headers=CITY
        )
        assert quota.status_code == 200, quota.text
    posts = {}
    for kind, title in (("principal", "Party secretary"), ("deputy", "Deputy head A"), ("deputy", "Deputy head B")):
        made = await selection.client.post(
            "/teams/bh_ly/posts", json={"kind": kind, "title": title, "rank": "county level"}, headers=CITY
        )
        assert made.status_code == 201, made.text
    for row in await selection.service.pool.fetch("SELECT title, post_id FROM posts"):
        posts[row["title"]] = str(row["post_id"])
    long_ago = (today - timedelta(days=900)).isoformat()
    born = date(today.year - 53, 7, 1).isoformat()  # 51 to 53 in the days looked at: the band 51-55
    wrong = {"holder_name": "Wang Gang", "starts_on": long_ago, "birth_date": (today - timedelta(days=1)).isoformat()}
    refused = await selection.client.post(
        f"/teams/bh_ly/posts/{posts['Party secretary']}/incumbent", json=wrong, headers=CITY
    )
    assert refused.status_code == 422, refused.text
    for title, holder in (
        ("Party secretary", {"holder_name": "Wang Gang", "starts_on": long_ago, "birth_date": born}),
        ("Deputy head A", {"holder_name": "Sun Li", "starts_on": long_ago}),  # no birth date recorded
    ):
        held = await selection.client.post(f"/teams/bh_ly/posts/{posts[title]}/incumbent", json=holder, headers=CITY)
        assert held.status_code == 201, held.text
    ended = await selection.client.post(
        f"/teams/bh_ly/posts/{posts['Deputy head A']}/incumbent/end",
        json={"left_on": (today - timedelta(days=10)).isoformat(), "reason": "end_of_term"},
        headers=CITY,
    )
    assert ended.status_code == 200, ended.text
    appointed = await selection.client.post(
        f"/teams/bh_ly/posts/{posts['Deputy head B']}/appointment",
        json={"cadre_id": reserve, "appointed_on": today.isoformat(), "document_number": "BH-12"},
        headers=CITY,
    )
    assert appointed.status_code == 201, appointed.text

    now = (await selection.client.get("/team-ages", params={"under": "bh"}, headers=CITY)).json()
    month_ago = (today - timedelta(days=30)).isoformat()
    then = (await selection.client.get("/team-ages", params={"on": month_ago}, headers=CITY)).json()
    assert [(t["org_code"], t["members"]) for t in now["teams"]] == [("bh_ly", 2)]
    team_now, team_then = now["teams"][0], then["teams"][0]
    assert {band: n for band, n in team_now["by_age"].items() if n} == {"35 and under": 1, "51-55": 1}
    assert team_now["by_kind"] == {"principal": 1, "deputy": 1}
    assert {band: n for band, n in team_then["by_age"].items() if n} == {"51-55": 1, "not_recorded": 1}
    assert team_then["average_age"] in {51.0, 52.0, 53.0}  # of the one whose birth date is known
    assert now["total"]["members"] == 2

    # Scope, and no day to come.
    assert (await selection.client.get("/team-ages", headers=OTHER_CITY)).json()["teams"] == []
    outside = await selection.client.get("/team-ages", params={"under": "hx"}, headers=CITY)
    assert outside.status_code in {403, 404}, outside.text
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert (await selection.client.get("/team-ages", params={"on": tomorrow}, headers=CITY)).status_code == 400
