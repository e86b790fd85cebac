"""What a projection is: SQL that folds recorded events into query tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from contracts import catalog
from contracts.envelope import Envelope
from contracts.event import Event
from contracts.upcasters import upcast
from runtime.db import Conn


class Recorded:
    """An event as read back: its envelope, and its payload upcast to the current version.

    The payload is decoded into its pydantic model (`event`) the first time someone asks for
    it: a projection that reads only `payload`, the plain upcast dict, never pays for the
    model's validation. Either raises `UnknownEventError`, and `event` pydantic's
    `ValidationError`, when the payload cannot be read.
    """

    __slots__ = ("_event", "_payload", "envelope")

    def __init__(self, envelope: Envelope, event: Event | None = None) -> None:
        self.envelope = envelope
        self._event = event
        self._payload: dict[str, Any] | None = None

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Recorded:
        """Decode the envelope's payload now (raises `UnknownEventError`, `ValidationError`)."""
        recorded = cls(envelope)
        _ = recorded.event
        return recorded

    @property
    def event(self) -> Event:
        """The payload as its event's current model (validated on first use)."""
        if self._event is None:
            env = self.envelope
            self._event = catalog.decode(env.event_type, env.schema_version, env.payload)
        return self._event

    @property
    def payload(self) -> dict[str, Any]:
        """The payload upcast to the current version, as JSON values, not validated again.

        For projections on the hot path: the store appended it from a validated model.
        """
        if self._payload is None:
            env = self.envelope
            catalog.check_readable(env.event_type, env.schema_version)
            self._payload = upcast(env.event_type, env.schema_version, env.payload)[1]
        return self._payload

    def __repr__(self) -> str:
        return f"Recorded({self.envelope.event_type} {self.envelope.event_id})"


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


E = TypeVar("E", bound=Event)


class Typed:
    """Base of a projection or reaction that names, by class, the events it reads: `handles` follows.

    `events = (CadreNominated, CadreRetired)` instead of a set of type names and a `handles`
    of its own; `of_type` then gives each event as its class.
    """

    events: ClassVar[tuple[type[Event], ...]] = ()
    """The event classes it reads (every other event is skipped)."""
    _event_types: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._event_types = frozenset(kind.event_type for kind in cls.events)

    def handles(self, event_type: str) -> bool:
        """Whether it reads events of `event_type`: those of its `events`."""
        return event_type in self._event_types


def of_type(events: Iterable[Recorded], kind: type[E]) -> Iterator[tuple[Envelope, E]]:
    """The events of class `kind` among `events`, each with its envelope, typed as that class."""
    for recorded in events:
        if recorded.envelope.event_type == kind.event_type:
            event = recorded.event
            if isinstance(event, kind):
                yield recorded.envelope, event


Fold = Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]]
"""Folds a batch's rows for one statement into the rows to write, one per key (the first column)."""


def fold_last(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per key (first column): the latest."""
    return list({row[0]: row for row in rows}.values())


def fold_changes(tail: int) -> Fold:
    """One row per key: later non-null values over earlier ones; the last `tail` columns (version, time): the latest."""

    def fold(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        folded: dict[Any, tuple[Any, ...]] = {}
        for row in rows:
            before = folded.get(row[0])
            if before is None:
                folded[row[0]] = row
            else:
                middle = (
                    new if new is not None else old for old, new in zip(before[1:-tail], row[1:-tail], strict=True)
                )
                folded[row[0]] = (row[0], *middle, *row[-tail:])
        return list(folded.values())

    return fold
