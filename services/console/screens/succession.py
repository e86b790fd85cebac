"""Teams and succession: a unit's team, the pool's strength and gaps, the 9-box, the use of the pool (selection)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from contracts.selection import Potential, Readiness
from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.pool import stream_export, unit_choices

router = APIRouter(include_in_schema=False)

Unit = Annotated[str | None, Query(max_length=32)]
CHOICES = 50
"""Cadres of the pool a successor's form offers (the unit's subtree, first by name)."""
Reason = Annotated[str, Form(min_length=1, max_length=2000)]
TABS = (("/team", "Team"), ("/strength", "Strength and gaps"), ("/nine-box", "9-box"), ("/pool-use", "Use of the pool"))
"""The screens of this part, shown as tabs on each (the header links to the first)."""


@router.get("/team")
async def team(request: Request, console: ConsoleDep, session: SessionDep, unit: Unit = None) -> Response:
    """A unit's team today: counts per kind, each post with its holder (or vacant) and its successors."""
    chosen = unit or session.org_code
    found = await console.apis.get("selection", f"/teams/{chosen}", session.access_token)
    units = await unit_choices(console, session, chosen)
    pool: list[dict[str, object]] = []
    if session.may_write and found["posts"]:  # whom a successor's form offers: the pool of the unit's subtree
        page = await console.apis.get(
            "registry", "/cadres", session.access_token, status="in_pool", under=chosen, limit=CHOICES
        )
        pool = page["items"]
    return console.render(
        request, "team.html", team=found, units=units, unit=chosen, tabs=TABS, pool=pool, readiness=list(Readiness)
    )


@router.post("/team/{org_code}/posts/{post_id}/successors")
async def name_successor(
    org_code: Annotated[str, Path(max_length=32)],
    post_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    cadre_id: Annotated[UUID, Form()],
    readiness: Annotated[Readiness, Form()],
    reason: Reason,
) -> Response:
    """Name a reserve as successor for the post, with a readiness and its reason (selection's command)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not name successors")
    body = {"cadre_id": str(cadre_id), "readiness": readiness.value, "reason": reason}
    path = f"/teams/{org_code}/posts/{post_id}/successors"
    await console.apis.send("selection", "POST", path, session.access_token, body=body)
    return RedirectResponse("/team?" + urlencode({"unit": org_code}), status_code=303)


@router.post("/team/{org_code}/posts/{post_id}/successors/{cadre_id}/review")
async def review_readiness(
    org_code: Annotated[str, Path(max_length=32)],
    post_id: UUID,
    cadre_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    readiness: Annotated[Readiness, Form()],
    reason: Reason,
) -> Response:
    """Review a successor's readiness (changed or confirmed), with the reason; it shows in the history."""
    if not session.may_write:
        raise ScreenError(403, "your role may not review readiness")
    path = f"/teams/{org_code}/posts/{post_id}/successors/{cadre_id}/review"
    body = {"readiness": readiness.value, "reason": reason}
    await console.apis.send("selection", "POST", path, session.access_token, body=body)
    return RedirectResponse("/team?" + urlencode({"unit": org_code}), status_code=303)


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


@router.get("/posts/export")
async def posts_export(console: ConsoleDep, session: SessionDep, under: Unit = None) -> Response:
    """The posts of a subtree today with their holders and successors, as selection writes them (XLSX)."""
    return await stream_export(console, session, "selection", "/posts", {"under": under, "format": "xlsx"})


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
    return console.render(
        request, "nine_box.html", b=found, units=units, under=under or "", tabs=TABS, potentials=list(Potential)
    )


@router.post("/nine-box/potential")
async def rate_potential(
    console: ConsoleDep,
    session: SessionDep,
    cadre_id: Annotated[UUID, Form()],
    cycle_id: Annotated[UUID, Form()],
    cycle: Annotated[str, Form(min_length=1, max_length=100)],
    potential: Annotated[Potential, Form()],
    reason: Reason,
    under: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Rate a graded cadre's potential for the cycle drawn (you are the rater); the 9-box places the cadre."""
    if not session.may_write:
        raise ScreenError(403, "your role may not rate potential")
    body = {"potential": potential.value, "cycle": cycle, "reason": reason}
    await console.apis.send("selection", "POST", f"/cadres/{cadre_id}/potential", session.access_token, body=body)
    back = {"cycle": str(cycle_id)} | ({"under": under} if under else {})
    return RedirectResponse("/nine-box?" + urlencode(back), status_code=303)


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
