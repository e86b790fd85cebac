"""Each service's topics as an AsyncAPI 3.0 document, built from its spec and the event catalog.

The checked-in copies (`contracts/asyncapi/`) are written and checked by `services.asyncapi`.

What a service sends: the events of its own topic (`contracts.catalog`, by each event's `topic`).
What it receives: every subscription of its spec, with the events its projection handles (a
reaction built from the running service is listed with every event of its topics). Each message
is the envelope (`contracts.envelope.Envelope`) with the event's schema as its `payload`. The
service serves its document at `GET /asyncapi` (through the console, `/api/<service>/asyncapi`),
and the checked-in copies are what other teams read, like the JSON Schemas beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from contracts import topics
from contracts.catalog import CURRENT
from contracts.envelope import Envelope
from contracts.event import Event
from runtime.projection import Projection

REF = "#/components/schemas/{model}"


class Reads(Protocol):
    """What a document needs of a subscription (`runtime.service.Subscription`)."""

    @property
    def topics(self) -> Sequence[str]:
        """The logical topics it reads."""
        ...

    @property
    def projection(self) -> Projection | None:
        """What it folds them into (None: a reaction built from the running service)."""
        ...


class Described(Protocol):
    """What a document needs of a service (`runtime.service.ServiceSpec`)."""

    @property
    def name(self) -> str:
        """The service's name (its topic is `<name>.events`)."""
        ...

    @property
    def title(self) -> str:
        """Its title."""
        ...

    @property
    def description(self) -> str:
        """What it does."""
        ...

    @property
    def projections(self) -> Sequence[Reads]:
        """What it reads from other services' topics."""
        ...


def _schema(model: type[BaseModel], schemas: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """`model`'s JSON Schema with its nested models moved into `schemas`; a reference to it."""
    body = model.model_json_schema(ref_template=REF)
    for nested, schema in body.pop("$defs", {}).items():
        schemas.setdefault(nested, schema)
    key = name or model.__name__
    schemas[key] = body
    return {"$ref": REF.format(model=key)}


def _message(event: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    payload = _schema(event, schemas, f"{event.event_type}.v{event.schema_version}")
    return {
        "name": event.event_type,
        "title": f"{event.event_type} (schema version {event.schema_version})",
        "contentType": "application/json",
        "summary": (event.__doc__ or "").strip().split("\n")[0],
        "payload": {
            "allOf": [
                {"$ref": REF.format(model="Envelope")},
                {
                    "type": "object",
                    "properties": {
                        "event_type": {"const": event.event_type},
                        "schema_version": {"const": event.schema_version},
                        "payload": payload,
                    },
                },
            ]
        },
    }


def _events_of(topic: str) -> list[type[Event]]:
    return [event for event in CURRENT if event.topic == topic]


def document(spec: Described) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of `spec`'s topics (logical names: a deployment may prefix them)."""
    schemas: dict[str, Any] = {}
    _schema(Envelope, schemas)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(topic: str, events: list[type[Event]]) -> str:
        name = topic.replace(".", "-")
        entry = channels.setdefault(name, {"address": topic, "messages": {}})
        for event in events:
            key = f"{event.event_type}.v{event.schema_version}"
            messages.setdefault(key, _message(event, schemas))
            entry["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        return name

    def refs(name: str, events: list[type[Event]]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{name}/messages/{e.event_type}.v{e.schema_version}"} for e in events]

    own = topics.service_topic(spec.name)
    sent = _events_of(own)
    if sent:
        name = channel(own, sent)
        operations[f"{spec.name}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "Every event this service records, in order per cadre (key: the cadre id), hash-chained.",
            "messages": refs(name, sent),
        }
    for subscription in spec.projections:
        projection = subscription.projection
        for topic in subscription.topics:
            events = [e for e in _events_of(topic) if projection is None or projection.handles(e.event_type)]
            if not events:
                continue
            name = channel(topic, events)
            reader = projection.name if projection is not None else "reaction"
            operations[f"{spec.name}.{reader}.{topic}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"{reader}: reads these events (idempotent by position; poison goes to {topics.dlq(topic)})",
                "messages": refs(name, events),
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"{spec.title}: events", "version": "1", "description": spec.description},
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": dict(sorted(schemas.items()))},
    }
