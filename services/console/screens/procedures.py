"""The procedures: the board of a subtree, one page per procedure with its next step, opening one, its file.

Everything goes through the selection service's API (`/procedures...`): the board is its
board, a procedure's page is its file (every event as recorded) with the file's check, and
each form is one of its commands. A refusal (4xx) is shown on the page as the service's
reasons, with what was typed kept; nothing is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData, UploadFile

from runtime import clock
from services.console.apis import ApiError
from services.console.pages import Console, ConsoleDep, ScreenError, SessionDep
from services.console.screens.pool import unit_choices
from services.console.session import Session

router = APIRouter(include_in_schema=False)

STEPS = ("opened", "recommendation", "inspection", "decision", "notice", "notice_closed", "concluded", "stopped")
STEP_OF = {
    "ProcedureOpened": "opened",
    "RecommendationRecorded": "recommendation",
    "InspectionRecorded": "inspection",
    "DecisionRecorded": "decision",
    "NoticePublished": "notice",
    "NoticeClosed": "notice_closed",
    "ProcedureConcluded": "concluded",
    "ProcedureStopped": "stopped",
}
"""The event that completes each step (objections are recorded during the notice and move no step)."""
NEXT = {
    "opened": "recommendation",
    "recommendation": "inspection",
    "inspection": "decision",
    "decision": "notice",
    "notice_closed": "outcome",
}
"""The form a procedure at a step offers (at the notice: objections and closing it, see `Procedure.offers`)."""
EDUCATION = ("secondary", "college", "bachelor", "master", "doctorate")
CHOICES = 50
"""Cadres an appointment's form offers at once (a name typed narrows them)."""

Text = Annotated[str | None, Query(max_length=100)]


@dataclass
class Objection:
    """An objection as the file records it."""

    objection_id: str
    received_on: str
    summary: str
    substantiated: bool | None = None
    finding: str = ""


@dataclass
class Procedure:
    """A procedure as its file tells it: what it opened with, where it stands, what it offers next."""

    procedure_id: str
    envelopes: list[dict[str, Any]]
    opened: dict[str, Any]
    step: str
    version: int
    notice: dict[str, Any] | None = None
    objections: list[Objection] = field(default_factory=list)

    @classmethod
    def of(cls, procedure_id: str, envelopes: list[dict[str, Any]]) -> Procedure:
        """Replay the file's events (the service's rules decide; this only reads where it stands)."""
        if not envelopes or envelopes[0]["event_type"] != "ProcedureOpened":
            raise ScreenError(404, f"procedure {procedure_id} not found")
        made = cls(procedure_id, envelopes, envelopes[0]["payload"], "opened", envelopes[-1]["stream_version"])
        for envelope in envelopes:
            kind, payload = envelope["event_type"], envelope["payload"]
            made.step = STEP_OF.get(kind, made.step)
            if kind == "NoticePublished":
                made.notice = payload
            elif kind == "ObjectionRaised":
                made.objections.append(
                    Objection(str(payload["objection_id"]), str(payload["received_on"]), payload["summary"])
                )
            elif kind == "ObjectionConcluded":
                for objection in made.objections:
                    if objection.objection_id == str(payload["objection_id"]):
                        objection.substantiated = bool(payload["substantiated"])
                        objection.finding = payload["finding"]
        return made

    @property
    def finished(self) -> bool:
        """Concluded or stopped: nothing more is recorded."""
        return self.step in {"concluded", "stopped"}

    @property
    def open_objections(self) -> list[Objection]:
        """Objections not yet concluded (each holds the procedure)."""
        return [o for o in self.objections if o.substantiated is None]

    def offers(self, today: date) -> list[str]:
        """The forms offered now: the next step only (and stopping, while it runs)."""
        if self.finished:
            return []
        if self.step == "notice" and self.notice is not None:
            starts, ends = date.fromisoformat(self.notice["starts_on"]), date.fromisoformat(self.notice["ends_on"])
            offered = ["objection"] if starts <= today <= ends else []
            offered += ["conclusion"] if self.open_objections else []
            offered += ["close"] if today > ends and not self.open_objections else []
            return [*offered, "stop"]
        return [NEXT[self.step], "stop"]


async def _names(console: Console, session: Session, codes: set[str]) -> dict[str, str]:
    """Unit names by code (names are shown, codes on hover)."""

    async def one(code: str) -> tuple[str, str]:
        try:
            unit = await console.apis.get("registry", f"/org-units/{code}", session.access_token)
        except ApiError:
            return code, code
        return code, str(unit["name"])

    return dict(await asyncio.gather(*(one(code) for code in sorted(codes))))


