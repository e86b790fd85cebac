"""A cadre's own grant (ADR 0028): self-study reported, counted once confirmed, and the cadre kept to themselves."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest

from contracts.envelope import Envelope, Role
from runtime import clock
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nominate
from tests.support import Running, auth, caught_up, eventually, in_pool_at, read_topic, redeliver

pytestmark = pytest.mark.dates

UNIT_PATH = "cn.qs.bh.bh_ly"


def as_cadre(cadre_id: str) -> Any:
    """The headers of the cadre's own grant: the actor's user is the cadre's id, at the cadre's unit."""
    return auth(cadre_id, UNIT_PATH, Role.CADRE)


def report(hours: int = 8, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "entry_id": str(uuid.uuid4()),
        "kind": "online_course",
        "topic": "Rural revitalization policy",
        "studied_on": (clock.today() - timedelta(days=1)).isoformat(),
        "hours": hours,
        "evidence_name": "certificate.pdf",
        "evidence_sha256": hashlib.sha256(b"the certificate").hexdigest(),
    }
    return body | overrides


async def this_year(training: Running, cadre_id: str, headers: Any) -> int:
    record = (await training.client.get(f"/cadres/{cadre_id}/training-record", headers=headers)).json()
    year = clock.today().year
    return sum(h["self_study"] for h in record["hours_by_year"] if h["year"] == year)


async def test_reported_self_study_counts_once_confirmed_and_once_only(
    registry: Running, training: Running, assessment: Running, infra: Infra, namespace: str
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    await in_pool_at(training, cadre_id)
    me = as_cadre(cadre_id)
    yesterday = clock.today() - timedelta(days=1)  # a day of last year on 1 January: then it counts there
    year_of = yesterday.year

    first, second = report(), report(hours=3, topic="Copied notes")
    entry_id, other_id = first["entry_id"], second["entry_id"]
    for body in (first, second):
        reported = await training.client.post(f"/cadres/{cadre_id}/self-study-reports", json=body, headers=me)
        assert reported.status_code == 201, reported.text
    repeated = await training.client.post(f"/cadres/{cadre_id}/self-study-reports", json=first, headers=me)
    assert repeated.status_code == 409

    # Reported, not confirmed: the cadre sees it waiting, and it counts toward nothing.
    record = (await training.client.get(f"/cadres/{cadre_id}/training-record", headers=me)).json()
    assert sorted(r["status"] for r in record["reports"]) == ["reported", "reported"]
    assert record["hours_by_year"] == []
    waiting = (await training.client.get("/self-study-reports", headers=CITY)).json()
    assert {w["entry_id"] for w in waiting} >= {entry_id}
    assert waiting[0]["full_name"] == "Li Wei"
    assert (await training.client.get("/self-study-reports", headers=OTHER_CITY)).json() == []

    confirmed = await training.client.post(
        f"/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", headers=CITY
    )
    assert confirmed.status_code == 200, confirmed.text
    again = await training.client.post(f"/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", headers=CITY)
    assert again.status_code == 409
    no_reason = await training.client.post(
        f"/cadres/{cadre_id}/self-study-reports/{other_id}/rejection", json={"reason": ""}, headers=CITY
    )
    assert no_reason.status_code == 422
    refused = await training.client.post(
        f"/cadres/{cadre_id}/self-study-reports/{other_id}/rejection",
        json={"reason": "the certificate is of another course"},
        headers=CITY,
    )
    assert refused.status_code == 200, refused.text

    record = (await training.client.get(f"/cadres/{cadre_id}/training-record", headers=me)).json()
    assert [h for h in record["hours_by_year"] if h["year"] == year_of] == [
        {"year": year_of, "organized": 0, "self_study": 8}
    ]
    statuses = {r["entry_id"]: (r["status"], r["reason"]) for r in record["reports"]}
    assert statuses == {entry_id: ("confirmed", None), other_id: ("rejected", "the certificate is of another course")}
    assert (await training.client.get("/self-study-reports", headers=CITY)).json() == []

    # Assessment counts the confirmed hours once, and once only when the confirmation arrives again.
    async def assessment_hours() -> int:
        value = await assessment.service.pool.fetchval(
            "SELECT self_study FROM training_hours WHERE cadre_id = $1 AND year = $2", uuid.UUID(cadre_id), year_of
        )
        return int(value or 0)

    assert await eventually(assessment_hours, until=lambda hours: hours == 8) == 8
    topic = f"{namespace}.training.events"
    records = await read_topic(infra.kafka_bootstrap, topic, count=4)
    [confirmation] = [r for r in records if b"SelfStudyConfirmed" in r.value]
    assert Envelope.from_bytes(confirmation.value).actor.user == "bh-organizer"
    await redeliver(infra.kafka_bootstrap, confirmation)
    await caught_up(assessment.service.pool, "assessment.training", training.service.pool, topic)
    assert await assessment_hours() == 8
    assert await training.service.store.verify_chain() is None


async def test_a_cadre_reads_only_themselves_and_never_confirms(registry: Running, training: Running) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    other_id = await nominate(registry, full_name="Zhou Min")
    await in_pool_at(training, cadre_id)
    await in_pool_at(training, other_id)
    me = as_cadre(cadre_id)

    # Their own record: yes. Another cadre, even of the same unit: not found, as if there were none.
    assert (await registry.client.get(f"/cadres/{cadre_id}", headers=me)).json()["full_name"] == "Li Wei"
    assert (await registry.client.get(f"/cadres/{other_id}", headers=me)).status_code == 404
    for path in ("training-record", "postings", "recommendation"):
        assert (await training.client.get(f"/cadres/{cadre_id}/{path}", headers=me)).status_code == 200
        assert (await training.client.get(f"/cadres/{other_id}/{path}", headers=me)).status_code == 404
    assert (await registry.client.get("/access/me", headers=me)).json()["role"] == "cadre"
    # Everything else is closed to a cadre's grant: the unit's pool, lists, grants, other commands.
    for client, path in (
        (registry.client, "/cadres"),
        (registry.client, "/access"),
        (registry.client, "/structure"),
        (training.client, "/behind-quota"),
        (training.client, "/self-study-reports"),
        (training.client, "/programs"),
    ):
        assert (await client.get(path, headers=me)).status_code == 403, path
    assert (
        await training.client.post(f"/cadres/{other_id}/self-study-reports", json=report(), headers=me)
    ).status_code == 404

    body = report()
    entry_id = body["entry_id"]
    reported = await training.client.post(f"/cadres/{cadre_id}/self-study-reports", json=body, headers=me)
    assert reported.status_code == 201
    before = int(await training.service.pool.fetchval("SELECT count(*) FROM events"))
    own = await training.client.post(f"/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", headers=me)
    assert own.status_code == 403
    logged = await training.client.post(
        f"/cadres/{cadre_id}/self-study",
        json={"kind": "reading", "topic": "x", "studied_on": clock.today().isoformat(), "hours": 60, "evidence": "x"},
        headers=me,
    )
    assert logged.status_code == 403
    # An organizer reports nothing in the cadre's name (they log what they saw), nor decides outside their subtree.
    assert (
        await training.client.post(f"/cadres/{cadre_id}/self-study-reports", json=report(), headers=CITY)
    ).status_code == 403
    elsewhere = await training.client.post(
        f"/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", headers=OTHER_CITY
    )
    assert elsewhere.status_code == 404
    # Bad input: a clear 422, nothing appended.
    for bad in (
        report(evidence_sha256="not-a-hash"),
        report(hours=0),
        report(studied_on=(clock.today() + timedelta(days=1)).isoformat()),
        report(evidence_name=""),
    ):
        assert (
            await training.client.post(f"/cadres/{cadre_id}/self-study-reports", json=bad, headers=me)
        ).status_code == 422
    assert int(await training.service.pool.fetchval("SELECT count(*) FROM events")) == before
    assert await this_year(training, cadre_id, me) == 0


async def test_a_cadres_own_grant_names_a_cadre_at_their_unit(registry: Running) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    subject = str(uuid.uuid4())

    def grant(org_code: str) -> dict[str, Any]:
        return {"subject": subject, "name": "Li Wei", "org_code": org_code, "role": "cadre"}

    assert (await registry.client.put("/access/li.wei", json=grant("bh_ly"), headers=CITY)).status_code == 422
    assert (await registry.client.put(f"/access/{cadre_id}", json=grant("bh"), headers=CITY)).status_code == 422
    assert (
        await registry.client.put(f"/access/{cadre_id}", json=grant("bh_ly"), headers=OTHER_CITY)
    ).status_code == 404
    granted = await registry.client.put(f"/access/{cadre_id}", json=grant("bh_ly"), headers=CITY)
    assert granted.status_code == 200, granted.text
