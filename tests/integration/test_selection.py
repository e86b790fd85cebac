"""Selection against the registry over the real Kafka and PostgreSQL: quotas, succession, appointments."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import openpyxl
import pytest

from contracts.selection import CadreAppointed
from runtime import clock
from services.registry.commands import RegistryCommands
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nominate
from tests.support import Running, eventually, in_pool_at

pytestmark = pytest.mark.dates


async def test_quota_succession_and_appointment_out_of_the_pool(  # noqa: PLR0915 - one story, told in order
    registry: Running, selection: Running
) -> None:
    await build_tree(registry.client)
    reserve = await nominate(registry, full_name="Li Wei")
    other = await nominate(registry, full_name="Zhao Min")
    await in_pool_at(selection, reserve)
    await in_pool_at(selection, other)
    today = clock.today()

    quota = await selection.client.post(
        "/teams/bh_ly/quotas", json={"kind": "deputy", "approved": 1, "document_number": "BH-2026-1"}, headers=CITY
    )
    assert quota.status_code == 200, quota.text
    first = await selection.client.post(
        "/teams/bh_ly/posts", json={"kind": "deputy", "title": "Deputy head A", "rank": "county deputy"}, headers=CITY
    )
    second = await selection.client.post(
        "/teams/bh_ly/posts", json={"kind": "deputy", "title": "Deputy head B", "rank": "county deputy"}, headers=CITY
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    posts = {
        r["title"]: str(r["post_id"]) for r in await selection.service.pool.fetch("SELECT title, post_id FROM posts")
    }
    post_a, post_b = posts["Deputy head A"], posts["Deputy head B"]

    holder: dict[str, Any] = {
        "holder_name": "Wang Gang",
        "starts_on": (today - timedelta(days=900)).isoformat(),
        "ends_by": (today + timedelta(days=120)).isoformat(),
    }
    filled = await selection.client.post(f"/teams/bh_ly/posts/{post_a}/incumbent", json=holder, headers=CITY)
    assert filled.status_code == 201, filled.text
    # The quota of one deputy is full: a second incumbent needs a recorded decision.
    refused = await selection.client.post(
        f"/teams/bh_ly/posts/{post_b}/incumbent", json={**holder, "holder_name": "Sun Li"}, headers=CITY
    )
    assert refused.status_code == 422, refused.text
    assert "over-quota" in refused.json()["detail"]
    decision = {"document_number": "BH-2026-7", "reason": "Flood reconstruction needs a second deputy"}
    allowed = await selection.client.post(
        f"/teams/bh_ly/posts/{post_b}/incumbent",
        json={
            **holder,
            "holder_name": "Sun Li",
            "ends_by": (today + timedelta(days=2000)).isoformat(),
            "over_quota": decision,
        },
        headers=CITY,
    )
    assert allowed.status_code == 201, allowed.text
    counts = (await selection.client.get("/posts/counts", headers=CITY)).json()
    assert counts == [
        {
            "org_code": "bh_ly",
            "unit_name": "Liuyang County",
            "kind": "deputy",
            "approved": 1,
            "posts": 2,
            "filled": 2,
            "vacant": 0,
            "over_quota": 1,
            "over_quota_decisions": 1,
        }
    ]

    # Succession: none named yet, so post A (falling vacant within a year) is a gap; then a successor.
    strength = (await selection.client.get("/strength", headers=CITY)).json()
    assert {g["title"] for g in strength["falling_vacant_without_successor"]} == {"Deputy head A"}
    assert (strength["falling_vacant_total"], strength["no_ready_successor_total"]) == (1, 2)
    first = (await selection.client.get("/strength", params={"limit": 1}, headers=CITY)).json()
    assert (len(first["no_ready_successor"]), first["no_ready_successor_total"]) == (1, 2)
    assert (await selection.client.get("/strength", params={"limit": 0}, headers=CITY)).status_code == 422
    assert strength["below_ratio"][0]["required"] == 4
    named = await selection.client.post(
        f"/teams/bh_ly/posts/{post_a}/successors",
        json={"cadre_id": reserve, "readiness": "one_to_two_years", "reason": "Needs a township posting first"},
        headers=CITY,
    )
    assert named.status_code == 201, named.text
    reviewed = await selection.client.post(
        f"/teams/bh_ly/posts/{post_a}/successors/{reserve}/review",
        json={"readiness": "ready_now", "reason": "Township posting completed with excellent grades"},
        headers=CITY,
    )
    assert reviewed.status_code == 200, reviewed.text
    history = (
        await selection.client.get(f"/teams/bh_ly/posts/{post_a}/successors/{reserve}/history", headers=CITY)
    ).json()
    assert [(h["readiness"], h["reason"]) for h in history] == [
        ("one_to_two_years", "Needs a township posting first"),
        ("ready_now", "Township posting completed with excellent grades"),
    ]
    strength = (await selection.client.get("/strength", headers=CITY)).json()
    assert [g["title"] for g in strength["no_ready_successor"]] == ["Deputy head B"]
    assert strength["falling_vacant_without_successor"] == []
    # The unit's counts were kept from the first read and counted again after the successor was named.
    assert (strength["falling_vacant_total"], strength["no_ready_successor_total"]) == (0, 1)
    assert {(u["kind"], u["successors"]) for u in strength["units"]} == {("deputy", 1)}
    # Another city sees nothing of this team.
    hidden = await selection.client.get("/teams/bh_ly", headers=OTHER_CITY)
    assert hidden.status_code == 404
    assert (await selection.client.get("/posts/counts", headers=OTHER_CITY)).json() == []

    # The appointment fills the post, ends the tenure before it, and the registry retires the cadre once.
    appointed = await selection.client.post(
        f"/teams/bh_ly/posts/{post_a}/appointment",
        json={"cadre_id": reserve, "appointed_on": today.isoformat(), "document_number": "BH-2026-12"},
        headers=CITY,
    )
    assert appointed.status_code == 201, appointed.text
    assert [e["event_type"] for e in appointed.json()["events"]] == ["IncumbentLeft", "CadreAppointed"]
    team = (await selection.client.get("/teams/bh_ly", headers=CITY)).json()
    held = {p["title"]: p["holder"] for p in team["posts"]}
    assert held["Deputy head A"]["cadre_id"] == reserve
    assert held["Deputy head A"]["from_pool"] is True

    cadre = await eventually(
        lambda: registry.client.get(f"/cadres/{reserve}", headers=CITY),
        until=lambda r: r.json().get("status") == "retired",
    )
    assert cadre.json()["retired_reason"] == "appointed"
    retirements = await registry.service.pool.fetch("SELECT body FROM events WHERE event_type = 'CadreRetired'")
    assert len(retirements) == 1
    assert str(post_a) in retirements[0]["body"]

    # Redelivery has no second effect: the reaction finds the cadre out of the pool.
    history = await selection.service.store.read_stream("team-bh_ly")
    appointment = history[-1].envelope
    assert appointment.event_type == "CadreAppointed"
    commands = registry.service.part(RegistryCommands)
    event = CadreAppointed.model_validate(appointment.payload)
    assert await commands.retire_appointed(appointment, event) is None
    count = await registry.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'CadreRetired'")
    assert count == 1

    # Selection learns of the retirement too, and counts the appointment in the pool's use.
    await eventually(
        lambda: selection.service.pool.fetchval(
            "SELECT retired_reason FROM pool_cadres WHERE cadre_id = $1", uuid.UUID(reserve)
        ),
        until=lambda reason: reason == "appointed",
    )
    use = (await selection.client.get("/pool-use", headers=CITY)).json()
    assert (use["appointments"], use["from_pool"], use["share_from_pool"]) == (1, 1, 1.0)
    assert use["rows"][0]["org_code"] == "bh_ly"
    # The appointed cadre can be appointed again only from the pool: it has left it.
    again = await selection.client.post(
        f"/teams/bh_ly/posts/{post_b}/appointment",
        json={"cadre_id": reserve, "appointed_on": today.isoformat(), "document_number": "BH-2026-13"},
        headers=CITY,
    )
    assert again.status_code == 422, again.text
    assert await selection.service.store.verify_chain() is None


async def test_the_list_of_posts_and_its_exports(registry: Running, selection: Running) -> None:
    await build_tree(registry.client)
    reserve = await nominate(registry, full_name="Li Wei")
    await in_pool_at(selection, reserve)
    today = clock.today()
    for title in ("Deputy head A", "Deputy head B"):
        created = await selection.client.post(
            "/teams/bh_ly/posts", json={"kind": "deputy", "title": title, "rank": "county deputy"}, headers=CITY
        )
        assert created.status_code == 201, created.text
    posts = {r["title"]: r["post_id"] for r in await selection.service.pool.fetch("SELECT title, post_id FROM posts")}
    ends_by = today + timedelta(days=400)
    holder = {
        "holder_name": "Wang Gang",
        "starts_on": (today - timedelta(days=300)).isoformat(),
        "ends_by": ends_by.isoformat(),
    }
    quota = await selection.client.post(
        "/teams/bh_ly/quotas", json={"kind": "deputy", "approved": 2, "document_number": "BH-2026-2"}, headers=CITY
    )
    assert quota.status_code == 200, quota.text
    filled = await selection.client.post(
        f"/teams/bh_ly/posts/{posts['Deputy head A']}/incumbent", json=holder, headers=CITY
    )
    assert filled.status_code == 201, filled.text
    for readiness in ("three_plus_years", "one_to_two_years"):
        other = reserve if readiness == "one_to_two_years" else await nominate(registry, full_name="Zhao Min")
        await in_pool_at(selection, other)
        named = await selection.client.post(
            f"/teams/bh_ly/posts/{posts['Deputy head A']}/successors",
            json={"cadre_id": other, "readiness": readiness, "reason": "Named at the annual review"},
            headers=CITY,
        )
        assert named.status_code == 201, named.text

    listed = await selection.client.get("/posts", headers=CITY)
    assert listed.status_code == 200, listed.text
    rows = {r["title"]: r for r in listed.json()}
    assert rows["Deputy head A"] | {"post_id": None} == {
        "post_id": None,
        "org_code": "bh_ly",
        "unit_name": "Liuyang County",
        "kind": "deputy",
        "title": "Deputy head A",
        "rank": "county deputy",
        "vacant": False,
        "holder_name": "Wang Gang",
        "cadre_id": None,
        "starts_on": holder["starts_on"],
        "ends_by": ends_by.isoformat(),
        "successors": 2,
        "best_readiness": "one_to_two_years",
    }
    vacant = rows["Deputy head B"]
    assert (vacant["vacant"], vacant["holder_name"], vacant["successors"], vacant["best_readiness"]) == (
        True,
        None,
        0,
        None,
    )
    # The posts were created today: the day before, the subtree had none.
    earlier = await selection.client.get("/posts", params={"on": (today - timedelta(days=1)).isoformat()}, headers=CITY)
    assert earlier.status_code == 200, earlier.text
    assert earlier.json() == []
    assert len((await selection.client.get("/posts", params={"limit": 1}, headers=CITY)).json()) == 1
    assert (await selection.client.get("/posts", params={"limit": 0}, headers=CITY)).status_code == 422

    workbook = await selection.client.get("/posts", params={"format": "xlsx"}, headers=CITY)
    assert workbook.status_code == 200, workbook.text
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).active
    assert sheet is not None
    header, *lines = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert header[:6] == ["post_id", "org_code", "unit_name", "kind", "title", "rank"]
    table = [dict(zip(header, line, strict=True)) for line in lines]
    assert [(r["title"], r["vacant"], r["holder_name"], r["successors"], r["best_readiness"]) for r in table] == [
        ("Deputy head A", "false", "Wang Gang", 2, "one_to_two_years"),  # the export writes truth values as text
        ("Deputy head B", "true", None, 0, None),
    ]
    text = await selection.client.get("/posts", params={"format": "csv"}, headers=CITY)
    assert text.status_code == 200
    header_line = text.text.removeprefix("\ufeff").splitlines()[0]  # a byte-order mark first, for Excel
    assert header_line.startswith("post_id,org_code,unit_name,kind,title,rank,vacant")
    # Another city's organizer sees none of these posts, nor a unit outside its subtree.
    assert (await selection.client.get("/posts", headers=OTHER_CITY)).json() == []
    assert (await selection.client.get("/posts", params={"under": "bh"}, headers=OTHER_CITY)).status_code == 404
