"""The 9-box over the real Kafka and PostgreSQL: grades from assessment's topic, potential rated in selection.

Placement per subtree from the cycle's current grade (a correction replaces the grade it
supersedes) and the potential rated for the cycle, movement since the cycle before, another
county's cadres absent, and an evaluation delivered again changing nothing.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from contracts.envelope import Envelope
from runtime import clock
from runtime.projection import Recorded
from services.selection.projection import PerformanceView
from tests import infra as infra_module
from tests.integration.test_registry_api import CITY, OTHER_CITY, PROVINCE, build_tree, nominate
from tests.support import Running, auth, caught_up, read_topic, redeliver

pytestmark = pytest.mark.dates
COUNTY = auth("ly-organizer", "cn.qs.bh.bh_ly")
SCORES = {"political_integrity": 80, "ability": 80, "diligence": 80, "performance": 80, "probity": 80}


async def ok(response: Any, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def open_cycle(assessment: Running, days_ago: int) -> tuple[str, str, int]:
    starts = clock.today() - timedelta(days=days_ago)
    name = f"Annual assessment {starts.year}"
    body = {"org_code": "qs", "period": "annual", "name": name, "starts_on": starts.isoformat(),
            "ends_on": (starts + timedelta(days=60)).isoformat()}  # fmt: skip
    accepted = await ok(await assessment.client.post("/cycles", json=body, headers=PROVINCE))
    return str(accepted["stream_id"]).removeprefix("cycle-"), name, starts.year


async def evaluate(assessment: Running, cadre_id: str, cycle_id: str, grade: str, supersedes: str | None = None) -> str:
    evaluation_id = str(uuid.uuid4())
    body = {"evaluation_id": evaluation_id, "cycle_id": cycle_id, "grade": grade, "scores": SCORES,
            "evaluator_name": "Assessment team", "supersedes": supersedes}  # fmt: skip
    await ok(await assessment.client.post(f"/cadres/{cadre_id}/evaluations", json=body, headers=CITY))
    return evaluation_id


async def rate(selection: Running, cadre_id: str, potential: str, cycle: str) -> None:
    body = {"potential": potential, "cycle": cycle, "reason": "Talent review of the county team"}
    await ok(await selection.client.post(f"/cadres/{cadre_id}/potential", json=body, headers=CITY))


def boxes(nine_box: dict[str, Any]) -> dict[int, set[str]]:
    """Box number → the names in it (only boxes with someone)."""
    return {b["number"]: {c["full_name"] for c in b["cadres"]} for b in nine_box["boxes"] if b["cadres"]}


async def test_the_nine_box_per_subtree_with_movement_and_a_redelivered_evaluation(  # noqa: PLR0915 - one story
    infra: infra_module.Infra, namespace: str, registry: Running, selection: Running, assessment: Running
) -> None:
    await build_tree(registry.client)
    await ok(await registry.client.post(
        "/org-units", json={"code": "bh_qy", "name": "Qingyuan County", "level": "county", "parent_code": "bh"},
        headers=CITY,
    ))  # fmt: skip
    both = [selection, assessment]
    li = await nominate(registry, seen_by=both, full_name="Li Wei", org_code="bh_ly")
    zhao = await nominate(registry, seen_by=both, full_name="Zhao Min", org_code="bh_ly")
    sun = await nominate(registry, seen_by=both, full_name="Sun Li", org_code="bh_ly")
    chen = await nominate(registry, seen_by=both, full_name="Chen Jie", org_code="bh_qy")  # the other county
    last_year, last_name, _ = await open_cycle(assessment, 365)
    this_year, _, year = await open_cycle(assessment, 0)

    # Last year: potential labelled with the cycle's name.
    await evaluate(assessment, li, last_year, "competent")
    await evaluate(assessment, zhao, last_year, "excellent")
    await evaluate(assessment, chen, last_year, "excellent")
    for cadre, potential in ((li, "medium"), (zhao, "high"), (chen, "high")):
        await rate(selection, cadre, potential, last_name)
    # This year: potential labelled with the year (alone, or in a review's name); Zhao's grade corrected
    # downwards; Sun graded, not rated.
    await evaluate(assessment, li, this_year, "excellent")
    first = await evaluate(assessment, zhao, this_year, "competent")
    await evaluate(assessment, zhao, this_year, "basically_competent", supersedes=first)
    await evaluate(assessment, sun, this_year, "competent")
    await evaluate(assessment, chen, this_year, "excellent")
    for cadre, potential, label in ((li, "high", str(year)), (zhao, "medium", f"Talent review {year}"),
                                    (chen, "high", str(year))):  # fmt: skip
        await rate(selection, cadre, potential, label)
    topic = f"{namespace}.assessment.events"
    await caught_up(selection.service.pool, "selection.performance", assessment.service.pool, topic)

    county = await ok(await selection.client.get("/nine-box", headers=COUNTY), 200)
    assert county["cycle"]["cycle_id"] == this_year  # the latest begun
    assert county["compared_with"]["cycle_id"] == last_year
    assert [c["cycle_id"] for c in county["cycles"]] == [this_year, last_year]  # opened above the county: seen
    assert boxes(county) == {9: {"Li Wei"}, 4: {"Zhao Min"}}  # excellent+high; basically competent+medium
    assert [b["number"] for b in county["boxes"]] == [7, 8, 9, 4, 5, 6, 1, 2, 3]  # high potential first
    assert county["placed"] == 2
    assert [c["full_name"] for c in county["without_potential"]] == ["Sun Li"]
    assert county["without_grade"] == []
    moves = {m["full_name"]: (m["before"], m["after"], m["direction"]) for m in county["movements"]}
    assert moves == {"Li Wei": (5, 9, "up"), "Zhao Min": (9, 4, "down")}
    assert county["moved"] == {"up": 1, "down": 1, "across": 0, "stayed": 0}
    assert chen not in str(county)  # the other county's cadre is nowhere

    # The city sees both counties; the same subtree asked for by the city is the county's 9-box.
    city = await ok(await selection.client.get("/nine-box", params={"under": "bh"}, headers=CITY), 200)
    assert boxes(city) == {9: {"Li Wei", "Chen Jie"}, 4: {"Zhao Min"}}
    assert city["moved"]["stayed"] == 1
    narrowed = await ok(await selection.client.get("/nine-box", params={"under": "bh_ly"}, headers=CITY), 200)
    assert boxes(narrowed) == boxes(county)
    # Last year's box, asked for by cycle: no earlier cycle to compare with.
    earlier = await ok(await selection.client.get("/nine-box", params={"cycle_id": last_year}, headers=COUNTY), 200)
    assert boxes(earlier) == {5: {"Li Wei"}, 9: {"Zhao Min"}}
    assert earlier["compared_with"] is None
    assert earlier["movements"] == []

    # Outside the actor's subtree, unknown cycles, a later cycle to compare with: 4xx, never a 500.
    assert (await selection.client.get("/nine-box", params={"under": "bh_ly"}, headers=OTHER_CITY)).status_code == 404
    assert (await selection.client.get("/nine-box", params={"under": "bh_qy"}, headers=COUNTY)).status_code == 404
    unknown = await selection.client.get("/nine-box", params={"cycle_id": str(uuid.uuid4())}, headers=COUNTY)
    assert unknown.status_code == 404
    later = {"cycle_id": last_year, "compare_with": this_year}
    assert (await selection.client.get("/nine-box", params=later, headers=COUNTY)).status_code == 404
    assert (await selection.client.get("/nine-box", params={"cycle_id": "x"}, headers=COUNTY)).status_code == 422

    # Zhao's first (superseded) evaluation arrives again, as a relay re-sends after a crash, and is applied again
    # past the watermark: it stays superseded, and the box does not change.
    grades = await selection.service.pool.fetchval("SELECT count(*) FROM review_grades")
    count = await assessment.service.pool.fetchval("SELECT max(position) FROM events")
    [record] = [
        r
        for r in await read_topic(infra.kafka_bootstrap, topic, count=int(count))
        if Envelope.from_bytes(r.value).payload.get("evaluation_id") == first
    ]
    await redeliver(infra.kafka_bootstrap, record)
    async with selection.service.pool.acquire() as conn, conn.transaction():
        await PerformanceView().apply(conn, [Recorded.from_envelope(Envelope.from_bytes(record.value))])
    await caught_up(selection.service.pool, "selection.performance", assessment.service.pool, topic)
    assert await selection.service.pool.fetchval("SELECT count(*) FROM review_grades") == grades
    again = await ok(await selection.client.get("/nine-box", headers=COUNTY), 200)
    assert boxes(again) == boxes(county)
