"""What a projection is: SQL that folds recorded events into query tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from contracts import catalog
from contracts.envelope import Envelope
from contracts.event import Event
from runtime.db import Conn


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as read back: its envelope and its payload upcast to the current version."""

    envelope: Envelope
    event: Event

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Recorded:
        """Decode the envelope's payload (raises `UnknownEventError`, `ValidationError`)."""
        event = catalog.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        return cls(envelope=envelope, event=event)


class Projection(Protocol):
    """Folds events into tables, inside a transaction someone else opened and commits.

    The same projection runs inline (a service's own events, in the append's
    transaction), from a topic (another service's events) and in a rebuild.
    """

    name: str
    """Stable name: part of the consumer group id and of the inbox key."""

    def handles(self, event_type: str) -> bool:
        """Whether this projection reads events of `event_type` (others are skipped)."""
        ...

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply `events` in order. Raise to refuse them (they go to the dead-letter topic)."""
        ...
