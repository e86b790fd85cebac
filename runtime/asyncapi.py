"""Each service's topics as an AsyncAPI 3.0 document, built from its spec and the event catalog.

    python -m runtime.asyncapi           # write contracts/asyncapi/<service>.json
    python -m runtime.asyncapi --check   # exit 1 when a checked-in file differs from the code

What a service sends: the events of its own topic (`contracts.catalog`, by each event's `topic`).
What it receives: every subscription of its spec, with the events its projection handles (a
reaction built from the running service is listed with every event of its topics). Each message
is the envelope (`contracts.envelope.Envelope`) with the event's schema as its `payload`. The
service serves its document at `GET /asyncapi` (through the console, `/api/<service>/asyncapi`),
and the checked-in copies are what other teams read, like the JSON Schemas beside them.
"""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from contracts import topics
from contracts.catalog import CURRENT
from contracts.envelope import Envelope
from contracts.event import Event

if TYPE_CHECKING:
    from runtime.service import ServiceSpec

REPO = Path(__file__).resolve().parents[1]
DOCUMENT_DIR = REPO / "contracts" / "asyncapi"
REF = "#/components/schemas/{model}"


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


def document(spec: ServiceSpec) -> dict[str, Any]:
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


def specs() -> list[ServiceSpec]:
    """Every service's spec (each `services/<name>/app.py` that defines a `SPEC`)."""
    from runtime.service import ServiceSpec  # noqa: PLC0415 - runtime.service imports much

    found = []
    for path in sorted((REPO / "services").glob("*/app.py")):
        spec = getattr(import_module(f"services.{path.parent.name}.app"), "SPEC", None)
        if isinstance(spec, ServiceSpec):
            found.append(spec)
    return found


def generated() -> dict[str, str]:
    """File name → content of every service's document."""
    return {f"{spec.name}.json": json.dumps(document(spec), indent=2, ensure_ascii=False) + "\n" for spec in specs()}


def drift() -> list[str]:
    """Names of documents that are missing, stale or no longer generated."""
    expected = generated()
    present = {path.name: path.read_text() for path in DOCUMENT_DIR.glob("*.json")}
    return sorted(
        [n for n, body in expected.items() if present.get(n) != body] + [n for n in present if n not in expected]
    )


def main(argv: list[str]) -> int:
    """Write the documents, or check them with `--check`."""
    if "--check" in argv:
        names = drift()
        for name in names:
            sys.stderr.write(f"AsyncAPI drift: contracts/asyncapi/{name} (run python -m runtime.asyncapi)\n")
        return 1 if names else 0
    DOCUMENT_DIR.mkdir(exist_ok=True)
    expected = generated()
    for path in DOCUMENT_DIR.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, body in expected.items():
        (DOCUMENT_DIR / name).write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
