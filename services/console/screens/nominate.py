"""Nomination: a form that shows which entry rule passes or fails, and why, before anything is recorded."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from services.console.apis import ApiError
from services.console.pages import ConsoleDep, ScreenError, SessionDep

router = APIRouter(include_in_schema=False)

FIELDS = ("org_code", "full_name", "gender", "birth_date", "education", "current_position", "years_of_service",
          "grassroots_months", "reason")  # fmt: skip


@router.get("/nominate")
async def form(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The nomination form (organizers only: nobody else is offered it)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not nominate")
    units = await console.apis.get("registry", "/org-units", session.access_token)
    return console.render(request, "nominate.html", units=units, values={}, checks=None, problems=[])


@router.post("/nominate/check")
async def check(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    org_code: Annotated[str, Form()] = "",
    birth_date: Annotated[str, Form()] = "",
    education: Annotated[str, Form()] = "",
    years_of_service: Annotated[str, Form()] = "",
) -> Response:
    """The entry rules applied to what the form holds so far (htmx swaps this in as the person types)."""
    checks = None
    if org_code and birth_date and education and years_of_service.isdigit():
        body = {"org_code": org_code, "birth_date": birth_date, "education": education,
                "years_of_service": int(years_of_service)}  # fmt: skip
        try:
            checks = await console.apis.send("registry", "POST", "/entry-checks", session.access_token, body=body)
        except ApiError as error:
            if error.status != 422:  # noqa: PLR2004 - an incomplete form: no verdict yet
                raise
    return console.render(request, "entry_checks.html", checks=checks)


@router.post("/nominate")
async def nominate(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Nominate through the registry's API; on refusal the form again, with the rules and the reason."""
    if not session.may_write:
        raise ScreenError(403, "your role may not nominate")
    submitted = await request.form()
    values = {name: str(submitted.get(name) or "") for name in FIELDS}
    body: dict[str, object] = {**values, "cadre_id": str(uuid.uuid4())}
    for number in ("years_of_service", "grassroots_months"):
        body[number] = int(values[number]) if values[number].isdigit() else values[number]
    try:
        accepted = await console.apis.send("registry", "POST", "/cadres", session.access_token, body=body)
    except ApiError as error:
        if error.status not in {409, 422}:
            raise
        units = await console.apis.get("registry", "/org-units", session.access_token)
        return console.render(
            request, "nominate.html", status=error.status, units=units, values=values, checks=None,
            problems=[error.detail, *error.violations],
        )  # fmt: skip
    cadre_id = accepted["stream_id"].removeprefix("cadre-")
    return RedirectResponse(f"/cadres/{cadre_id}", status_code=303)
