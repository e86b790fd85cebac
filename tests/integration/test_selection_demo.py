"""Selection's demo loads after the registry's: teams, succession, procedures at every step; again, nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from runtime import clock
from services.registry import demo as registry_demo
from services.selection import demo as selection_demo
from services.selection.app import SelectionSettings
from services.selection.app import create_app as selection_app
from tests.support import SECRET, Launch, Running, eventually

pytestmark = pytest.mark.dates

STEPS = {"opened", "recommendation", "inspection", "decision", "notice", "notice_closed", "concluded", "stopped"}


async def test_selection_demo_fills_the_board_and_loads_idempotently(registry: Running, launch: Launch) -> None:
    selection = await launch(selection_app, SelectionSettings, "selection")
    whole = registry_demo.plan(seed=5, cadres=120)
    await registry_demo.load(registry.client, registry_demo.root_token(SECRET, whole), whole)
    org = whole.part("qs.bh")  # a city's part, as a level of `./dev up --levels` loads it
    token = registry_demo.root_token(SECRET, org)
    headers = {"Authorization": f"Bearer {token}"}

    sent, skipped = await selection_demo.load(selection.client, token, org)
    assert skipped == 0
    assert sent == sum(len(block.commands) for block in selection_demo.plan(org).blocks())

    async def get(url: str, **params: Any) -> Any:
        response = await selection.client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    # Teams: posts with titles, ranks and holders; vacancies; successors with readiness.
    team = await get("/teams/bh")
    assert {post["kind"] for post in team["posts"]} == {"principal", "deputy"}
    assert all(post["rank"] for post in team["posts"])
    counts = await get("/posts/counts", under="bh")
    assert {row["org_code"] for row in counts} == {unit.code for unit in org.units}
    assert sum(row["vacant"] for row in counts) > 0
    assert sum(row["filled"] for row in counts) > sum(row["vacant"] for row in counts)
    strength = await get("/strength", under="bh")
    assert sum(row["successors"] for row in strength["units"]) > 0
    assert strength["below_ratio"]
    assert strength["no_ready_successor"]
    assert strength["falling_vacant_without_successor"]
    today = clock.today()
    use = await get("/pool-use", under="bh", since=(today - timedelta(days=400)).isoformat())
    assert use["appointments"] > 0
    assert use["from_pool"] > 0
    assert await selection.service.pool.fetchval("SELECT count(*) FROM potentials") > 0

    # The procedures' board: every step, and what is due at the notice.
    board = await get("/procedures", under="bh", finished="true")
    assert {row["step"] for row in board} == STEPS
    assert {row["kind"] for row in board} == {"entry", "appointment"}
    due = {item["kind"] for row in board for item in row["due"]}
    assert due == {"notice_ends", "notice_ended", "objection_overdue"}
    assert {row["stopped_at"] for row in board if row["step"] == "stopped"} == {"recommendation", "notice"}
    running = await get("/procedures", under="bh")
    assert {row["step"] for row in running} == STEPS - {"concluded", "stopped"}

    # The appointment procedure appointed: selection's reaction records it in the post's team (once).
    appointed = [row for row in board if row["step"] == "concluded" and row["kind"] == "appointment"]
    assert appointed
    await eventually(
        lambda: selection.service.pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'CadreAppointed'"
            " AND body::jsonb -> 'payload' ->> 'procedure_id' = ANY($1::text[])",
            [str(row["procedure_id"]) for row in appointed],
        ),
        until=lambda found: found == len(appointed),
    )
    # The entry procedure admitted: the registry nominates the candidate under the procedure's id.
    admitted = [row for row in board if row["step"] == "concluded" and row["kind"] == "entry"]
    assert admitted
    ids = [str(row["candidate_id"]) for row in admitted]
    await eventually(
        lambda: registry.service.pool.fetchval("SELECT count(*) FROM cadres WHERE cadre_id::text = ANY($1)", ids),
        until=lambda found: found == len(ids),
    )

    events = await selection.service.pool.fetchval("SELECT count(*) FROM events")
    again_sent, again_skipped = await selection_demo.load(selection.client, token, org)
    assert again_sent == 0
    assert again_skipped == sent
    assert await selection.service.pool.fetchval("SELECT count(*) FROM events") == events
