"""The base of every event payload."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """A fact that happened, named in the past tense.

    `event_type` is the name on the wire, fixed forever: the class's name, unless the class
    sets it (a class kept for an older version of an event). Subclasses set `topic` (most
    through their service's base in their module) and `schema_version` (raised on every
    incompatible change, with an upcaster from the version before it in `contracts.upcasters`).
    A class renamed would change its events' name on the wire: the committed schemas
    (`contracts.schema --check`) show it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__


class Value(BaseModel):
    """A value an event carries (a document, a score sheet, a person): immutable, no field it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")
