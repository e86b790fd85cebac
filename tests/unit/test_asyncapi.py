"""The services' AsyncAPI documents: well-formed, every reference resolves, and the checked-in copies are current."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import topics
from runtime import asyncapi
from runtime.service import ServiceSpec
from services import asyncapi as documents

SPECS = {spec.name: spec for spec in documents.specs()}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_service_has_a_document() -> None:
    assert {"registry", "training", "assessment", "selection", "notify", "audit", "sync"} <= SPECS.keys()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_reference_resolves_and_every_operation_names_its_channels_messages(name: str) -> None:
    spec: ServiceSpec = SPECS[name]
    document = asyncapi.document(spec)
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document):
        _resolve(document, ref)  # raises KeyError when it points nowhere
    for operation in document["operations"].values():
        assert operation["action"] in {"send", "receive"}
        channel = operation["channel"]["$ref"]
        assert all(message["$ref"].startswith(channel + "/messages/") for message in operation["messages"])


def test_the_registry_sends_its_events_and_training_receives_the_ones_it_projects() -> None:
    registry = asyncapi.document(SPECS["registry"])
    sent = registry["operations"]["registry.publish"]
    assert registry["channels"]["registry-events"]["address"] == topics.REGISTRY
    assert {"$ref": "#/channels/registry-events/messages/CadreNominated.v2"} in sent["messages"]
    nominated = registry["components"]["messages"]["CadreNominated.v2"]["payload"]["allOf"][1]["properties"]
    assert nominated["event_type"] == {"const": "CadreNominated"}
    assert "full_name" in _resolve(registry, nominated["payload"]["$ref"])["properties"]
    training = asyncapi.document(SPECS["training"])
    assert training["operations"]["training.pool.registry.events"]["action"] == "receive"


def test_the_checked_in_documents_are_current() -> None:
    assert documents.drift() == [], "run python -m services.asyncapi (./dev schemas)"
