"""Contracts: checked-in JSON Schema matches the models; upcasters; the catalog."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from contracts import catalog, schema
from contracts.envelope import (
    Actor,
    Envelope,
    Role,
    canonical_json,
    chain_hash,
    in_subtree,
    is_org_path,
    seal,
    uuid7,
    uuid7s,
)
from contracts.registry import Basis, CadreNominated
from contracts.selection import CadreAppointed
from contracts.upcasters import upcast


def test_checked_in_json_schema_matches_the_models() -> None:
    assert schema.drift() == [], "run: python -m contracts.schema"


def test_every_current_event_type_has_a_schema_file() -> None:
    generated = schema.generated()
    for model in catalog.CURRENT:
        assert f"{model.event_type}.v{model.schema_version}.json" in generated


V1 = {
    "cadre_id": str(uuid.uuid4()),
    "org_code": "qs",
    "full_name": "Sun Li",
    "gender": "female",
    "birth_year": 1988,
    "education": "master",
    "current_position": "Deputy director",
    "years_of_service": 12,
    "grassroots_months": 24,
    "reason": "imported",
}


def test_cadre_nominated_v1_upcasts_to_v2() -> None:
    version, payload = upcast("CadreNominated", 1, dict(V1))
    assert version == 2
    assert payload["birth_date"] == "1988-01-01"
    assert payload["birth_date_precision"] == "year"
    assert "birth_year" not in payload
    event = catalog.decode("CadreNominated", 1, dict(V1))
    assert isinstance(event, CadreNominated)
    assert event.full_name == "Sun Li"


def test_nominations_and_appointments_before_procedures_read_and_say_so() -> None:
    nominated = catalog.decode("CadreNominated", 1, dict(V1))
    assert isinstance(nominated, CadreNominated)
    assert (nominated.procedure_id, nominated.imported) == (None, False)
    assert Basis.of(nominated.procedure_id, imported=nominated.imported) is Basis.WITHOUT_PROCEDURE
    assert Basis.of(None, imported=True) is Basis.IMPORTED
    assert Basis.of(uuid.uuid4()) is Basis.PROCEDURE
    appointed = catalog.decode(
        "CadreAppointed",
        1,
        {
            "post_id": str(uuid.uuid4()),
            "cadre_id": str(uuid.uuid4()),
            "full_name": "Sun Li",
            "org_code": "bh_ly",
            "kind": "deputy",
            "post_title": "Deputy head",
            "appointed_on": "2025-03-01",
            "document_number": "BH-2025-3",
        },
    )
    assert isinstance(appointed, CadreAppointed)
    assert appointed.procedure_id is None


def test_unknown_types_and_versions_are_refused() -> None:
    with pytest.raises(catalog.UnknownEventError):
        catalog.decode("CadreTeleported", 1, {})
    with pytest.raises(catalog.UnknownEventError):
        catalog.decode("CadreNominated", 3, dict(V1))
    with pytest.raises(ValidationError):
        catalog.decode("CadreNominated", 2, dict(V1))


def test_subtree_membership() -> None:
    actor = Actor(user="u", org_path="cn.qs", role=Role.VIEWER)
    assert actor.covers("cn.qs")
    assert actor.covers("cn.qs.bh.ly")
    assert not actor.covers("cn.qsx")
    assert not actor.covers("cn")
    assert actor.reaches("cn")
    assert actor.reaches("cn.qs.bh")
    assert not actor.reaches("cn.hx")
    assert not actor.reaches("cn.qsx")
    assert (actor.narrower("cn"), actor.narrower("cn.qs.bh")) == ("cn.qs", "cn.qs.bh")
    assert in_subtree("a.b", "a")
    assert is_org_path("cn.qs_1.b2")
    assert not is_org_path("cn..qs")
    assert not is_org_path("Cn")


ENVELOPE = {
    "actor": {"org_path": "qs", "role": "organizer", "user": "u"},
    "cadre_id": None,
    "causation_id": None,
    "correlation_id": "01a21bb9-e025-7216-bcfa-486535b4e583",
    "deployment": "d",
    "event_id": "01a21bb9-e025-7216-bcfa-486535b4e584",
    "event_type": "CadreNominated",
    "hash": "h",
    "occurred_at": "2026-11-27T06:31:26.123456Z",
    "org_path": "qs.a",
    "payload": {"a": 1},
    "position": 3,
    "prev_hash": "p",
    "recorded_at": "2026-11-27T06:31:26+08:00",
    "schema_version": 1,
    "source": "s",
    "stream_id": "x",
    "stream_version": 1,
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"org_path": "qs\n"},  # `$` of Python's re would let the newline through
        {"org_path": "Qs"},
        {"actor": {"org_path": "qs\n", "role": "organizer", "user": "u"}},
        {"actor": {"org_path": "qs", "role": "boss", "user": "u"}},
        {"actor": {"org_path": "qs", "role": "organizer", "user": "u", "x": 1}},
        {"occurred_at": "2026-11-27T06:31:26"},  # no time zone
        {"recorded_at": 1700000000},
        {"schema_version": "1"},
        {"schema_version": True},
        {"schema_version": 1.0},
        {"extra": 1},
        {"hash": None},
        {"cadre_id": "01A21BB9E0257216BCFA486535B4E583"},
        {"payload": []},
        {"event_type": 5},
    ],
)
def test_the_fast_envelope_reader_accepts_and_refuses_exactly_what_pydantic_does(change: dict[str, object]) -> None:
    data = orjson.dumps({k: v for k, v in {**ENVELOPE, **change}.items() if v is not None or k != "hash"})
    try:
        strict: Envelope | None = Envelope.model_validate_json(data)
    except ValidationError:
        strict = None
    try:
        fast: Envelope | None = Envelope.from_bytes(data)
    except ValidationError:
        fast = None
    assert fast == strict
    if strict is not None and fast is not None:
        assert fast.__dict__ == strict.__dict__
        assert fast.occurred_at.tzinfo is UTC
        assert fast.recorded_at.tzinfo is UTC
        assert fast.to_bytes() == strict.to_bytes()


def test_event_ids_are_version_7_and_increase_within_a_process() -> None:
    ids = [uuid7() for _ in range(3000)] + uuid7s(10_000) + [uuid7()]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert all(uuid.UUID(str(i)) == i and hash(uuid.UUID(str(i))) == hash(i) for i in ids[:100])


@pytest.mark.parametrize("user", ["u", 'a","occurred_at":"x', "名字 \\ \n"])
def test_seal_hashes_and_serializes_as_the_two_separate_steps_do(user: str) -> None:
    fields: dict[str, Any] = {k: v for k, v in ENVELOPE.items() if k != "hash"}
    fields["actor"] = {"org_path": "qs", "role": "organizer", "user": user}
    fields["payload"] = {"z": [1, {"b": 2, "a": '","occurred_at":'}], "a": None}
    digest, body = seal(fields)
    assert digest == chain_hash(fields)
    assert body == canonical_json({**fields, "hash": digest})
    assert seal({**fields, "payload": orjson.Fragment(canonical_json(fields["payload"]))}) == (digest, body)
