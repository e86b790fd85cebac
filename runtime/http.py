"""A service's HTTP layer: `install` (problems and the guard), and what a route asks of a request.

The request's parameters and dependencies live here: the command context (who, when, a late
entry's declaration), ISO 8601 days and moments, the expensive-query limit, `If-Match` and a
route's own bounded body. Refusals are told by `runtime.problems`; every request passes
`runtime.guard.Guard` first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Final
from urllib.parse import unquote
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from pydantic import BeforeValidator

from runtime import clock, limits
from runtime.auth import CurrentActor, Permission, caller_of
from runtime.commands import Accepted, tagged
from runtime.context import CommandContext, LateEntry
from runtime.errors import CommandError, ForbiddenError, PayloadTooLargeError, RuleViolationError
from runtime.guard import CORRELATION_HEADER, DRY_RUN_STATE, Guard, correlation_of, has_control
from runtime.problems import install_handlers


def install(
    app: FastAPI, *, service: str, max_body: int = 8 * 1024 * 1024, body_limits: Mapping[str, int] | None = None
) -> None:
    """Add problem+json handlers and the `Guard` (limits, control characters, headers, correlation ids, metrics)."""
    install_handlers(app)
    app.add_middleware(Guard, service=service, max_body=max_body, body_limits=body_limits)


_ISO_8601: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_8601(value: object) -> object:
    """A text must be ISO 8601, as the documents declare (pydantic alone would take `0` for 1970-01-01)."""
    if isinstance(value, str) and not _ISO_8601.match(value):
        msg = "an ISO 8601 date (YYYY-MM-DD), not a number"
        raise ValueError(msg)
    return value


Day = Annotated[date, BeforeValidator(_iso_8601)]
"""A date parameter (query or header): ISO 8601 only."""
Moment = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time parameter (query or header): ISO 8601 only."""
Under = Annotated[str | None, Query(description="Root unit code (default: yours)")]
"""The subtree a query reads (its root unit's code); None: the actor's own."""

LATE_REASON_HEADER: Final = "X-Late-Entry-Reason"
_LATE_REASON_MAX = 500
LATE_REASON_PATTERN: Final = r"^(?:[^%\x00-\x1f\x7f]|%(?:[2-689A-Fa-f][0-9A-Fa-f]|7[0-9A-Ea-e]))*$"
"""Percent-encoded UTF-8 on one line: no control character, written or encoded; a `%` itself as `%25`."""
DEFAULT_BACKDATING_WINDOW: Final = timedelta(days=30)


async def command_context(
    request: Request,
    actor: CurrentActor,
    occurred_at: Annotated[
        Moment | None,
        Header(
            alias="X-Occurred-At",
            description="When it happened, if earlier (records entered late). Further back than the service's"
            " backdating window it needs the `late_entry` permission and X-Late-Entry-Reason",
        ),
    ] = None,
    late_reason: Annotated[
        str | None,
        Header(
            alias=LATE_REASON_HEADER,
            description="Why a record is entered this late (percent-encoded UTF-8, one line): recorded with it",
            max_length=3 * _LATE_REASON_MAX,
            pattern=LATE_REASON_PATTERN,
        ),
    ] = None,
) -> CommandContext:
    """FastAPI dependency: the context of a command from its actor and headers.

    Backdating is an explicit, bounded act: `X-Occurred-At` may lie up to the service's backdating
    window back (`BACKDATING_WINDOW_DAYS`) for any organizer; further back the caller needs the
    `late_entry` permission (403 without) and a reason (422 without), and the store records both
    in a `LateEntryDeclared` event beside the command's own (runtime.store).
    """
    correlation: UUID = getattr(request.state, "correlation_id", None) or correlation_of(
        request.headers.get(CORRELATION_HEADER, "").encode()
    )
    if occurred_at is not None and occurred_at.tzinfo is None:
        msg = "X-Occurred-At needs a time zone"
        raise CommandError(msg)
    late = _late_entry(request, occurred_at, late_reason)
    dry_run = bool(request.scope.get("state", {}).get(DRY_RUN_STATE))
    return CommandContext(
        actor=actor, correlation_id=correlation, occurred_at=occurred_at, dry_run=dry_run, late_entry=late
    )


