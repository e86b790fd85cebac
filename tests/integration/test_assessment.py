"""Assessment across three services over the real Kafka and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from contracts.envelope import Envelope, Role
from runtime import clock
from runtime.auth import Permission, issue_token
from runtime.settings import DEV_AUTH_SECRET
from services.assessment.app import AssessmentSettings
from services.assessment.app import create_app as assessment_app
from tests.infra import Infra
from tests.integration import test_registry_api as registry_api
from tests.integration.test_registry_api import CITY, OTHER_CITY, PROVINCE, build_tree
from tests.integration.test_training import completed_class, posting
from tests.support import Launch, Running, auth, eventually, in_pool_at, read_topic

pytestmark = pytest.mark.dates
SCORES = {"political_integrity": 80, "ability": 72, "diligence": 85, "performance": 70, "probity": 90}


async def nominate(registry: Running, assessment: Running, **overrides: Any) -> str:
    headers = dict(CITY)
    if "days_ago" in overrides:
        # Entered after the fact, beyond the backdating window: a late entry, with its permission and reason.
        moment = clock.now() - timedelta(days=overrides.pop("days_ago"))
        token = issue_token(DEV_AUTH_SECRET, CITY.actor, permissions=[Permission.LATE_ENTRY])
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Occurred-At": moment.isoformat(),
            "X-Late-Entry-Reason": "entered from the paper file",
        }
    return await registry_api.nominate(registry, headers, seen_by=[assessment], **overrides)


async def open_cycles(assessment: Running, count: int = 2) -> list[str]:
    cycles = []
    for n in range(count):
        starts = clock.today() - timedelta(days=365 * (count - n))
        response = await assessment.client.post(
            "/cycles",
            json={
                "org_code": "qs",
                "period": "annual",
                "name": f"Annual assessment {starts.year}",
                "starts_on": starts.isoformat(),
                "ends_on": (starts + timedelta(days=60)).isoformat(),
            },
            headers=PROVINCE,
        )
        assert response.status_code == 201, response.text
        cycles.append(str(response.json()["stream_id"]).removeprefix("cycle-"))
    return cycles


async def evaluate(assessment: Running, cadre_id: str, cycle_id: str, grade: str, **extra: Any) -> Any:
    body = {"cycle_id": cycle_id, "grade": grade, "scores": SCORES, "evaluator_name": "Wang Fang", **extra}
    return await assessment.client.post(f"/cadres/{cadre_id}/evaluations", json=body, headers=CITY)


async def file(assessment: Running, cadre_id: str) -> Any:
    response = await assessment.client.get(f"/cadres/{cadre_id}/file", headers=CITY)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_full_loop_across_three_services(
    registry: Running, training: Running, assessment: Running, infra: Infra, namespace: str
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, assessment, grassroots_months=0)
    await in_pool_at(training, cadre_id)

    # Train and post (training), seen by assessment through training.events.
    completed_on = await completed_class(training, cadre_id, hours=40, score=75)
    assert (
        await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(start=-30), headers=CITY)
    ).status_code == 201
    await eventually(
        lambda: assessment.service.pool.fetchval(
            "SELECT organized FROM training_hours WHERE cadre_id = $1 AND year = $2",
            uuid.UUID(cadre_id),
            completed_on.year,
        ),
        until=lambda hours: hours == 40,
    )

    # Evaluated twice "basically competent" in a row: the exit is recommended, once.
    first, second = await open_cycles(assessment)
    assert (await evaluate(assessment, cadre_id, first, "basically_competent")).status_code == 201
    assert (await file(assessment, cadre_id))["exit_recommendations"] == []
    answer = await evaluate(assessment, cadre_id, second, "basically_competent")
    assert answer.status_code == 201
    assert [e["event_type"] for e in answer.json()["events"]] == ["EvaluationRecorded", "ExitRecommended"]
    [exit_] = (await file(assessment, cadre_id))["exit_recommendations"]
    assert exit_["rule"] == "two_basically_competent_in_a_row"
    assert len(exit_["evidence"]) == 2
    assert exit_["status"] == "open"
    records = await read_topic(infra.kafka_bootstrap, f"{namespace}.assessment.events", count=5)
    recommended = [Envelope.from_bytes(r.value) for r in records if b'"ExitRecommended"' in r.value]
    assert [e.cadre_id for e in recommended] == [uuid.UUID(cadre_id)]

    # The registry's organizer decides: retired, eliminated by assessment.
    retired = await registry.client.post(
        f"/cadres/{cadre_id}/retirement",
        json={"reason": "eliminated_by_assessment", "note": "two basically competent in a row"},
        headers=CITY,
    )
    assert retired.status_code == 200
    closed = await eventually(lambda: file(assessment, cadre_id), until=lambda f: f["case"] != "open")
    assert closed["case"].startswith("closed: eliminated_by_assessment")
    assert closed["exit_recommendations"][0]["status"].startswith("closed")
    cut = await eventually(
        lambda: training.service.pool.fetchval(
            "SELECT count(*) FROM postings WHERE cadre_id = $1 AND outcome = 'cut_short'", uuid.UUID(cadre_id)
        ),
        until=lambda n: n == 1,
    )
    assert cut == 1
    # Each effect once: one exit recommendation, no new evaluation of a closed case, nothing due.
    assert await assessment.service.pool.fetchval("SELECT count(*) FROM exit_recommendations") == 1
    assert (await evaluate(assessment, cadre_id, second, "competent")).status_code == 422
    progress = (await assessment.client.get(f"/cycles/{second}/progress", headers=PROVINCE)).json()
    assert progress["due"] == 0


async def test_second_evaluation_is_refused_and_a_correction_supersedes(registry: Running, assessment: Running) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, assessment)
    [cycle] = await open_cycles(assessment, count=1)
    first = await evaluate(assessment, cadre_id, cycle, "competent")
    assert first.status_code == 201
    first_id = first.json()["events"][0]["event_id"]
    evaluation_id = (await file(assessment, cadre_id))["evaluations"][0]["evaluation_id"]
    before = await assessment.service.pool.fetchval("SELECT count(*) FROM events")

    again = await evaluate(assessment, cadre_id, cycle, "excellent")
    assert again.status_code == 409
    assert again.json()["evaluation_id"] == evaluation_id
    assert await assessment.service.pool.fetchval("SELECT count(*) FROM events") == before

    correction = await evaluate(
        assessment, cadre_id, cycle, "excellent", supersedes=evaluation_id, comments="score sheet re-checked"
    )
    assert correction.status_code == 201
    history = (await file(assessment, cadre_id))["evaluations"]
    assert [(e["grade"], e["superseded_by"] is None) for e in history] == [("competent", False), ("excellent", True)]
    assert history[1]["supersedes"] == evaluation_id
    assert first_id != correction.json()["events"][0]["event_id"]
    progress = (await assessment.client.get(f"/cycles/{cycle}/progress", headers=PROVINCE)).json()
    assert (progress["due"], progress["evaluated"]) == (1, 1)
    assert (await assessment.client.get(f"/cadres/{cadre_id}/file", headers=OTHER_CITY)).status_code == 404


async def test_each_reminder_rule_and_each_exit_rule_from_real_events(
    registry: Running, training: Running, launch: Launch
) -> None:
    # "No training hours this year" applies from the year's first day: the test holds on any day of the year.
    assessment = await launch(
        assessment_app, AssessmentSettings, "assessment", training_due_month=1, training_due_day=1
    )
    await build_tree(registry.client)
    falling = await nominate(registry, assessment, full_name="Falling Grade")
    failing = await nominate(registry, assessment, full_name="Incompetent")
    quiet = await nominate(registry, assessment, full_name="Never Talked To", days_ago=200)
    trained = await nominate(registry, assessment, full_name="Trained")
    first, second = await open_cycles(assessment)

    # Falling grade: competent, then basically competent.
    assert (await evaluate(assessment, falling, first, "competent")).status_code == 201
    fell = await evaluate(assessment, falling, second, "basically_competent")
    assert [e["event_type"] for e in fell.json()["events"]] == ["EvaluationRecorded", "ReminderIssued"]
    # Incompetent: the exit at once.
    failed = await evaluate(assessment, failing, second, "incompetent")
    assert [e["event_type"] for e in failed.json()["events"]] == ["EvaluationRecorded", "ExitRecommended"]
    assert (await file(assessment, failing))["exit_recommendations"][0]["rule"] == "incompetent_grade"
    # The organizer may decide against it, once and with a reason: the cadre leaves the exit queue.
    [queued] = (await assessment.client.get("/exit-queue", headers=CITY)).json()
    assert queued["cadre_id"] == failing
    rejection = f"/cadres/{failing}/exit-recommendations/{queued['recommendation_id']}/rejection"
    reason = {"reason": "a one-off; the unit vouches for the cadre"}
    assert (await assessment.client.post(rejection, json=reason, headers=CITY)).status_code == 200
    assert (await assessment.client.post(rejection, json=reason, headers=CITY)).status_code == 409
    unknown = f"/cadres/{failing}/exit-recommendations/{uuid.uuid4()}/rejection"
    assert (await assessment.client.post(unknown, json=reason, headers=CITY)).status_code == 404
    assert (await assessment.client.get("/exit-queue", headers=CITY)).json() == []
    assert (await file(assessment, failing))["exit_recommendations"][0]["status"] == f"rejected: {reason['reason']}"

    # The periodic rules: overdue check-in, no training hours this year (the trained one has some).
    await in_pool_at(training, trained)
    trained_on = await completed_class(training, trained, hours=20)
    await eventually(
        lambda: assessment.service.pool.fetchval(
            "SELECT count(*) FROM training_hours WHERE cadre_id = $1", uuid.UUID(trained)
        ),
        until=lambda n: n == 1,
    )
    swept = await assessment.client.post("/sweeps", headers=CITY)
    assert swept.status_code == 200, swept.text
    again = await assessment.client.post("/sweeps", headers=CITY)
    assert again.json()["reminders_raised"] == 0  # nothing twice

    def rules_of(f: Any) -> set[str]:
        return {r["rule"] for r in f["reminders"]}

    assert rules_of(await file(assessment, quiet)) == {"overdue_check_in", "no_training_hours"}
    assert rules_of(await file(assessment, falling)) == {"falling_grade", "no_training_hours"}
    # The trained one has hours in the year it trained (should the organization's year have turned since,
    # the sweep rightly finds none in the new one).
    trained_reminders = (await file(assessment, trained))["reminders"]
    assert [
        r for r in trained_reminders if clock.date_of(datetime.fromisoformat(r["issued_at"])).year == trained_on.year
    ] == []
    open_reminders = (await assessment.client.get("/reminders", headers=CITY)).json()
    assert {r["cadre_id"] for r in open_reminders} - {trained} == {falling, failing, quiet}

    # Resolving closes a reminder; the ranking and the distribution read the same record.
    reminder = next(r for r in open_reminders if r["rule"] == "falling_grade")
    resolved = await assessment.client.post(
        f"/cadres/{falling}/reminders/{reminder['reminder_id']}/resolution",
        json={"resolution": "talked it through with the mentor"},
        headers=CITY,
    )
    assert resolved.status_code == 200
    ranking = (await assessment.client.get("/ranking", headers=PROVINCE)).json()
    assert ranking[0]["cadre_id"] == falling  # the only one with a passing grade record
    assert ranking[-1]["score"] <= ranking[0]["score"]
    distribution = (
        await assessment.client.get("/grade-distribution", params={"cycle_id": second}, headers=PROVINCE)
    ).json()
    assert distribution == [
        {"level": "county", "counts": {"excellent": 0, "competent": 0, "basically_competent": 1, "incompetent": 1}}
    ]


async def test_shortfalls_show_where_the_pool_needs_new_entries(registry: Running, assessment: Running) -> None:
    root = {"Authorization": CITY["Authorization"]}
    await build_tree(registry.client)
    grown = await registry.client.post(
        "/org-units",
        json={"code": "bh_xs", "name": "Xishan County", "level": "county", "parent_code": "bh", "target_pool_size": 2},
        headers=root,
    )
    assert grown.status_code == 201
    await nominate(registry, assessment, org_code="bh_xs")
    gaps = await eventually(
        lambda: assessment.client.get("/pool-shortfalls", headers=CITY), until=lambda r: r.status_code == 200
    )
    assert [(g["code"], g["target"], g["in_pool"]) for g in gaps.json()] == [("bh_xs", 2, 1)]


async def test_a_cycle_of_a_unit_above_opens_below_with_the_readers_own_progress(
    registry: Running, assessment: Running
) -> None:
    """Every cycle a reader is offered opens: the province's cycle, read by a city, a county or a viewer,
    counts the reader's own subtree (this answered 404 below the province)."""
    await build_tree(registry.client)
    in_county = await nominate(registry, assessment)
    await nominate(registry, assessment, org_code="bh", full_name="Zhao Min")
    [cycle] = await open_cycles(assessment, count=1)
    assert (await evaluate(assessment, in_county, cycle, "competent")).status_code == 201
    county = auth("ly-organizer", "cn.qs.bh.bh_ly")
    city_viewer = auth("bh-viewer", "cn.qs.bh", role=Role.VIEWER)

    seen = {}
    for name, headers in [
        ("province", PROVINCE), ("city", CITY), ("viewer", city_viewer), ("county", county), ("other", OTHER_CITY)
    ]:  # fmt: skip
        offered = (await assessment.client.get("/cycles", headers=headers)).json()
        assert cycle in [c["cycle_id"] for c in offered], name
        response = await assessment.client.get(f"/cycles/{cycle}/progress", headers=headers)
        assert response.status_code == 200, (name, response.text)
        seen[name] = (response.json()["due"], response.json()["evaluated"], len(response.json()["not_yet_evaluated"]))
    assert seen == {
        "province": (2, 1, 1), "city": (2, 1, 1), "viewer": (2, 1, 1), "county": (1, 1, 0), "other": (0, 0, 0)
    }  # fmt: skip

    # A cycle of the city is not the other city's: it is neither offered nor opened there.
    city_cycle = await assessment.client.post(
        "/cycles",
        json={"org_code": "bh", "period": "annual", "name": "City review", "starts_on": clock.today().isoformat(),
              "ends_on": (clock.today() + timedelta(days=30)).isoformat()},
        headers=CITY,
    )  # fmt: skip
    assert city_cycle.status_code == 201, city_cycle.text
    city_cycle_id = str(city_cycle.json()["stream_id"]).removeprefix("cycle-")
    assert (await assessment.client.get(f"/cycles/{city_cycle_id}/progress", headers=county)).status_code == 200
    assert (await assessment.client.get(f"/cycles/{city_cycle_id}/progress", headers=OTHER_CITY)).status_code == 404
    assert city_cycle_id not in [
        c["cycle_id"] for c in (await assessment.client.get("/cycles", headers=OTHER_CITY)).json()
    ]