async def _people(console: Console, session: Session) -> dict[str, str]:
    """People's names by user id, where the person may read the grants (else the ids are shown)."""
    if not session.may_write:
        return {}
    try:
        people = await console.apis.get("registry", "/access", session.access_token)
    except ApiError:
        return {}
    return {str(p["user_id"]): str(p.get("name") or p["user_id"]) for p in people}


@router.get("/procedures")
async def board(
    request: Request, console: ConsoleDep, session: SessionDep, under: Text = None, finished: str | None = None
) -> Response:
    """Each candidate of the subtree at its step, how long it has been there, and what is due."""
    token = session.access_token
    show_finished = finished == "true"
    rows = await console.apis.get("selection", "/procedures", token, under=under or None, finished=show_finished)
    units = await unit_choices(console, session, under)
    names = {u["code"]: u["name"] for u in units}
    names |= await _names(console, session, {r["org_code"] for r in rows} - set(names))
    return console.render(
        request, "procedures.html", rows=rows, units=units, names=names, under=under or "", finished=show_finished,
    )  # fmt: skip


async def _open_form(
    request: Request,
    console: Console,
    session: Session,
    values: dict[str, str],
    problems: list[str],
    status: int = 200,
) -> Response:
    token = session.access_token
    units = await console.apis.get("registry", "/org-units", token)
    cadre = None
    posts: list[dict[str, Any]] = []
    choices: list[dict[str, Any]] = []
    more = False
    if values.get("kind") == "appointment":
        if values.get("candidate_id"):
            cadre = await console.apis.get("registry", f"/cadres/{values['candidate_id']}", token)
            values.setdefault("org_code", cadre["org_code"])
        else:  # the cadres of the pool the person may choose from, narrowed by a name typed
            found = await console.apis.get(
                "registry", "/cadres", token, status="in_pool", name=values.get("name") or None, limit=CHOICES
            )
            choices, more = found["items"], found["next_cursor"] is not None
        if values.get("org_code"):
            try:
                team = await console.apis.get("selection", f"/teams/{values['org_code']}", token)
            except ApiError as error:
                if error.status != 404:  # noqa: PLR2004 - a unit without a team yet: no post to offer
                    raise
                team = {"posts": []}
            posts = team["posts"]
    return console.render(
        request, "procedure_open.html", status=status, units=units, values=values, problems=problems, cadre=cadre,
        posts=posts, educations=EDUCATION, choices=choices, more=more,
    )  # fmt: skip


@router.get("/procedures/new")
async def open_form(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    kind: str = "entry",
    cadre: uuid.UUID | None = None,
    org_code: Text = None,
    name: Text = None,
) -> Response:
    """Open a procedure: into the pool (the candidate's record), or onto a post for a cadre of the pool.

    An appointment's candidate is chosen among the pool's cadres the person sees (by name), or comes
    from a cadre's page (`cadre`); then its posts are those of the chosen unit's team.
    """
    if not session.may_write:
        raise ScreenError(403, "your role may not open a procedure")
    values = {"kind": "appointment" if kind == "appointment" else "entry"}
    if cadre is not None:
        values["candidate_id"] = str(cadre)
    if name and name.strip():
        values["name"] = name.strip()
    if org_code:
        values["org_code"] = org_code
    return await _open_form(request, console, session, values, [])


OPEN_FIELDS = ("kind", "org_code", "reserve_kind", "full_name", "gender", "birth_date", "education",
               "current_position", "years_of_service", "grassroots_months", "reason", "candidate_id", "post_id",
               "motion_reason")  # fmt: skip


def _number(value: str) -> int | str:
    """A count typed into a form (the service judges what is not one)."""
    return int(value) if value.strip().isdigit() else value