def _late_entry(request: Request, occurred_at: datetime | None, raw_reason: str | None) -> LateEntry | None:
    """The declaration a command entered beyond the backdating window needs; None within it."""
    if raw_reason is not None and has_control(unquote(raw_reason)):  # refused whether or not it is needed
        msg = f"{LATE_REASON_HEADER} must be one line"
        raise RuleViolationError(msg)
    if occurred_at is None:
        return None
    window: timedelta = getattr(request.app.state, "backdating_window", DEFAULT_BACKDATING_WINDOW)
    if occurred_at >= clock.now() - window:
        return None
    days = window.days
    if Permission.LATE_ENTRY not in caller_of(request).permissions:
        msg = (
            f"X-Occurred-At lies more than {days} days back: entering records that late needs the"
            f" {Permission.LATE_ENTRY.value} permission"
        )
        raise ForbiddenError(msg)
    reason = unquote(raw_reason or "").strip()
    if not reason or len(reason) > _LATE_REASON_MAX or has_control(reason):
        msg = f"a record entered more than {days} days late needs its reason in {LATE_REASON_HEADER} (one line)"
        raise RuleViolationError(msg)
    return LateEntry(reason=reason, permission=Permission.LATE_ENTRY.value, window_days=days)


Context = Annotated[CommandContext, Depends(command_context)]


async def expensive(request: Request, actor: CurrentActor) -> None:
    """FastAPI dependency of reads that cost much (an audit question records an event): the actor's share."""
    limits.charge(request, actor, limits.EXPENSIVE)


Expensive = Depends(expensive)
"""Add to a route's (or a router's) `dependencies` to count its calls against the actor's share of expensive reads."""


_VERSION_DIGITS: Final = 18
"""A stream version has at most this many digits (it is a PostgreSQL bigint)."""
IF_MATCH_PATTERN: Final = rf'^(W/)?"?[0-9]{{1,{_VERSION_DIGITS}}}"?$'


async def expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Stream version the change is based on (optimistic concurrency)",
            json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> int | None:
    """FastAPI dependency: the version in `If-Match`, if any (400 unless it is one, as IF_MATCH_PATTERN declares)."""
    if if_match is None:
        return None
    digits = if_match.strip().removeprefix("W/").strip('"')
    if not digits.isascii() or not digits.isdigit() or len(digits) > _VERSION_DIGITS:
        msg = "If-Match must be a stream version number"
        raise CommandError(msg)
    return int(digits)


ExpectedVersion = Annotated[int | None, Depends(expected_version)]


@dataclass(frozen=True)
class Act:
    """What a command's route is given: the command's context, the version `If-Match` named, the answer to tag."""

    ctx: CommandContext
    expected: int | None
    response: Response

    def tagged(self, accepted: Accepted) -> Accepted:
        """`accepted`, its stream's new version sent as the answer's ETag (`runtime.commands.tagged`)."""
        return tagged(self.response, accepted)


async def changing(ctx: Context, expected: ExpectedVersion, response: Response) -> Act:
    """FastAPI dependency of a command that changes a stream: its context and its `If-Match`."""
    return Act(ctx, expected, response)


async def creating(ctx: Context, response: Response) -> Act:
    """FastAPI dependency of a command that starts a stream (or needs no `If-Match`): its context."""
    return Act(ctx, None, response)


Change = Annotated[Act, Depends(changing)]
"""A route's command that changes a stream: `act.tagged(await cmd.x(act.ctx, ..., act.expected))`."""
Create = Annotated[Act, Depends(creating)]
"""A route's command without `If-Match`: `act.tagged(await cmd.x(act.ctx, ...))`."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it exceeds `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        msg = f"the body has {int(declared):,} bytes; at most {limit:,} are accepted"
        raise PayloadTooLargeError(msg, limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            msg = f"the body has more than {limit:,} bytes; at most {limit:,} are accepted"
            raise PayloadTooLargeError(msg, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
