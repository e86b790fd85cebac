"""Assessment: cycles and their progress, entering evaluations, grade distribution by level, the exit queue."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.cadre import DIMENSIONS

router = APIRouter(include_in_schema=False)
GRADES = ("excellent", "competent", "basically_competent", "incompetent")


@router.get("/assessment")
async def assessment(
    request: Request, console: ConsoleDep, session: SessionDep, cycle: Annotated[UUID | None, Query()] = None
) -> Response:
    """Cycles, the chosen one's progress, grades by level, and the exit queue."""
    token, apis = session.access_token, console.apis
    cycles = await apis.get("assessment", "/cycles", token)
    chosen = cycle or (cycles[0]["cycle_id"] if cycles else None)
    progress = await apis.get("assessment", f"/cycles/{chosen}/progress", token) if chosen else None
    due: list[dict[str, str]] = []
    if progress and session.may_write:
        names = {}
        for cadre_id in progress["not_yet_evaluated"][:50]:
            names[cadre_id] = (await apis.get("registry", f"/cadres/{cadre_id}", token))["full_name"]
        due = [{"cadre_id": k, "full_name": v} for k, v in names.items()]
    grades = await apis.get("assessment", "/grade-distribution", token, cycle_id=chosen)
    exits = await apis.get("assessment", "/exit-queue", token)
    return console.render(
        request, "assessment.html", cycles=cycles, chosen=chosen, progress=progress, grades=grades, exits=exits,
        due=due, grade_names=GRADES, dimensions=DIMENSIONS,
    )  # fmt: skip


@router.post("/assessment/evaluations")
async def evaluate(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    cycle_id: Annotated[UUID, Form()],
    cadre_id: Annotated[UUID, Form()],
    grade: Annotated[str, Form()],
    evaluator_name: Annotated[str, Form(max_length=100)],
) -> Response:
    """Record an evaluation through assessment's API."""
    if not session.may_write:
        raise ScreenError(403, "your role may not evaluate")
    submitted = await request.form()
    scores = {d: int(str(submitted.get(d) or 0)) for d in DIMENSIONS}
    body = {"cycle_id": str(cycle_id), "grade": grade, "scores": scores, "evaluator_name": evaluator_name}
    await console.apis.send("assessment", "POST", f"/cadres/{cadre_id}/evaluations", session.access_token, body=body)
    return RedirectResponse(f"/assessment?cycle={cycle_id}", status_code=303)


@router.post("/assessment/exits/{cadre_id}/{recommendation_id}/rejection")
async def reject_exit(
    cadre_id: UUID,
    recommendation_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    """Decide against an exit recommendation through assessment's API: the cadre stays in the pool."""
    if not session.may_write:
        raise ScreenError(403, "your role may not decide exits")
    path = f"/cadres/{cadre_id}/exit-recommendations/{recommendation_id}/rejection"
    await console.apis.send("assessment", "POST", path, session.access_token, body={"reason": reason})
    return RedirectResponse("/assessment", status_code=303)


@router.post("/assessment/exits/{cadre_id}")
async def confirm_exit(
    cadre_id: UUID, console: ConsoleDep, session: SessionDep, note: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    """Confirm an exit recommendation: the registry takes the cadre out of the pool (eliminated by assessment)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not confirm exits")
    body = {"reason": "eliminated_by_assessment", "note": note}
    await console.apis.send("registry", "POST", f"/cadres/{cadre_id}/retirement", session.access_token, body=body)
    return RedirectResponse("/assessment", status_code=303)