@router.post("/procedures/new")
async def open_procedure(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Open it through the selection service; refused: the form again with the service's reasons."""
    if not session.may_write:
        raise ScreenError(403, "your role may not open a procedure")
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in OPEN_FIELDS}
    body: dict[str, Any] = {"kind": values["kind"], "org_code": values["org_code"], "reason": values["reason"]}
    try:
        if values["kind"] == "appointment":
            posts = await _posts(console, session, values["org_code"])
            if values["candidate_id"]:  # left out when empty: the service names what is missing
                body["candidate_id"] = values["candidate_id"]
            if values["post_id"]:
                body["motion"] = {"post_id": values["post_id"], "post_title": posts.get(values["post_id"], ""),
                                  "reason": values["motion_reason"]}  # fmt: skip
                document = await _document(form, "motion_document")
                if document is not None:
                    body["motion"]["document"] = document
        else:
            if values["reserve_kind"]:
                body["reserve_kind"] = values["reserve_kind"]
            body["candidate"] = {
                "full_name": values["full_name"], "gender": values["gender"], "birth_date": values["birth_date"],
                "education": values["education"], "current_position": values["current_position"],
                "years_of_service": _number(values["years_of_service"]),
                "grassroots_months": _number(values["grassroots_months"] or "0"),
            }  # fmt: skip
        accepted = await console.apis.send("selection", "POST", "/procedures", session.access_token, body=body)
    except ApiError as error:
        if not 400 <= error.status < 500:  # noqa: PLR2004 - a refusal is shown; a failure is the error page
            raise
        return await _open_form(request, console, session, values, [error.detail, *error.violations], error.status)
    procedure_id = str(accepted["stream_id"]).removeprefix("procedure-")
    return RedirectResponse(f"/procedures/{procedure_id}", status_code=303)


async def _posts(console: Console, session: Session, org_code: str) -> dict[str, str]:
    """The posts of a unit's team: id → title."""
    if not org_code:
        return {}
    try:
        team = await console.apis.get("selection", f"/teams/{org_code}", session.access_token)
    except ApiError as error:
        if error.status != 404:  # noqa: PLR2004
            raise
        return {}
    return {str(p["post_id"]): str(p["title"]) for p in team["posts"]}


async def _load(console: Console, session: Session, procedure_id: uuid.UUID) -> tuple[Procedure, dict[str, Any]]:
    """The procedure's file and the file's check (404 outside the person's subtree, as the service answers)."""
    token = session.access_token
    envelopes, verified = await asyncio.gather(
        console.apis.get("selection", f"/procedures/{procedure_id}/file", token),
        console.apis.get("selection", f"/procedures/{procedure_id}/verify", token),
    )
    return Procedure.of(str(procedure_id), envelopes), verified


async def _page(
    request: Request,
    console: Console,
    session: Session,
    procedure_id: uuid.UUID,
    *,
    template: str = "procedure.html",
    problems: list[str] | None = None,
    values: dict[str, str] | None = None,
    tried: str = "",
    status: int = 200,
) -> Response:
    procedure, verified = await _load(console, session, procedure_id)
    today = clock.today()
    names = await _names(console, session, {procedure.opened["org_code"]})
    return console.render(
        request, template, status=status, procedure=procedure, verified=verified, unit_names=names,
        people=await _people(console, session), offers=procedure.offers(today) if session.may_write else [],
        today=today, problems=problems or [], values=values or {}, tried=tried, steps=STEPS,
    )  # fmt: skip


@router.get("/procedures/{procedure_id}")
async def procedure_page(
    procedure_id: uuid.UUID, request: Request, console: ConsoleDep, session: SessionDep
) -> Response:
    """Every step as recorded (tallies, documents by hash, actor, time), the file's check, and the next step's form."""
    return await _page(request, console, session, procedure_id)


