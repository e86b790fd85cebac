"""Training against the registry over the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.envelope import Envelope, Role
from runtime import clock
from services.training.commands import TrainingCommands
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, OTHER_CITY, PROVINCE, build_tree, nominate
from tests.support import Running, auth, caught_up, eventually, in_pool_at, read_topic, redeliver, watermarks

pytestmark = pytest.mark.dates


visible_in_training = in_pool_at
"""Wait until training holds the cadre as in the pool (the name other modules import)."""


async def schedule(training: Running, *, capacity: int = 30, starts_in: int = 10, organizer: str = "qs") -> str:
    body = {
        "title": "Spring class for young cadres",
        "organizer_code": organizer,
        "starts_on": (clock.today() + timedelta(days=starts_in)).isoformat(),
        "ends_on": (clock.today() + timedelta(days=starts_in + 14)).isoformat(),
        "hours": 80,
        "capacity": capacity,
        "curriculum": ["Party theory", "Rural revitalization", "Emergency management"],
        "location": "Provincial party school",
    }
    response = await training.client.post("/programs", json=body, headers=PROVINCE)
    assert response.status_code == 201, response.text
    return str(response.json()["stream_id"]).removeprefix("program-")


async def completed_class(training: Running, cadre_id: str, hours: int, score: int | None = None) -> date:
    """Enrol the cadre in a class that starts today and record it completed today (that day)."""
    enrolment = f"/programs/{await schedule(training, starts_in=0)}/enrolments"
    enrolled = await training.client.post(enrolment, json={"cadre_id": cadre_id}, headers=CITY)
    assert enrolled.status_code == 201, enrolled.text
    today = clock.today()
    body = {"completed_on": today.isoformat(), "hours": hours} | ({} if score is None else {"score": score})
    done = await training.client.post(f"{enrolment}/{cadre_id}/completion", json=body, headers=PROVINCE)
    assert done.status_code == 200, done.text
    return today


def posting(kind: str = "downward", start: int = 1, end: int = 180, host: str = "bh_ly") -> dict[str, Any]:
    return {
        "kind": kind,
        "host_org_code": host,
        "position": "Deputy township head",
        "starts_on": (clock.today() + timedelta(days=start)).isoformat(),
        "planned_end_on": (clock.today() + timedelta(days=end)).isoformat(),
        "purpose": "Get to know the grass roots",
    }


async def committed_offset(infra: Infra, group: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = offsets.get(TopicPartition(topic, partition))
    return int(found.offset) if found is not None else -1


async def training_events(training: Running) -> int:
    return int(await training.service.pool.fetchval("SELECT count(*) FROM events"))


async def test_enrol_and_post_through_the_api(
    registry: Running, training: Running, infra: Infra, namespace: str
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, grassroots_months=0)
    await visible_in_training(training, cadre_id)
    program_id = await schedule(training)

    enrolled = await training.client.post(
        f"/programs/{program_id}/enrolments", json={"cadre_id": cadre_id}, headers=CITY
    )
    assert enrolled.status_code == 201, enrolled.text
    advice = (await training.client.get(f"/cadres/{cadre_id}/recommendation", headers=CITY)).json()
    assert advice["kind"] == "downward"
    assert (await training.client.get("/cadres-without-grassroots", headers=CITY)).json()[0]["cadre_id"] == cadre_id
    posted = await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(), headers=CITY)
    assert posted.status_code == 201, posted.text

    records = await read_topic(infra.kafka_bootstrap, f"{namespace}.training.events", count=3)
    envelopes = [Envelope.from_bytes(r.value) for r in records]
    assert sorted(e.event_type for e in envelopes) == [
        "PostingAssigned",
        "TrainingEnrolled",
        "TrainingProgramScheduled",
    ]
    for record, envelope in zip(records, envelopes, strict=True):
        if envelope.event_type != "TrainingProgramScheduled":
            assert record.key == cadre_id.encode()
            assert envelope.org_path == "cn.qs.bh.bh_ly"
    assert await training.service.store.verify_chain() is None

    on_posting = (clock.today() + timedelta(days=5)).isoformat()
    current = (await training.client.get("/postings/current", params={"on": on_posting}, headers=CITY)).json()
    assert [p["cadre_id"] for p in current] == [cadre_id]
    assert current[0]["full_name"] == "Li Wei"
    assert (await training.client.get("/postings/current", headers=OTHER_CITY)).json() == []
    free = (await training.client.get("/programs", params={"with_free_places": "true"}, headers=CITY)).json()
    assert free[0]["free_places"] == 29


async def test_retirement_closes_the_open_posting_and_enrolments_once(
    registry: Running, training: Running, infra: Infra, namespace: str
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    await visible_in_training(training, cadre_id)
    programs = [await schedule(training), await schedule(training, starts_in=30)]
    for program_id in programs:
        response = await training.client.post(
            f"/programs/{program_id}/enrolments", json={"cadre_id": cadre_id}, headers=CITY
        )
        assert response.status_code == 201
    assert (
        await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(start=-10), headers=CITY)
    ).status_code == 201

    retired = await registry.client.post(
        f"/cadres/{cadre_id}/retirement", json={"reason": "withdrew", "note": "moved away"}, headers=CITY
    )
    assert retired.status_code == 200

    async def closed() -> tuple[int, int]:
        enrolments = await training.service.pool.fetchval(
            "SELECT count(*) FROM enrolments WHERE cadre_id = $1 AND status = 'withdrawn' AND reason = 'cadre_retired'",
            uuid.UUID(cadre_id),
        )
        postings = await training.service.pool.fetchval(
            "SELECT count(*) FROM postings WHERE cadre_id = $1 AND outcome = 'cut_short'", uuid.UUID(cadre_id)
        )
        return int(enrolments), int(postings)

    assert await eventually(closed, until=lambda counts: counts == (2, 1)) == (2, 1)
    after_first = await training_events(training)

    # The retirement arrives a second time: the same record re-published, and the reaction run again.
    [record] = [
        r
        for r in await read_topic(infra.kafka_bootstrap, f"{namespace}.registry.events", count=7)
        if r.key == cadre_id.encode() and b"CadreRetired" in r.value
    ]
    await redeliver(infra.kafka_bootstrap, record)
    # The repeat sits behind its partition's watermark: the reaction sees it as handled.
    await caught_up(training.service.pool, "training.retirement-reaction", registry.service.pool, record.topic)
    marks = await watermarks(training.service.pool, "training.retirement-reaction", record.topic)
    assert marks[record.partition] >= Envelope.from_bytes(record.value).position
    envelope = Envelope.from_bytes(record.value)
    from contracts.registry import CadreRetired  # noqa: PLC0415

    event = CadreRetired.model_validate(envelope.payload)
    assert await training.service.part(TrainingCommands).close_for_retired(envelope, event) == 0
    assert await training_events(training) == after_first
    caused = await training.service.pool.fetch(
        "SELECT body FROM events WHERE event_type IN ('EnrolmentWithdrawn', 'PostingCompleted')"
    )
    for row in caused:
        closing = Envelope.from_bytes(row["body"])
        assert closing.causation_id == envelope.event_id
        assert closing.actor.role is Role.SYSTEM

    refused = await training.client.post(
        f"/programs/{programs[0]}/enrolments", json={"cadre_id": cadre_id}, headers=CITY
    )
    assert refused.status_code == 422


async def test_postings_with_bad_dates_are_refused_and_change_nothing(registry: Running, training: Running) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    await visible_in_training(training, cadre_id)
    assert (
        await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(start=1, end=100), headers=CITY)
    ).status_code == 201
    before = await training_events(training)

    for bad in (
        posting(start=50, end=20),  # ends before it starts
        posting(kind="urgent_task", start=120, end=200),  # one posting at a time
        posting(host="nowhere"),
        {**posting(), "kind": "sideways"},
    ):
        response = await training.client.post(f"/cadres/{cadre_id}/postings", json=bad, headers=CITY)
        assert response.status_code in {404, 422}, bad
        assert response.headers["content-type"] == "application/problem+json"
    elsewhere = await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(), headers=OTHER_CITY)
    assert elsewhere.status_code == 404
    viewer = await training.client.post(
        f"/cadres/{cadre_id}/postings", json=posting(), headers=auth("v", "cn.qs", Role.VIEWER)
    )
    assert viewer.status_code == 403
    assert await training_events(training) == before

    [current] = (await training.client.get(f"/cadres/{cadre_id}/postings", headers=CITY)).json()
    ended = await training.client.post(
        f"/cadres/{cadre_id}/postings/{current['posting_id']}/end",
        json={"ended_on": (clock.today() + timedelta(days=90)).isoformat(), "outcome": "completed", "summary": "good"},
        headers=CITY,
    )
    assert ended.status_code == 200
    overlapping = await training.client.post(
        f"/cadres/{cadre_id}/postings", json=posting(start=80, end=200), headers=CITY
    )
    assert overlapping.status_code == 422
    assert "overlaps" in overlapping.json()["detail"]
    following = await training.client.post(
        f"/cadres/{cadre_id}/postings", json=posting(kind="urgent_task", start=91, end=200), headers=CITY
    )
    assert following.status_code == 201


async def test_a_full_programme_refuses_one_more_also_under_concurrent_requests(
    registry: Running, training: Running
) -> None:
    await build_tree(registry.client)
    cadres = [await nominate(registry, full_name=f"Cadre {n}") for n in range(5)]
    for cadre_id in cadres:
        await visible_in_training(training, cadre_id)
    program_id = await schedule(training, capacity=2)
    before = await training_events(training)

    async def enrol(cadre_id: str) -> httpx.Response:
        return await training.client.post(
            f"/programs/{program_id}/enrolments", json={"cadre_id": cadre_id}, headers=CITY
        )

    answers = await asyncio.gather(*(enrol(c) for c in cadres))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 201, 422, 422, 422]
    assert all("full" in a.json()["detail"] for a in answers if a.status_code == 422)
    assert await training_events(training) == before + 2
    taken = await training.service.pool.fetchval(
        "SELECT taken FROM programs WHERE program_id = $1", uuid.UUID(program_id)
    )
    assert taken == 2
    stale = await training.client.post(
        f"/programs/{program_id}/enrolments", json={"cadre_id": cadres[0]}, headers={**CITY, "If-Match": '"1"'}
    )
    assert stale.status_code == 409


async def test_training_record_counts_hours_by_kind_and_year(registry: Running, training: Running) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    await visible_in_training(training, cadre_id)
    today = await completed_class(training, cadre_id, hours=76, score=91)
    for studied_on, hours in ((today, 6), (date(today.year - 1, 5, 1), 10)):
        logged = await training.client.post(
            f"/cadres/{cadre_id}/self-study",
            json={
                "kind": "reading",
                "topic": "Rural governance",
                "studied_on": studied_on.isoformat(),
                "hours": hours,
                "evidence": "reading notes",
            },
            headers=CITY,
        )
        assert logged.status_code == 201
    record = (await training.client.get(f"/cadres/{cadre_id}/training-record", headers=CITY)).json()
    assert record["hours_by_year"] == [
        {"year": today.year - 1, "organized": 0, "self_study": 10},
        {"year": today.year, "organized": 76, "self_study": 6},
    ]
    assert record["programs"][0]["status"] == "completed"
    assert (await training.client.get(f"/cadres/{cadre_id}/training-record", headers=OTHER_CITY)).status_code == 404
