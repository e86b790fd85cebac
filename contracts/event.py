"""The base of every event payload."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """A fact that happened, named in the past tense.

    Subclasses set `event_type` (the name on the wire, fixed forever) and
    `schema_version` (raised on every incompatible change, with an upcaster from
    the version before it in `contracts.upcasters`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str]