@router.get("/procedures/{procedure_id}/file")
async def printable(procedure_id: uuid.UUID, request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The procedure's file laid out to print, with the outcome of its check."""
    return await _page(request, console, session, procedure_id, template="procedure_file.html")


async def _document(form: FormData, name: str) -> dict[str, str] | None:
    """A document of a form: its title and the SHA-256 of the file given (or of the hash typed); None if neither."""
    title = str(form.get(f"{name}_title") or "").strip()
    upload = form.get(f"{name}_file")
    digest = str(form.get(f"{name}_sha256") or "").strip().lower()
    if isinstance(upload, UploadFile) and upload.filename:
        sha = hashlib.sha256()  # only the hash leaves the console; the file stays with its owner
        while chunk := await upload.read(1 << 16):  # a request's size is the console's limit (runtime.guard)
            sha.update(chunk)
        digest = sha.hexdigest()
        title = title or upload.filename
    if not title and not digest:
        return None
    return {"title": title, "sha256": digest}


def _documents(*found: dict[str, str] | None) -> list[dict[str, str]]:
    return [d for d in found if d is not None]


async def _body(step: str, form: FormData, procedure: Procedure) -> tuple[str, dict[str, Any]]:  # noqa: C901, PLR0911 - one case per form
    """The service's path (under the procedure) and JSON body for a step's form."""
    v = {key: str(value).strip() for key, value in form.items() if isinstance(value, str)}
    if step == "recommendation":
        meeting: dict[str, Any] = {name: _number(v.get(name, "")) for name in
                   ("eligible", "present", "ballots_cast", "valid_ballots", "invalid_ballots")}  # fmt: skip
        tally = [{"candidate_name": procedure.opened["candidate_name"], "votes": _number(v.get("votes", ""))}]
        tally += [{"candidate_name": v.get(f"other_name_{i}", ""), "votes": _number(v.get(f"other_votes_{i}", ""))}
                  for i in range(1, 4) if v.get(f"other_name_{i}")]  # fmt: skip
        meeting |= {"held_on": v.get("held_on", ""), "seats": _number(v.get("seats") or "1"), "tally": tally}
        talks = {"interviewed": _number(v.get("interviewed", "")), "in_favour": _number(v.get("in_favour", ""))}
        documents = _documents(await _document(form, "record"))
        return "recommendation", {"meeting": meeting, "talks": talks, "documents": documents}
    if step == "inspection":
        team = [name.strip() for name in v.get("team", "").replace("\uff0c", ",").replace("\n", ",").split(",")]
        return "inspection", {
            "team": [name for name in team if name], "interviewed": _number(v.get("interviewed", "")),
            "report": await _document(form, "report"), "conclusion": v.get("conclusion", ""),
            "summary": v.get("summary", ""), "clean_record": await _document(form, "clean_record"),
        }  # fmt: skip
    if step == "decision":
        counts = {name: _number(v.get(name, "")) for name in
                  ("members", "present", "votes_for", "votes_against", "abstentions")}  # fmt: skip
        return "decision", {**counts, "held_on": v.get("held_on", ""), "minutes": await _document(form, "minutes")}
    if step == "notice":
        body: dict[str, Any] = {"where": v.get("where", ""), "document": await _document(form, "notice")}
        if v.get("starts_on"):
            body["starts_on"] = v["starts_on"]
        if v.get("working_days"):
            body["working_days"] = _number(v["working_days"])
        return "notice", body
    if step == "objection":
        return "objections", {"summary": v.get("summary", ""), "document": await _document(form, "objection")}
    if step == "conclusion":
        return f"objections/{v.get('objection_id', '')}/conclusion", {
            "substantiated": v.get("substantiated") == "true", "finding": v.get("finding", ""),
            "document": await _document(form, "finding"),
        }  # fmt: skip
    if step == "close":
        return "notice/close", {}
    if step == "outcome":
        return "outcome", {"document_number": v.get("document_number", ""), "document_date": v.get("document_date", "")}
    return "stop", {"reason": v.get("reason", "")}


STEP_FORMS = frozenset({"recommendation", "inspection", "decision", "notice", "objection", "conclusion", "close",
                        "outcome", "stop"})  # fmt: skip


@router.post("/procedures/{procedure_id}/{step}")
async def take_step(
    procedure_id: uuid.UUID, step: str, request: Request, console: ConsoleDep, session: SessionDep
) -> Response:
    """One step through the service, based on the version the page showed; refused: the page with the reasons."""
    if step not in STEP_FORMS:
        raise ScreenError(404, f"no step {step!r}")
    if not session.may_write:
        raise ScreenError(403, "your role may not record a procedure's steps")
    form = await request.form()
    envelopes = await console.apis.get("selection", f"/procedures/{procedure_id}/file", session.access_token)
    procedure = Procedure.of(str(procedure_id), envelopes)
    values = {key: str(value) for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}
    version = str(form.get("version") or "")
    headers = {"If-Match": f'"{version}"'} if version.isdigit() else None
    try:
        path, body = await _body(step, form, procedure)
        await console.apis.send(
            "selection", "POST", f"/procedures/{procedure_id}/{path}", session.access_token, body=body, headers=headers
        )
    except ApiError as error:
        if not 400 <= error.status < 500:  # noqa: PLR2004 - a refusal is shown; a failure is the error page
            raise
        return await _page(
            request, console, session, procedure_id, problems=[error.detail, *error.violations], values=values,
            tried=step, status=error.status,
        )  # fmt: skip
    return RedirectResponse(f"/procedures/{procedure_id}#steps", status_code=303)
