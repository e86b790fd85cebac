"""The pool of a subtree: status tabs with counts, filters, pages of 50 over a million cadres, export."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.console.apis import ApiError
from services.console.pages import ConsoleDep, SessionDep

router = APIRouter(include_in_schema=False)

STATUSES = ("in_pool", "retired", "any")
EDUCATION = ("secondary", "college", "bachelor", "master", "doctorate")


Text = Annotated[str | None, Query(max_length=100)]
Age = Annotated[int | None, Query(ge=18, le=100)]


def _filters(
    under: Text = None,
    status: str = "in_pool",
    name: Text = None,
    education: str | None = None,
    has_mentor: str | None = None,
    max_age: Age = None,
) -> dict[str, Any]:
    """The list's filters from the query, an unknown choice read as none (the list and its export alike)."""
    return {
        "under": under or None,
        "status": status if status in STATUSES else "in_pool",
        "name": name or None,
        "education": education if education in EDUCATION else None,
        "has_mentor": has_mentor if has_mentor in {"true", "false"} else None,
        "max_age": max_age,
    }


Filters = Annotated[dict[str, Any], Depends(_filters)]


async def unit_choices(console: ConsoleDep, session: SessionDep, chosen: str | None) -> list[dict[str, Any]]:
    """The units a screen offers to narrow to: two levels below the person's unit, and those below the chosen one.

    Not the whole subtree: a province has hundreds of units, and the page must stay light.
    """
    token = session.access_token
    units: list[dict[str, Any]] = await console.apis.get("registry", "/org-units", token, depth=2)
    if chosen:
        known = {unit["code"] for unit in units}
        units += [u for u in await console.apis.get("registry", "/org-units", token, under=chosen, depth=1)
                  if u["code"] not in known]  # fmt: skip
        units.sort(key=lambda unit: unit["path"])
    return units


@router.get("/")
async def home(request: Request, console: ConsoleDep) -> Response:
    """The pool for a signed-in person (a cadre: their own page); the sign-in page for anyone else."""
    session = console.sealer.session(request.cookies.get("cadre_session"))
    if session is not None:
        return RedirectResponse("/me" if session.role == "cadre" else "/pool", status_code=303)
    return console.render(request, "home.html")


@router.get("/pool")
async def pool(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    filters: Filters,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """One page of 50 cadres of the chosen subtree, with the filters applied (a cadre: their own page)."""
    if session.role == "cadre":
        return RedirectResponse("/me", status_code=303)
    page = await console.apis.get("registry", "/cadres", session.access_token, limit=50, cursor=cursor, **filters)
    units = await unit_choices(console, session, filters["under"])

    def url(**changes: Any) -> str:
        return urlencode({k: v for k, v in {**filters, **changes}.items() if v not in (None, "")})

    return console.render(
        request, "pool.html", page=page, units=units, filters=filters, cursor=cursor, statuses=STATUSES,
        educations=EDUCATION, url=url,
    )  # fmt: skip


@router.get("/pool/counts")
async def counts(request: Request, console: ConsoleDep, session: SessionDep, under: Text = None) -> Response:
    """The status tabs' counts (loaded after the list: counting a province takes longer than a page)."""
    found = await console.apis.get("registry", "/cadres/counts", session.access_token, under=under or None)
    return console.render(request, "pool_counts.html", counts={**found, "any": found["in_pool"] + found["retired"]})


@router.get("/pool/export")
async def export(
    console: ConsoleDep,
    session: SessionDep,
    filters: Filters,
    format: Literal["csv", "xlsx"] = "xlsx",  # noqa: A002 - the query's name
) -> Response:
    """What the list shows (every page of it) as a spreadsheet: the registry's own export, streamed through."""
    return await stream_export(console, session, "registry", "/cadres", {**filters, "format": format})


async def stream_export(
    console: ConsoleDep, session: SessionDep, service: str, path: str, params: dict[str, Any]
) -> Response:
    """A service's own CSV or XLSX export, streamed through to the person."""
    client = console.apis.clients[service]
    outgoing = client.build_request(
        "GET",
        path,
        params={k: v for k, v in params.items() if v not in (None, "")},
        headers={"Authorization": f"Bearer {session.access_token}"},
    )
    answer = await client.send(outgoing, stream=True)
    if answer.is_error:
        await answer.aread()
        await answer.aclose()
        raise ApiError(answer.status_code, answer.text[:200])
    return StreamingResponse(
        answer.aiter_raw(),
        media_type=answer.headers.get("content-type"),
        headers={"Content-Disposition": answer.headers.get("content-disposition", "attachment")},
        background=BackgroundTask(answer.aclose),
    )
