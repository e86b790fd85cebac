"""Structure statistics of a subtree's pool (age, education, gender, level) and each unit's pool against its target."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.console.pages import ConsoleDep, SessionDep
from services.console.screens.pool import unit_choices

router = APIRouter(include_in_schema=False)


@router.get("/statistics")
async def statistics(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    under: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Charts, each with its numbers as a table."""
    structure = await console.apis.get("registry", "/structure", session.access_token, under=under)
    units = await unit_choices(console, session, under)
    return console.render(request, "statistics.html", s=structure, units=units, under=under or "")
