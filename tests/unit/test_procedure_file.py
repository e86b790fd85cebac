"""The procedure's file: its check against the hashes and the chain, and its printable page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lxml import html

from contracts.envelope import GENESIS_HASH, Actor, Envelope, Role, uuid7
from contracts.event import Event
from contracts.procedure import ProcedureStopped
from runtime import clock
from services.selection import procedures as rules
from services.selection.procedure_file import check, printable
from tests.unit.test_procedure_rules import decided, inspected, opened, recommended

ACTOR = Actor(user="organizer-1", org_path="prov.county", role=Role.ORGANIZER)


def chained(events: list[Event], *, first_position: int = 10, prev: str = GENESIS_HASH) -> list[Envelope]:
    """The events as one stream's envelopes, each a link of a chain (positions one after another)."""
    stream = str(uuid7())
    envelopes = []
    for version, event in enumerate(events, start=1):
        fields: dict[str, Any] = {
            "event_id": str(uuid7()),
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "source": "selection",
            "deployment": "prov",
            "stream_id": stream,
            "stream_version": version,
            "position": first_position + version - 1,
            "cadre_id": None,
            "org_path": "prov.county",
            "occurred_at": (clock.now() + timedelta(seconds=version)).isoformat(),
            "recorded_at": (clock.now() + timedelta(seconds=version)).isoformat(),
            "actor": ACTOR.model_dump(mode="json"),
            "correlation_id": str(uuid7()),
            "causation_id": None,
            "payload": event.model_dump(mode="json"),
            "prev_hash": prev,
            "hash": "",
        }
        envelope = Envelope.model_validate(fields)
        prev = envelope.computed_hash()
        envelopes.append(envelope.model_copy(update={"hash": prev}))
    return envelopes


def links(envelopes: list[Envelope]) -> tuple[dict[int, str], tuple[int, str]]:
    successors = {e.position + 1: e.hash for e in envelopes[:-1]}
    return successors, (envelopes[-1].position, envelopes[-1].hash)


def text_of(page: bytes) -> str:
    return str(html.document_fromstring(page).xpath("string()"))


def stopped_history() -> list[Event]:
    history = decided(inspected(recommended([opened()])))
    return history + rules.stop(rules.Procedure.replay(history) or rules.Procedure(opened()), "the candidate withdrew")


def test_an_untouched_file_checks_out() -> None:
    envelopes = chained(stopped_history())
    successors, head = links(envelopes)
    result = check(envelopes, successors, head)
    assert result.ok
    assert result.events == len(envelopes) == 5


def test_an_altered_tally_breaks_its_hash() -> None:
    envelopes = chained(stopped_history())
    successors, head = links(envelopes)
    payload = dict(envelopes[1].payload)
    payload["passed"] = not payload["passed"]
    envelopes[1] = envelopes[1].model_copy(update={"payload": payload})
    result = check(envelopes, successors, head)
    assert result.problems == ("event 2 (RecommendationRecorded, position 11): its hash does not cover its contents",)


def test_an_event_rehashed_after_the_fact_is_no_link_of_the_chain() -> None:
    envelopes = chained(stopped_history())
    successors, head = links(envelopes)
    fields = envelopes[2].model_dump(mode="json")
    fields["payload"]["interviewed"] = 99
    rehashed = Envelope.model_validate(fields)
    envelopes[2] = rehashed.model_copy(update={"hash": rehashed.computed_hash()})
    result = check(envelopes, successors, head)
    assert result.problems == (
        "event 3 (InspectionRecorded, position 12): the next row of the chain names another hash",
    )


def test_a_missing_event_and_a_wrong_head_are_found() -> None:
    envelopes = chained(stopped_history())
    successors, head = links(envelopes)
    result = check([e for e in envelopes if e.stream_version != 2], successors, (head[0], "f" * 64))
    assert result.problems[0] == "event 3 (InspectionRecorded, position 12): version 3 where 2 was due"
    assert result.problems[1:] == (
        "event 5 (ProcedureStopped, position 14): no row follows it and the chain's head is not it",
    )


def test_the_printable_file_carries_every_step_tally_and_hash_and_the_check() -> None:
    history = stopped_history()
    envelopes = chained(history)
    successors, head = links(envelopes)
    for language, title, verdict, decision in (
        ("zh", "选任程序档案", "核验无误", "同意 7, 不同意 2, 弃权 0"),
        ("en", "Procedure file", "none altered", "for 7, against 2, abstaining 0"),
    ):
        text = text_of(printable(envelopes, check(envelopes, successors, head), clock.current(), language))
        assert title in text
        assert verdict in text
        assert "Li Ming 30" in text  # the tally
        assert decision in text
        for envelope in envelopes:
            assert envelope.hash in text
        assert "a" * 64 in text  # the documents' hashes
        stopped = history[-1]
        assert isinstance(stopped, ProcedureStopped)
        assert stopped.reason in text
    broken = check(envelopes[1:], successors, head)
    text = text_of(printable(envelopes[1:], broken, clock.current(), "en"))
    assert "the check found problems" in text
    assert broken.problems[0] in text
