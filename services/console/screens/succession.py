"""Teams and succession: a unit's team, the pool's strength and gaps, the 9-box, the use of the pool (selection)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.pool import unit_choices

router = APIRouter(include_in_schema=False)

Unit = Annotated[str | None, Query(max_length=32)]
TABS = (("/team", "Team"), ("/strength", "Strength and gaps"), ("/nine-box", "9-box"), ("/pool-use", "Use of the pool"))
"""The screens of this part, shown as tabs on each (the header links to the first)."""


@router.get("/team")
async def team(request: Request, console: ConsoleDep, session: SessionDep, unit: Unit = None) -> Response:
    """A unit's team today: counts per kind, each post with its holder (or vacant) and its successors."""
    chosen = unit or session.org_code
    found = await console.apis.get("selection", f"/teams/{chosen}", session.access_token)
    units = await unit_choices(console, session, chosen)
    return console.render(request, "team.html", team=found, units=units, unit=chosen, tabs=TABS)


@router.get("/strength")
async def strength(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    under: Unit = None,
    within_months: Annotated[int, Query(ge=1, le=120)] = 12,
) -> Response:
    """Reserves against the ratio per unit and kind, posts with no ready successor, posts falling vacant."""
    found = await console.apis.get(
        "selection", "/strength", session.access_token, under=under, within_months=within_months
    )
    units = await unit_choices(console, session, under)
    return console.render(
        request, "strength.html", s=found, units=units, under=under or "", within_months=within_months, tabs=TABS
    )


@router.get("/nine-box")
async def nine_box(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    under: Unit = None,
    cycle: Annotated[UUID | None, Query()] = None,
) -> Response:
    """Performance against potential in a cycle, as a grid and as a table, and movement since the cycle before."""
    found = await console.apis.get("selection", "/nine-box", session.access_token, under=under, cycle_id=cycle)
    units = await unit_choices(console, session, under)
    return console.render(request, "nine_box.html", b=found, units=units, under=under or "", tabs=TABS)


@router.get("/pool-use")
async def pool_use(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    under: Unit = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
) -> Response:
    """Appointments per unit and kind over a period, and how many came out of the pool."""
    if since is not None and until is not None and until < since:
        raise ScreenError(400, "the period ends before it begins")
    found = await console.apis.get(
        "selection",
        "/pool-use",
        session.access_token,
        under=under,
        since=since and since.isoformat(),
        until=until and until.isoformat(),
    )
    units = await unit_choices(console, session, under)
    return console.render(request, "pool_use.html", u=found, units=units, under=under or "", tabs=TABS)
