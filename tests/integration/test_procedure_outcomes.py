"""What a procedure's outcome does, over the real Kafka and PostgreSQL: the registry and selection services.

An entry procedure admitted becomes the registry's `CadreNominated`, an appointment procedure
the appointment in the post's team (and the registry then retires the cadre), each naming the
procedure, once however often the outcome is delivered.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, ClassVar

import pytest

from contracts import topics
from contracts.envelope import Actor, Envelope, Role, uuid7
from contracts.event import Event
from contracts.procedure import ProcedureConcluded
from contracts.selection import CadreAppointed, PostKind
from runtime import clock
from runtime.context import CommandContext
from services.registry.commands import RegistryCommands
from services.selection.commands import SelectionCommands
from tests import infra as infra_module
from tests.integration.test_procedures_api import DOC, a_post, ballot, post
from tests.integration.test_registry_api import CITY, build_tree, nominate, nomination
from tests.support import Running, caught_up, eventually, in_pool_at, read_topic, redeliver, watermarks

pytestmark = pytest.mark.dates


async def run_to_outcome(selection: Running, opening: dict[str, Any], *, outcome: int = 200) -> str:
    """Open a procedure and take it through every step to its outcome (answered `outcome`); its id."""
    await eventually(
        lambda: selection.service.pool.fetchval("SELECT count(*) FROM units WHERE code = 'bh_ly'"),
        until=lambda n: n == 1,
    )
    opened = await post(selection, "/procedures", opening, 201)
    procedure_id = str(opened["stream_id"]).removeprefix("procedure-")
    base = f"/procedures/{procedure_id}"
    await post(selection, f"{base}/recommendation", ballot(20))
    await post(
        selection,
        f"{base}/inspection",
        {"team": ["Zhao", "Qian"], "interviewed": 22, "report": DOC, "conclusion": "fit", "clean_record": DOC},
    )
    decision = {"held_on": clock.today().isoformat(), "members": 11, "present": 9, "votes_for": 8}
    await post(selection, f"{base}/decision", decision | {"votes_against": 1, "abstentions": 0, "minutes": DOC})
    await post(selection, f"{base}/notice", {"where": "the county's notice board"})
    board = (await selection.client.get("/procedures", headers=CITY)).json()
    [ends_on] = [date.fromisoformat(r["notice_ends_on"]) for r in board if r["procedure_id"] == procedure_id]
    clock.use(clock.current().at(clock.start_of(ends_on + timedelta(days=1))))
    await post(selection, f"{base}/notice/close", {})
    document = {"document_number": "Org [2026] 9", "document_date": clock.today().isoformat()}
    await post(selection, f"{base}/outcome", document, outcome)
    return procedure_id


async def redeliver_outcome(
    infra: infra_module.Infra, namespace: str, selection: Running, procedure_id: str
) -> tuple[Envelope, str, int]:
    """Send a procedure's outcome record to selection's topic again, headers and all (as a relay after a crash).

    Its envelope, topic and partition.
    """
    topic = f"{namespace}.selection.events"
    # Every event of the store goes to the topic: by the outcome's position, that many records at least.
    count = await selection.service.pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND event_type = 'ProcedureConcluded'",
        f"procedure-{procedure_id}",
    )
    [record] = [
        r
        for r in await read_topic(infra.kafka_bootstrap, topic, count=int(count))
        if b"ProcedureConcluded" in r.value and procedure_id.encode() in r.value
    ]
    await redeliver(infra.kafka_bootstrap, record)
    return Envelope.from_bytes(record.value), record.topic, record.partition


def candidate() -> dict[str, Any]:
    body = nomination()
    return {k: v for k, v in body.items() if k not in {"org_code", "reason", "email"}}


async def test_an_admitted_entry_nominates_the_candidate_once(
    infra: infra_module.Infra, namespace: str, registry: Running, selection: Running
) -> None:
    await build_tree(registry.client)
    person = candidate()  # before the notice moves the clock (it may cross a year)
    opening = {"kind": "entry", "org_code": "bh_ly", "candidate": person, "reserve_kind": "county deputy"}
    procedure_id = await run_to_outcome(selection, opening)
    procedure = (await selection.client.get(f"/procedures/{procedure_id}/file", headers=CITY)).json()
    cadre_id = procedure[0]["payload"]["candidate_id"]

    cadre = await eventually(
        lambda: registry.client.get(f"/cadres/{cadre_id}", headers=CITY),
        until=lambda r: r.status_code == 200,
    )
    assert (cadre.json()["status"], cadre.json()["full_name"]) == ("in_pool", "Li Wei")
    assert (cadre.json()["basis"], cadre.json()["procedure_id"]) == ("procedure", procedure_id)
    assert cadre.json()["birth_date"] == person["birth_date"]
    [nominated] = await registry.service.store.read_stream(f"cadre-{cadre_id}")
    assert nominated.envelope.payload["procedure_id"] == procedure_id
    assert nominated.envelope.payload["reason"] == "admitted by procedure (county deputy), Org [2026] 9 of " + str(
        procedure[-1]["payload"]["document_date"]
    )
    assert nominated.envelope.actor.role is Role.SYSTEM
    assert nominated.envelope.causation_id == uuid.UUID(procedure[-1]["event_id"])
    assert nominated.envelope.org_path == "cn.qs.bh.bh_ly"

    # The outcome arrives a second time: the same record re-published (as a relay re-sends after a crash) ...
    envelope, topic, partition = await redeliver_outcome(infra, namespace, selection, procedure_id)
    await caught_up(registry.service.pool, "registry.appointment-reaction", selection.service.pool, topic)
    marks = await watermarks(registry.service.pool, "registry.appointment-reaction", topic)
    assert marks[partition] >= envelope.position
    # ... and handed to the reaction's command again, past the watermark: the nomination stands alone.
    commands = registry.service.part(RegistryCommands)
    assert await commands.admit(envelope, ProcedureConcluded.model_validate(envelope.payload)) is None
    nominations = await registry.service.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'CadreNominated' AND cadre_id = $1", uuid.UUID(cadre_id)
    )
    assert nominations == 1
    dead = await registry.service.pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", f"cadre-{cadre_id}")
    assert dead == 1
    assert await registry.service.store.verify_chain() is None


async def test_an_appointment_procedure_appoints_to_the_post_once_and_the_pool_lets_the_cadre_go(
    infra: infra_module.Infra, namespace: str, registry: Running, selection: Running
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry, seen_by=[selection])
    direct = (await registry.client.get(f"/cadres/{cadre_id}", headers=CITY)).json()
    assert (direct["basis"], direct["procedure_id"]) == ("without_procedure", None)
    post_id = await a_post(selection)
    # A motion for a post that is not one of the team's is refused when the procedure opens, with the reason.
    stray = {"post_id": str(uuid.uuid4()), "post_title": "deputy county head", "reason": "a vacancy"}
    refused = await selection.client.post(
        "/procedures",
        json={"kind": "appointment", "org_code": "bh_ly", "candidate_id": cadre_id, "motion": stray},
        headers=CITY,
    )
    assert refused.status_code == 404, refused.text
    assert "is not a post of bh_ly's team" in refused.json()["detail"]
    elsewhere = {
        "kind": "appointment",
        "org_code": "bh",
        "candidate_id": cadre_id,
        "motion": {**stray, "post_id": post_id},
    }
    mismatched = await selection.client.post("/procedures", json=elsewhere, headers=CITY)
    assert mismatched.status_code == 422, mismatched.text  # a post of another unit's team

    motion = {"post_id": post_id, "post_title": "deputy county head", "reason": "a vacancy"}
    opening = {"kind": "appointment", "org_code": "bh_ly", "candidate_id": cadre_id, "motion": motion}
    procedure_id = await run_to_outcome(selection, opening)

    team = await eventually(
        lambda: selection.client.get("/teams/bh_ly", headers=CITY),
        until=lambda r: any((p["holder"] or {}).get("cadre_id") == cadre_id for p in r.json()["posts"]),
    )
    [held] = [p for p in team.json()["posts"] if p["post_id"] == post_id]
    assert held["holder"]["from_pool"] is True
    assert (held["holder"]["basis"], held["holder"]["procedure_id"]) == ("procedure", procedure_id)
    [appointed] = [
        r for r in await selection.service.store.read_stream("team-bh_ly") if r.envelope.event_type == "CadreAppointed"
    ]
    assert appointed.envelope.payload["procedure_id"] == procedure_id
    assert appointed.envelope.payload["document_number"] == "Org [2026] 9"
    assert appointed.envelope.actor.role is Role.SYSTEM
    cadre = await eventually(
        lambda: registry.client.get(f"/cadres/{cadre_id}", headers=CITY),
        until=lambda r: r.json().get("status") == "retired",
    )
    assert cadre.json()["retired_reason"] == "appointed"

    # The outcome delivered again (the same record re-published): behind the reaction's watermark ...
    redelivered, topic, partition = await redeliver_outcome(infra, namespace, selection, procedure_id)
    await caught_up(selection.service.pool, "selection.procedure-outcome", selection.service.pool, topic)
    marks = await watermarks(selection.service.pool, "selection.procedure-outcome", topic)
    assert marks[partition] >= redelivered.position
    assert await selection.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'CadreAppointed'") == 1
    # ... and handled again past it: the team's stream already names this procedure, nothing is appended.
    [concluded] = [
        r.envelope
        for r in await selection.service.store.read_stream(f"procedure-{procedure_id}")
        if r.envelope.event_type == "ProcedureConcluded"
    ]
    commands = selection.service.part(SelectionCommands)
    assert await commands.appoint_by_procedure(concluded, ProcedureConcluded.model_validate(concluded.payload)) is None
    appointments = await selection.service.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'CadreAppointed'"
    )
    assert appointments == 1
    assert await selection.service.store.verify_chain() is None


async def test_an_admitted_candidate_the_entry_rules_refuse_goes_to_the_dead_letter_topic_with_the_reason(
    infra: infra_module.Infra, namespace: str, registry: Running, selection: Running
) -> None:
    await build_tree(registry.client)
    person = candidate() | {"education": "secondary"}  # below the registry's lowest education
    opening = {"kind": "entry", "org_code": "bh_ly", "candidate": person, "reserve_kind": "county deputy"}
    procedure_id = await run_to_outcome(selection, opening)
    topic = topics.dlq(f"{namespace}.selection.events")
    [dead] = await read_topic(infra.kafka_bootstrap, topic, count=1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq-consumer"] == "registry.appointment-reaction"
    assert f"the candidate of procedure {procedure_id} does not meet the entry rules" in headers["dlq-error"]
    assert Envelope.from_bytes(dead.value).event_type == "ProcedureConcluded"
    file = (await selection.client.get(f"/procedures/{procedure_id}/file", headers=CITY)).json()
    cadre_id = file[0]["payload"]["candidate_id"]
    assert (await registry.client.get(f"/cadres/{cadre_id}", headers=CITY)).status_code == 404
    assert await registry.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'CadreNominated'") == 0


class NominatedBeforeProcedures(Event):
    """`CadreNominated` v2 exactly as recorded before procedures existed (no `procedure_id`, no `imported`)."""

    event_type: ClassVar[str] = "CadreNominated"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[str] = topics.REGISTRY

    cadre_id: uuid.UUID
    org_code: str
    full_name: str
    gender: str
    birth_date: date
    birth_date_precision: str = "day"
    education: str
    current_position: str
    years_of_service: int
    grassroots_months: int
    reason: str
    user_id: str | None = None
    email: str | None = None
    language: str = "zh"


class AppointedBeforeProcedures(CadreAppointed):
    """`CadreAppointed` v1 as recorded before procedures existed: its payload has no `procedure_id`."""

    event_type: ClassVar[str] = "CadreAppointed"  # a subclass names its own events otherwise (contracts.event)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in super().model_dump(**kwargs).items() if k != "procedure_id"}


async def test_old_nominations_and_appointments_still_read_and_say_so(registry: Running, selection: Running) -> None:
    await build_tree(registry.client)
    path = "cn.qs.bh.bh_ly"
    ctx = CommandContext(actor=Actor(user="bh-organizer", org_path=path, role=Role.ORGANIZER), correlation_id=uuid7())
    cadre_id = uuid7()
    body = {k: v for k, v in nomination().items() if k != "email"}
    old = NominatedBeforeProcedures(cadre_id=cadre_id, **body)
    [recorded] = await registry.service.store.append(
        f"cadre-{cadre_id}", 0, [old], ctx=ctx, org_path=path, cadre_id=cadre_id
    )
    assert set(recorded.payload) == set(body) | {"cadre_id", "birth_date_precision", "user_id", "email", "language"}
    cadre = (await registry.client.get(f"/cadres/{cadre_id}", headers=CITY)).json()
    assert (cadre["status"], cadre["basis"], cadre["procedure_id"]) == ("in_pool", "without_procedure", None)
    await in_pool_at(selection, cadre_id)

    # An appointment recorded before procedures: the team shows it, says so, and the registry still follows it.
    post_id = uuid.UUID(await a_post(selection))
    team = await selection.service.store.read_stream("team-bh_ly")
    appointed = AppointedBeforeProcedures(
        post_id=post_id,
        cadre_id=cadre_id,
        full_name="Li Wei",
        org_code="bh_ly",
        kind=PostKind.DEPUTY,
        post_title="deputy county head",
        appointed_on=clock.today(),
        document_number="BH-2025-3",
    )
    [stored] = await selection.service.store.append("team-bh_ly", len(team), [appointed], ctx=ctx, org_path=path)
    assert "procedure_id" not in stored.payload
    view = (await selection.client.get("/teams/bh_ly", headers=CITY)).json()
    [held] = [p["holder"] for p in view["posts"] if p["post_id"] == str(post_id)]
    assert (held["cadre_id"], held["from_pool"], held["basis"], held["procedure_id"]) == (
        str(cadre_id),
        True,
        "without_procedure",
        None,
    )
    retired = await eventually(
        lambda: registry.client.get(f"/cadres/{cadre_id}", headers=CITY),
        until=lambda r: r.json().get("status") == "retired",
    )
    assert (retired.json()["retired_reason"], retired.json()["basis"]) == ("appointed", "without_procedure")
