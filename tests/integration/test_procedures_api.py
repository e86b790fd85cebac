"""The procedures over HTTP in the selection service, beside the real registry, over the real Kafka and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from runtime import clock
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nominate
from tests.support import Running

pytestmark = pytest.mark.dates
DOC = {"title": "report", "sha256": "c" * 64}


async def a_post(selection: Running, title: str = "deputy county head") -> str:
    """A deputy's post in Liuyang County's team, its quota one more."""
    quota = await selection.client.post(
        "/teams/bh_ly/quotas", json={"kind": "deputy", "approved": 2, "document_number": "BH-2026-1"}, headers=CITY
    )
    assert quota.status_code == 200, quota.text
    created = await selection.client.post(
        "/teams/bh_ly/posts", json={"kind": "deputy", "title": title, "rank": "county deputy"}, headers=CITY
    )
    assert created.status_code == 201, created.text
    return str(await selection.service.pool.fetchval("SELECT post_id FROM posts WHERE title = $1", title))


async def post(selection: Running, path: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await selection.client.post(path, json=body, headers=CITY)
    assert response.status_code == status, response.text
    return response.json()


def ballot(votes: int) -> dict[str, Any]:
    return {
        "meeting": {
            "held_on": clock.today().isoformat(),
            "eligible": 30,
            "present": 28,
            "ballots_cast": 28,
            "valid_ballots": 27,
            "invalid_ballots": 1,
            "tally": [{"candidate_name": "Li Wei", "votes": votes}],
        },
        "talks": {"interviewed": 15, "in_favour": 12},
        "documents": [DOC],
    }


async def test_a_whole_appointment_through_the_api_with_its_board_file_and_check(
    registry: Running, selection: Running
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, seen_by=[selection])
    motion = {"post_id": await a_post(selection), "post_title": "deputy county head", "reason": "a vacancy"}
    for incomplete in ({"kind": "entry", "org_code": "bh_ly"}, {"kind": "appointment", "org_code": "bh_ly"}):
        refused = await selection.client.post("/procedures", json=incomplete, headers=CITY)
        assert refused.status_code == 422, refused.text  # what each kind needs is in the schema
        assert {e["loc"][-1] for e in refused.json()["errors"]} in (
            {"candidate", "reserve_kind"},
            {"candidate_id", "motion"},
        )
    opened = await post(
        selection,
        "/procedures",
        {"kind": "appointment", "org_code": "bh_ly", "candidate_id": cadre_id, "motion": motion},
        201,
    )
    base = f"/procedures/{opened['stream_id'].removeprefix('procedure-')}"

    out_of_order = await selection.client.post(f"{base}/notice", json={}, headers=CITY)
    assert out_of_order.status_code == 409
    assert "out of order" in out_of_order.json()["detail"]
    bad_tally = await selection.client.post(f"{base}/recommendation", json=ballot(28), headers=CITY)
    assert bad_tally.status_code == 422
    assert "does not add up" in bad_tally.json()["detail"]

    await post(selection, f"{base}/recommendation", ballot(20))
    await post(
        selection,
        f"{base}/inspection",
        {"team": ["Zhao", "Qian"], "interviewed": 22, "report": DOC, "conclusion": "fit", "clean_record": DOC},
    )
    decision = {"held_on": clock.today().isoformat(), "members": 11, "present": 7, "votes_for": 7}
    no_quorum = await selection.client.post(
        f"{base}/decision", json={**decision, "votes_against": 0, "abstentions": 0, "minutes": DOC}, headers=CITY
    )
    assert no_quorum.status_code == 422
    assert "quorum not met" in no_quorum.json()["detail"]
    decision |= {"present": 9, "votes_for": 8, "votes_against": 1, "abstentions": 0, "minutes": DOC}
    await post(selection, f"{base}/decision", decision)
    await post(selection, f"{base}/notice", {"where": "the county's notice board"})
    early = await selection.client.post(f"{base}/notice/close", headers=CITY)
    assert early.status_code == 422
    assert "close early" in early.json()["detail"]

    board = await selection.client.get("/procedures", headers=CITY)
    assert board.status_code == 200
    (row,) = board.json()
    assert (row["step"], row["candidate_name"], row["post_title"]) == ("notice", "Li Wei", "deputy county head")
    assert row["due"][0]["kind"] == "notice_ends"
    ends_on = row["notice_ends_on"]
    assert (await selection.client.get("/procedures", headers=OTHER_CITY)).json() == []

    clock.use(clock.current().at(clock.start_of(date.fromisoformat(ends_on) + timedelta(days=1))))
    await post(selection, f"{base}/notice/close", {})
    await post(
        selection, f"{base}/outcome", {"document_number": "Org [2026] 9", "document_date": clock.today().isoformat()}
    )

    finished = await selection.client.get("/procedures", params={"finished": "true"}, headers=CITY)
    assert [r["step"] for r in finished.json()] == ["concluded"]
    verified = await selection.client.get(f"{base}/verify", headers=CITY)
    assert verified.json() | {"procedure_id": None} == {"procedure_id": None, "events": 7, "ok": True, "problems": []}
    page = await selection.client.get(f"{base}/file", params={"format": "html", "lang": "en"}, headers=CITY)
    assert page.status_code == 200
    assert "Li Wei 20" in page.text
    assert "none altered" in page.text
    events = (await selection.client.get(f"{base}/file", headers=CITY)).json()
    assert [e["event_type"] for e in events][-1] == "ProcedureConcluded"
    assert all(e["hash"] in page.text for e in events)
    hidden = await selection.client.get(f"{base}/verify", headers=OTHER_CITY)
    assert hidden.status_code == 404
