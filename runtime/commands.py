"""What every command shares: its body's base, stream ids, load-decide-append with the optimistic check, the answer.

A command handler loads a stream's state, lets the service's rules decide the events, and
appends them at the version it loaded: `change` does that (and retries when a concurrent
writer got there first), `start` appends a new stream's first events, `record` appends and
answers. The handler keeps only what is the service's own: which state, which rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from uuid import UUID

from fastapi import Response
from pydantic import BaseModel, ConfigDict

from contracts.envelope import Envelope
from contracts.event import Event
from runtime.context import CommandContext
from runtime.errors import ConcurrencyError, ConflictError
from runtime.eventlog import EventLog

T = TypeVar("T")


class Versioned(Protocol):
    """A stream's state, folded from its events: it knows the version it was folded to."""

    @property
    def version(self) -> int:
        """The stream version of the last event folded in (0: none)."""


S = TypeVar("S", bound=Versioned)


@dataclass(frozen=True)
class Streams:
    """How the ids of one kind of stream are written, `<kind>-<key>`: `Streams("program")(id)` is `program-<id>`."""

    kind: str

    def __call__(self, key: object) -> str:
        """The id of the stream of `key`."""
        return f"{self.kind}-{key}"


class Command(BaseModel):
    """The base of every command's request body: a field the command does not know is refused (422)."""

    model_config = ConfigDict(extra="forbid")


class AppendedEvent(BaseModel):
    """One event a command recorded."""

    event_id: UUID
    event_type: str
    position: int


class Accepted(BaseModel):
    """The answer to a command: the stream it changed, its new version, the events recorded."""

    stream_id: str
    version: int
    events: list[AppendedEvent]

    @classmethod
    def of(cls, stream_id: str, version: int, envelopes: Sequence[Envelope]) -> Accepted:
        """Describe `envelopes` appended to `stream_id` (none: the command changed nothing)."""
        last = envelopes[-1].stream_version if envelopes else version
        return cls(
            stream_id=stream_id,
            version=last,
            events=[
                AppendedEvent(event_id=e.event_id, event_type=e.event_type, position=e.position) for e in envelopes
            ],
        )


def check_expected(stream_id: str, expected: int | None, actual: int) -> None:
    """Refuse (409) when the caller based its change on another version than the current one."""
    if expected is not None and expected != actual:
        raise ConcurrencyError(stream_id, expected, actual)


async def retrying(attempt: Callable[[], Awaitable[T]], *, expected: int | None, tries: int = 3) -> T:
    """Run a load-decide-append `attempt`; retry it when a concurrent writer got there first.

    Only when the caller named no expected version: then the rules decide again
    against the new state (a full programme refuses the late enrolment with 422
    instead of a bare 409). A caller that sent `If-Match` gets the 409.
    """
    for attempt_number in range(1, tries + 1):
        try:
            return await attempt()
        except ConcurrencyError:
            if expected is not None or attempt_number == tries:
                raise
    raise AssertionError  # pragma: no cover - the loop returns or raises


@dataclass(frozen=True)
class Decision:
    """What the rules decided for a stream: the events, and where they are recorded (org unit, cadre)."""

    events: Sequence[Event]
    org_path: str
    cadre_id: UUID | None = None


async def record(
    log: EventLog,
    stream: str,
    version: int,
    events: Sequence[Event],
    *,
    ctx: CommandContext,
    org_path: str,
    cadre_id: UUID | None = None,
) -> Accepted:
    """Append `events` to `stream` at `version` and answer what was recorded."""
    envelopes = await log.append(stream, version, events, ctx=ctx, org_path=org_path, cadre_id=cadre_id)
    return Accepted.of(stream, version, envelopes)


async def start(
    log: EventLog,
    stream: str,
    events: Sequence[Event],
    *,
    ctx: CommandContext,
    org_path: str,
    cadre_id: UUID | None = None,
    exists: str,
) -> Accepted:
    """Append a new stream's first events; when the stream exists already, 409 saying `exists`."""
    try:
        return await record(log, stream, 0, events, ctx=ctx, org_path=org_path, cadre_id=cadre_id)
    except ConflictError:
        raise ConflictError(exists) from None


async def change(
    log: EventLog,
    stream: str,
    load: Callable[[], Awaitable[S]],
    decide: Callable[[S], Decision | Awaitable[Decision]],
    *,
    ctx: CommandContext,
    expected: int | None,
) -> Accepted:
    """Load a stream's state, check it is at `expected` (409), let `decide` say what to append, append it.

    Retried as `retrying` says when a concurrent writer got there first: the rules then decide
    again against the new state.
    """

    async def attempt() -> Accepted:
        state = await load()
        check_expected(stream, expected, state.version)
        decided = decide(state)
        decision = await decided if inspect.isawaitable(decided) else decided
        return await record(
            log, stream, state.version, decision.events, ctx=ctx, org_path=decision.org_path, cadre_id=decision.cadre_id
        )

    return await retrying(attempt, expected=expected)


def tagged(response: Response, accepted: Accepted) -> Accepted:
    """`accepted`, its stream's new version sent as the answer's ETag: what the next change's If-Match names."""
    response.headers["ETag"] = f'"{accepted.version}"'
    return accepted
