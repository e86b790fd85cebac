"""Contracts: checked-in JSON Schema matches the models; upcasters; the catalog."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from contracts import catalog, schema
from contracts.envelope import Actor, Role, in_subtree, is_org_path
from contracts.registry import CadreNominated
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
    assert in_subtree("a.b", "a")
    assert is_org_path("cn.qs_1.b2")
    assert not is_org_path("cn..qs")
    assert not is_org_path("Cn")
