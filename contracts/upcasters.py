"""Upcasters: each turns one stored schema version of an event into the next.

Stored events are never rewritten; they are upcast every time they are read.
Register each upcaster under (event type, the version it reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


def cadre_nominated_v1_to_v2(payload: Payload) -> Payload:
    """Version 1 kept only a birth year; version 2 keeps a date and says how precise it is."""
    upcast = {key: value for key, value in payload.items() if key != "birth_year"}
    upcast["birth_date"] = f"{int(payload['birth_year']):04d}-01-01"
    upcast["birth_date_precision"] = "year"
    return upcast


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("CadreNominated", 1): cadre_nominated_v1_to_v2,
}


def upcast(event_type: str, schema_version: int, payload: Payload) -> tuple[int, Payload]:
    """Apply upcasters until none is registered for the version reached."""
    while (step := UPCASTERS.get((event_type, schema_version))) is not None:
        payload = step(payload)
        schema_version += 1
    return schema_version, payload


def reaches(event_type: str, schema_version: int) -> int:
    """The version a payload of `schema_version` is upcast to (without touching a payload)."""
    while (event_type, schema_version) in UPCASTERS:
        schema_version += 1
    return schema_version
