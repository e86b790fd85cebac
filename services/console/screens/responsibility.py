"""Pages of their own for mentors and leaders: my mentees and what each needs; the responsibility report."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response

from services.console.pages import ConsoleDep, SessionDep
from services.console.screens.pool import Text, stream_export, unit_choices

router = APIRouter(include_in_schema=False)


@router.get("/mentees")
async def mentees(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The signed-in mentor's mentees: a check-in due or overdue, open reminders, training hours behind."""
    token, apis = session.access_token, console.apis
    mine = await apis.get("assessment", "/mentees", token)
    behind = {b["cadre_id"]: b for b in await apis.get("training", "/behind-quota", token, limit=1000)}
    return console.render(request, "mentees.html", mentees=mine, behind=behind)


@router.get("/responsibility")
async def responsibility(request: Request, console: ConsoleDep, session: SessionDep, under: Text = None) -> Response:
    """Every mentor of the subtree and what they owe; printable, and as a spreadsheet."""
    report = await console.apis.get("assessment", "/responsibility", session.access_token, under=under or None)
    units = await unit_choices(console, session, under or None)
    return console.render(request, "responsibility.html", report=report, units=units, under=under or "")


@router.get("/responsibility/export")
async def export(
    console: ConsoleDep,
    session: SessionDep,
    under: Text = None,
    format: Literal["csv", "xlsx"] = "xlsx",  # noqa: A002
) -> Response:
    """The responsibility report as assessment exports it (XLSX or CSV), streamed through."""
    return await stream_export(console, session, "assessment", "/responsibility", {"under": under, "format": format})
