"""Pages of their own for mentors and leaders: my mentees and what each needs; the responsibility report."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from runtime import clock
from services.console.pages import ConsoleDep, SessionDep
from services.console.screens.pool import Text, stream_export, unit_choices

router = APIRouter(include_in_schema=False)


@router.get("/mentees")
async def mentees(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The signed-in mentor's mentees: a check-in due or overdue, open reminders, training hours behind."""
    token, apis = session.access_token, console.apis
    mine = await apis.get("assessment", "/mentees", token)
    behind = {b["cadre_id"]: b for b in await apis.get("training", "/behind-quota", token, limit=1000)}
    return console.render(request, "mentees.html", mentees=mine, behind=behind, today=clock.today())


@router.post("/mentees/check-in")
async def check_in(
    console: ConsoleDep,
    session: SessionDep,
    cadre_id: Annotated[UUID, Form()],
    held_on: Annotated[str, Form()],
    thinking: Annotated[str, Form(max_length=2000)] = "",
    work: Annotated[str, Form(max_length=2000)] = "",
    life: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A mentor records a check-in with a mentee (assessment allows it to the cadre's own mentor)."""
    body = {"held_on": held_on, "thinking": thinking, "work": work, "life": life}
    await console.apis.send("assessment", "POST", f"/cadres/{cadre_id}/check-ins", session.access_token, body=body)
    return RedirectResponse("/mentees", status_code=303)


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
