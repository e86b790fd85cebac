"""A cadre: profile, mentor, leader, one merged timeline, hours against the quota, postings, evaluations, what next."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from runtime import clock
from services.console.apis import ApiError
from services.console.pages import ConsoleDep, ScreenError, SessionDep

router = APIRouter(include_in_schema=False)

DIMENSIONS = ("political_integrity", "ability", "diligence", "performance", "probity")


async def optional(call: Any) -> Any:
    """A part of the page from another service; None while that service has not heard of the cadre yet."""
    try:
        return await call
    except ApiError as error:
        if error.status == 404:  # noqa: PLR2004
            return None
        raise


def registry_facts(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """The registry's part of the timeline, from the cadre's profile: nominated, retired (the mentor is shown apart).

    (The full history of changes is the audit service's: its reads are restricted and recorded.)
    """
    facts = [{"when": profile["nominated_at"], "kind": "CadreNominated", "payload": profile}]
    if profile.get("retired_on"):
        facts.append(
            {"when": profile["retired_on"], "kind": "CadreRetired", "payload": {"reason": profile["retired_reason"]}}
        )
    return facts


def timeline(registry: list[dict[str, Any]], training: Any, postings: Any, file: Any) -> list[dict[str, Any]]:
    """Everything that happened to the cadre, from every service, newest first."""
    sources: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("Training", "starts_on", (training or {}).get("programs", [])),
        ("SelfStudy", "studied_on", (training or {}).get("self_study", [])),
        ("Posting", "starts_on", postings or []),
        ("Evaluation", "recorded_at", (file or {}).get("evaluations", [])),
        ("CheckIn", "held_on", (file or {}).get("check_ins", [])),
        ("Reminder", "issued_at", (file or {}).get("reminders", [])),
        ("ExitRecommended", "recommended_at", (file or {}).get("exit_recommendations", [])),
    ]
    entries = list(registry)
    entries += [{"when": item[when], "kind": kind, "payload": item} for kind, when, items in sources for item in items]
    return sorted(entries, key=lambda e: str(e["when"])[:10], reverse=True)


@router.get("/cadres/{cadre_id}")
async def cadre(cadre_id: UUID, request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The cadre's page (404 outside the person's subtree, as the registry answers)."""
    token, apis = session.access_token, console.apis
    profile = await apis.get("registry", f"/cadres/{cadre_id}", token)
    unit = await apis.get("registry", f"/org-units/{profile['org_code']}", token)
    training = await optional(apis.get("training", f"/cadres/{cadre_id}/training-record", token))
    postings = await optional(apis.get("training", f"/cadres/{cadre_id}/postings", token))
    advice = await optional(apis.get("training", f"/cadres/{cadre_id}/recommendation", token))
    file = await optional(apis.get("assessment", f"/cadres/{cadre_id}/file", token))
    year = clock.today().year
    this_year = next((h for h in (training or {}).get("hours_by_year", []) if h["year"] == year), None)
    hours = (this_year["organized"] + this_year["self_study"]) if this_year else 0
    standing = [e for e in (file or {}).get("evaluations", []) if e["superseded_by"] is None]
    people = await apis.get("registry", "/access", token) if session.may_write else []
    return console.render(
        request, "cadre.html", cadre=profile, unit=unit,
        entries=timeline(registry_facts(profile), training, postings, file),
        training=training, postings=postings or [], advice=advice, file=file, hours=hours, year=year,
        latest=standing[-1] if standing else None, dimensions=DIMENSIONS, people=people,
    )  # fmt: skip


def _back(cadre_id: UUID) -> Response:
    return RedirectResponse(f"/cadres/{cadre_id}", status_code=303)


async def _command(console: ConsoleDep, session: SessionDep, service: str, method: str, path: str, body: Any) -> None:
    if not session.may_write:
        raise ScreenError(403, "your role may not change the pool")
    await console.apis.send(service, method, path, session.access_token, body=body)


@router.post("/cadres/{cadre_id}/mentor")
async def mentor(
    cadre_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    user_id: Annotated[str, Form(max_length=64)],
) -> Response:
    """Give the cadre a mentor, one of the people who hold a grant in the person's subtree (the registry's command)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not change the pool")
    people = await console.apis.get("registry", "/access", session.access_token)
    picked = next((p for p in people if p["user_id"] == user_id), None)
    if picked is None:
        raise ScreenError(422, f"{user_id!r} is nobody who holds a grant here: pick the mentor from the list")
    body = {"user_id": user_id, "name": picked["name"]}
    await _command(console, session, "registry", "PUT", f"/cadres/{cadre_id}/mentor", body)
    return _back(cadre_id)


@router.post("/cadres/{cadre_id}/check-in")
async def check_in(
    cadre_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    held_on: Annotated[str, Form()],
    thinking: Annotated[str, Form(max_length=2000)] = "",
    work: Annotated[str, Form(max_length=2000)] = "",
    life: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record a check-in (assessment's command)."""
    body = {"held_on": held_on, "thinking": thinking, "work": work, "life": life}
    await _command(console, session, "assessment", "POST", f"/cadres/{cadre_id}/check-ins", body)
    return _back(cadre_id)


@router.post("/cadres/{cadre_id}/reminder")
async def reminder(
    cadre_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    concern: Annotated[str, Form(min_length=1, max_length=2000)],
    severity: Annotated[str, Form()],
    follow_up_on: Annotated[str, Form()],
) -> Response:
    """Issue a reminder (assessment's command)."""
    body = {"concern": concern, "severity": severity, "follow_up_on": follow_up_on}
    await _command(console, session, "assessment", "POST", f"/cadres/{cadre_id}/reminders", body)
    return _back(cadre_id)


@router.post("/cadres/{cadre_id}/retirement")
async def retire(
    cadre_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    reason: Annotated[str, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
    appointed_to: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Take the cadre out of the pool (the registry's command)."""
    body = {"reason": reason, "note": note, "appointed_to": appointed_to or None}
    await _command(console, session, "registry", "POST", f"/cadres/{cadre_id}/retirement", body)
    return _back(cadre_id)
