"""Pages of their own: the cadre's own page (their record, self-study they report) and the leader's page.

A cadre signs in with their own grant (role `cadre`, ADR 0028): the services answer them about
themselves only, so the page asks with the cadre's id (the grant's user) and nothing else.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from runtime import clock
from services.console.pages import ConsoleDep, ScreenError, SessionDep
from services.console.screens.cadre import optional

router = APIRouter(include_in_schema=False)

EVIDENCE_MAX_BYTES = 20 * 1024 * 1024
"""The largest evidence document the console hashes (it keeps only its name and SHA-256, never the file)."""
KINDS = ("reading", "online_course", "lecture", "research")


def hours_of(training: dict[str, Any] | None, year: int) -> int:
    """Hours that count in `year`: organized training and self-study (logged, or reported and confirmed)."""
    found = next((h for h in (training or {}).get("hours_by_year", []) if h["year"] == year), None)
    return int(found["organized"] + found["self_study"]) if found else 0


@router.get("/me")
async def me(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The signed-in cadre's own page: record, postings, hours against the quota, what is due, self-study."""
    if session.role != "cadre":
        return RedirectResponse("/pool", status_code=303)
    token, apis, cadre_id = session.access_token, console.apis, session.user
    profile = await apis.get("registry", f"/cadres/{cadre_id}", token)
    training = await optional(apis.get("training", f"/cadres/{cadre_id}/training-record", token))
    postings = await optional(apis.get("training", f"/cadres/{cadre_id}/postings", token)) or []
    advice = await optional(apis.get("training", f"/cadres/{cadre_id}/recommendation", token))
    today = clock.today()
    hours = hours_of(training, today.year)
    quota = (training or {}).get("yearly_hours_quota", 0)
    reports = (training or {}).get("reports", [])
    waiting = [r for r in reports if r["status"] == "reported"]
    current = next((p for p in postings if p["ended_on"] is None), None)
    return console.render(
        request, "me.html", cadre=profile, training=training, postings=postings, advice=advice, hours=hours,
        quota=quota, behind=max(quota - hours, 0), waiting=waiting, reports=reports, current=current,
        today=today, kinds=KINDS,
    )  # fmt: skip


@router.post("/me/self-study")
async def report_self_study(
    console: ConsoleDep,
    session: SessionDep,
    topic: Annotated[str, Form(min_length=1, max_length=200)],
    kind: Annotated[str, Form()],
    studied_on: Annotated[str, Form(max_length=10)],
    hours: Annotated[int, Form(ge=1, le=2000)],
    evidence: Annotated[UploadFile, File()],
) -> Response:
    """The cadre reports self-study: the evidence document is hashed here and only its name and SHA-256 are sent."""
    if session.role != "cadre":
        raise ScreenError(403, "only a cadre reports their own self-study")
    digest, size = hashlib.sha256(), 0
    while chunk := await evidence.read(1 << 16):
        size += len(chunk)
        if size > EVIDENCE_MAX_BYTES:
            raise ScreenError(413, "the evidence document is larger than 20 MB")
        digest.update(chunk)
    name = (evidence.filename or "").strip()
    if size == 0 or not name:
        raise ScreenError(422, "attach the evidence document (a certificate, notes)")
    body = {
        "entry_id": str(uuid.uuid4()),
        "kind": kind,
        "topic": topic,
        "studied_on": studied_on,
        "hours": hours,
        "evidence_name": name[-100:],
        "evidence_sha256": digest.hexdigest(),
    }
    await console.apis.send(
        "training", "POST", f"/cadres/{session.user}/self-study-reports", session.access_token, body=body
    )
    return RedirectResponse("/me", status_code=303)


def _back(next_page: str, cadre_id: UUID) -> Response:
    target = next_page if next_page in {"/due", "/leader"} else f"/cadres/{cadre_id}"
    return RedirectResponse(target, status_code=303)


@router.post("/cadres/{cadre_id}/self-study/{entry_id}/confirmation")
async def confirm(
    cadre_id: UUID,
    entry_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    next: Annotated[str, Form()] = "",  # noqa: A002
) -> Response:
    """An organizer confirms a reported self-study: its hours count from now on (training's command)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not change the pool")
    path = f"/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation"
    await console.apis.send("training", "POST", path, session.access_token)
    return _back(next, cadre_id)


@router.post("/cadres/{cadre_id}/self-study/{entry_id}/rejection")
async def reject(
    cadre_id: UUID,
    entry_id: UUID,
    console: ConsoleDep,
    session: SessionDep,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    next: Annotated[str, Form()] = "",  # noqa: A002
) -> Response:
    """An organizer rejects a reported self-study, saying why (training's command)."""
    if not session.may_write:
        raise ScreenError(403, "your role may not change the pool")
    path = f"/cadres/{cadre_id}/self-study-reports/{entry_id}/rejection"
    await console.apis.send("training", "POST", path, session.access_token, body={"reason": reason})
    return _back(next, cadre_id)


@router.get("/leader")
async def leader(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The leader's page: the unit's reserve cadres by mentor, and each mentor's overdue items."""
    if session.role == "cadre":
        return RedirectResponse("/me", status_code=303)
    token, apis = session.access_token, console.apis
    cadres: list[dict[str, Any]] = []
    cursor = None
    while len(cadres) < 2000:  # noqa: PLR2004 - a unit's pool; a province uses the pool screen
        page = await apis.get("registry", "/cadres", token, limit=500, cursor=cursor)
        cadres += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    overdue = {o["cadre_id"]: o for o in await apis.get("assessment", "/overdue-check-ins", token)}
    reminders: dict[str, int] = defaultdict(int)
    for reminder in await apis.get("assessment", "/reminders", token):
        reminders[reminder["cadre_id"]] += 1
    behind = {b["cadre_id"]: b for b in await apis.get("training", "/behind-quota", token, limit=1000)}
    duties = {d["mentor_user"]: d for d in await apis.get("assessment", "/responsibility", token)}
    by_mentor: dict[str, dict[str, Any]] = {}
    for cadre in cadres:
        mentor = cadre.get("mentor") or {}
        key = mentor.get("user_id") or ""
        group = by_mentor.setdefault(
            key, {"user": key, "name": mentor.get("name") or "", "duty": duties.get(key), "cadres": []}
        )
        cid = str(cadre["cadre_id"])
        group["cadres"].append(
            {
                **cadre,
                "overdue": overdue.get(cid),
                "reminders": reminders.get(cid, 0),
                "behind": behind.get(cid),
            }
        )
    groups = sorted(by_mentor.values(), key=lambda g: (g["user"] == "", g["name"]))
    return console.render(
        request, "leader.html", groups=groups, count=len(cadres), overdue=len(overdue),
        reminders=sum(reminders.values()), behind=len(behind), today=clock.today(),
    )  # fmt: skip
