"""What every command shares: its body's base, the optimistic check, and the answer it gives (with its ETag)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

from fastapi import Response
from pydantic import BaseModel, ConfigDict

from contracts.envelope import Envelope
from runtime.errors import ConcurrencyError

T = TypeVar("T")


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


def tagged(response: Response, accepted: Accepted) -> Accepted:
    """`accepted`, its stream's new version sent as the answer's ETag: what the next change's If-Match names."""
    response.headers["ETag"] = f'"{accepted.version}"'
    return accepted
