"""Structure statistics of a subtree's pool as of a date, its XLSX, and each unit's pool against its target.

Each group of the usual table (情况统计表) is shown as bars drawn by CSS alone, with its numbers.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from runtime import clock
from services.console.apis import ApiError
from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.pool import stream_export, unit_choices

router = APIRouter(include_in_schema=False)

Under = Annotated[str | None, Query(max_length=32)]
On = Annotated[date | None, Query(description="The date of the figures (default: today)")]

GROUPS = (
    ("gender", "Gender"),
    ("age", "Age"),
    ("women_by_age", "Women by age"),
    ("ethnicity", "Ethnicity"),
    ("party", "Party membership"),
    ("party_years", "Years of party membership"),
    ("full_time_education", "Full-time education"),
    ("in_service_education", "In-service education"),
    ("rank", "Rank"),
    ("reserve_kind", "Reserve kind"),
)
"""The groups the screen shows, in the table's order, with their titles (translated in the template)."""


@router.get("/statistics")
async def statistics(
    request: Request, console: ConsoleDep, session: SessionDep, under: Under = None, on: On = None
) -> Response:
    """The figures as of a date, each group as bars with its numbers; the teams' ages; the pool against its target."""
    _not_to_come(on)
    token = session.access_token
    figures = await console.apis.get("registry", "/statistics", token, under=under, on=on.isoformat() if on else None)
    structure = await console.apis.get("registry", "/structure", token, under=under)
    try:
        teams = await console.apis.get("selection", "/team-ages", token, under=under, on=on.isoformat() if on else None)
    except ApiError as error:
        if error.status < 500:  # noqa: PLR2004 - a refusal is the person's to see; an absent service is not
            raise
        teams = None  # selection does not answer: the pool's figures still show
    units = await unit_choices(console, session, under)
    return console.render(
        request,
        "statistics.html",
        f=figures,
        s=structure,
        teams=teams,
        groups=GROUPS,
        units=units,
        under=under or "",
        on=on.isoformat() if on else "",
        today=clock.today().isoformat(),
    )


@router.get("/statistics/export")
async def export(console: ConsoleDep, session: SessionDep, under: Under = None, on: On = None) -> Response:
    """The statistics table as the registry writes it (XLSX, one sheet per level), streamed through."""
    _not_to_come(on)
    params = {"under": under, "on": on.isoformat() if on else None, "format": "xlsx"}
    return await stream_export(console, session, "registry", "/statistics", params)


def _not_to_come(on: date | None) -> None:
    """A day after today has no figures: told as the person's mistake (422), not as a service's failure."""
    if on is not None and on > clock.today():
        msg = f"{on} is after today: there are no figures of it yet"
        raise ScreenError(422, msg)
