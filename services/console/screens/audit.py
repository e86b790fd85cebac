"""Audit: the pool as of a moment, the difference between two moments, a cadre's trail, event detail, signed export."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from runtime import clock
from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.pool import unit_choices
from services.console.session import Session

router = APIRouter(include_in_schema=False)

Moment = Annotated[str | None, Query(max_length=40)]


def _moment(value: str | None, default: datetime) -> datetime:
    """A moment from a `datetime-local` field (the organization's time) or ISO 8601 with a zone."""
    if not value:
        return default
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ScreenError(422, f"{value!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=clock.current().zone)


def _auditor(session: Session) -> None:
    if not session.may_audit:
        raise ScreenError(403, "your role may not audit")


@router.get("/audit")
async def audit(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    at: Moment = None,
    since: Moment = None,
    until: Moment = None,
    under: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """The pool as of `at`; with `since`, what changed from `since` to `until` (now by default)."""
    _auditor(session)
    now = clock.now().replace(microsecond=0)
    token = session.access_token
    pool = diff = None
    moment = _moment(at, now)
    if at:
        pool = await console.apis.get("audit", "/pool", token, at=moment.isoformat(), under=under)
    start, end = _moment(since, now - timedelta(days=30)), _moment(until, now)
    if since:
        diff = await console.apis.get(
            "audit", "/pool/changes", token, since=start.isoformat(), until=end.isoformat(), under=under
        )
    zone = clock.current().zone
    units = await unit_choices(console, session, under)
    named = await console.apis.get("registry", "/org-units", token, under=under) if pool or diff else units
    return console.render(
        request, "audit.html", pool=pool, diff=diff, at=moment.astimezone(zone), since=start.astimezone(zone),
        until=end.astimezone(zone), now=now, under=under or "", zone=str(zone), units=units,
        unit_names={unit["code"]: unit["name"] for unit in named},
    )  # fmt: skip


@router.get("/audit/cadres/{cadre_id}")
async def trail(cadre_id: UUID, request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """A cadre's whole record across every service, each event with its hash."""
    _auditor(session)
    entries = await console.apis.get("audit", f"/cadres/{cadre_id}/timeline", session.access_token)
    return console.render(request, "audit_trail.html", entries=entries, cadre_id=cadre_id)


@router.get("/audit/events/{event_id}")
async def event(event_id: UUID, request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """One event whole: its data, its envelope, its place in the chain and whether its hashes hold."""
    _auditor(session)
    detail = await console.apis.get("audit", f"/events/{event_id}", session.access_token)
    return console.render(request, "audit_event.html", detail=detail)


@router.get("/audit/export")
async def export(
    console: ConsoleDep, session: SessionDep, since: Moment = None, until: Moment = None,
    under: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:  # fmt: skip
    """The audit service's signed bundle of the subtree's events in a period (verify it offline)."""
    _auditor(session)
    now = clock.now()
    answer = await console.apis.call(
        "audit", "GET", "/export", session.access_token,
        params={"since": _moment(since, now - timedelta(days=30)).isoformat(),
                "until": _moment(until, now).isoformat(), "under": under},
    )  # fmt: skip
    return Response(
        answer.content,
        media_type="application/zip",
        headers={"Content-Disposition": answer.headers.get("content-disposition", "attachment")},
    )
