"""The procedures' HTTP API: each step a command, the board per unit and subtree, the file and its check.

The selection service mounts `router`, folds `procedure_board.ProcedureBoard` inline and
creates `procedure_board.SCHEMA` beside the registry's view (`runtime.registry_view`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from contracts.envelope import Envelope, OrgCode
from runtime import clock
from runtime.auth import CurrentActor, subtree_root
from runtime.commands import Accepted
from runtime.context import CommandContext
from runtime.db import in_subtree_sql, row_view
from runtime.http import Change, Context, Create, Under
from runtime.service import ActorDB, given
from services.selection import procedure_file
from services.selection.procedure_commands import (
    AdjustCalendar,
    Conclude,
    ConcludeObjection,
    OpenProcedure,
    ProcedureCommands,
    PublishNotice,
    RaiseObjection,
    RecordDecision,
    RecordInspection,
    RecordRecommendation,
    SetRules,
    StopProcedure,
)
from services.selection.procedures import Due, due_at_notice

router = APIRouter()


Commands = Annotated[ProcedureCommands, given(ProcedureCommands)]


@router.post("/procedures", status_code=status.HTTP_201_CREATED, tags=["procedures"])
async def open_procedure(body: OpenProcedure, act: Create, cmd: Commands) -> Accepted:
    """Open a procedure into the pool (with the candidate) or onto a post (with the motion)."""
    return act.tagged(await cmd.open(act.ctx, body))


@router.post("/procedures/{procedure_id}/recommendation", tags=["procedures"])
async def recommend(procedure_id: UUID, body: RecordRecommendation, act: Change, cmd: Commands) -> Accepted:
    """The democratic recommendation: the meeting's ballot and tally, the talks (below the threshold: stopped)."""
    return act.tagged(await cmd.recommend(act.ctx, procedure_id, body, act.expected))


@router.post("/procedures/{procedure_id}/inspection", tags=["procedures"])
async def inspect(procedure_id: UUID, body: RecordInspection, act: Change, cmd: Commands) -> Accepted:
    """The organizational inspection: team, interviews, report, conclusion, clean-record letter."""
    return act.tagged(await cmd.inspect(act.ctx, procedure_id, body, act.expected))


@router.post("/procedures/{procedure_id}/decision", tags=["procedures"])
async def decide(procedure_id: UUID, body: RecordDecision, act: Change, cmd: Commands) -> Accepted:
    """The committee's collective decision (refused without a quorum; a vote against stops)."""
    return act.tagged(await cmd.decide(act.ctx, procedure_id, body, act.expected))


@router.post("/procedures/{procedure_id}/notice", tags=["procedures"])
async def publish_notice(procedure_id: UUID, body: PublishNotice, act: Change, cmd: Commands) -> Accepted:
    """Publish the public notice for its working days on the unit's calendar."""
    return act.tagged(await cmd.publish_notice(act.ctx, procedure_id, body, act.expected))


@router.post("/procedures/{procedure_id}/objections", status_code=status.HTTP_201_CREATED, tags=["procedures"])
async def raise_objection(procedure_id: UUID, body: RaiseObjection, act: Create, cmd: Commands) -> Accepted:
    """Record an objection received during the notice period (it holds the procedure until concluded)."""
    return act.tagged(await cmd.raise_objection(act.ctx, procedure_id, body))


@router.post("/procedures/{procedure_id}/objections/{objection_id}/conclusion", tags=["procedures"])
async def conclude_objection(
    procedure_id: UUID, objection_id: UUID, body: ConcludeObjection, act: Create, cmd: Commands
) -> Accepted:
    """Conclude an objection: substantiated (the procedure stops) or not."""
    return act.tagged(await cmd.conclude_objection(act.ctx, procedure_id, objection_id, body))


@router.post("/procedures/{procedure_id}/notice/close", tags=["procedures"])
async def close_notice(procedure_id: UUID, act: Change, cmd: Commands) -> Accepted:
    """Close the notice: not before its period ended, not while an objection is open."""
    return act.tagged(await cmd.close_notice(act.ctx, procedure_id, act.expected))


@router.post("/procedures/{procedure_id}/outcome", tags=["procedures"])
async def conclude(procedure_id: UUID, body: Conclude, act: Change, cmd: Commands) -> Accepted:
    """The outcome by its document: admitted into the pool, or appointed to the post."""
    return act.tagged(await cmd.conclude(act.ctx, procedure_id, body, act.expected))


@router.post("/procedures/{procedure_id}/stop", tags=["procedures"])
async def stop(procedure_id: UUID, body: StopProcedure, act: Create, cmd: Commands) -> Accepted:
    """Stop a procedure at its step, with the reason."""
    return act.tagged(await cmd.stop(act.ctx, procedure_id, body))


@router.put("/procedure-rules/{org_code}", tags=["procedures"])
async def set_rules(org_code: OrgCode, body: SetRules, act: Create, cmd: Commands) -> Accepted:
    """Set the rules of a unit's procedures and its subtree's (open procedures keep the rules they opened with)."""
    return act.tagged(await cmd.set_rules(act.ctx, org_code, body))


@router.post("/calendar/{org_code}/adjustments", status_code=status.HTTP_201_CREATED, tags=["procedures"])
async def adjust_calendar(org_code: OrgCode, body: AdjustCalendar, act: Create, cmd: Commands) -> Accepted:
    """Record a day off or a working day of a unit and its subtree, beside the public holidays."""
    return act.tagged(await cmd.adjust_calendar(act.ctx, org_code, body))


class BoardRow(BaseModel):
    """A procedure on the board: its candidate, its step and since when, and what is due."""

    procedure_id: UUID
    kind: str
    org_code: OrgCode
    org_path: str
    candidate_id: UUID
    candidate_name: str
    reserve_kind: str | None
    post_title: str | None
    step: str
    since: datetime
    days_at_step: int
    notice_ends_on: date | None
    stopped_at: str | None
    stop_reason: str | None
    due: list[Due]


@router.get("/procedures", tags=["procedures"])
async def board(
    actor: CurrentActor,
    reads: ActorDB,
    under: Under = None,
    finished: Annotated[bool, Query(description="Include concluded and stopped procedures")] = False,
) -> list[BoardRow]:
    """The board of a unit and its subtree: each candidate at its step, how long, and what is due."""
    root = await subtree_root(reads, actor, under)
    where = in_subtree_sql("p.org_path", "$1")
    rows = await reads.fetch(
        "SELECT p.*, coalesce(array_agg(o.objection_id) FILTER (WHERE o.objection_id IS NOT NULL), '{}') AS open_ids,"  # noqa: S608 - fixed clauses, values bound
        " coalesce(array_agg(o.received_on) FILTER (WHERE o.objection_id IS NOT NULL), '{}') AS open_days"
        " FROM procedures p LEFT JOIN procedure_objections o"
        " ON o.procedure_id = p.procedure_id AND o.substantiated IS NULL"
        f" WHERE {where} AND ($2 OR p.step NOT IN ('concluded', 'stopped'))"
        " GROUP BY p.procedure_id ORDER BY p.org_path, p.step_since",
        root,
        finished,
    )
    today = clock.today()
    return [
        row_view(
            BoardRow,
            r,
            since=r["step_since"],
            days_at_step=(today - clock.date_of(r["step_since"])).days,
            due=(
                due_at_notice(
                    r["notice_ends_on"],
                    list(zip(r["open_ids"], r["open_days"], strict=True)),
                    r["objection_due_days"],
                    today,
                )
                if r["step"] == "notice"
                else []
            ),
        )
        for r in rows
    ]


class Verified(BaseModel):
    """The outcome of checking a procedure's file."""

    procedure_id: UUID
    events: int
    ok: bool
    problems: list[str]


async def _file(
    ctx: CommandContext, cmd: ProcedureCommands, procedure_id: UUID
) -> tuple[list[Envelope], procedure_file.Check]:
    """The procedure's envelopes (404 outside the actor's subtree) and their check against the chain."""
    await cmd.load(ctx, procedure_id)
    envelopes, successors, head = await cmd.file(procedure_id)
    return envelopes, procedure_file.check(envelopes, successors, head)


@router.get("/procedures/{procedure_id}/verify", tags=["procedures"])
async def verify(procedure_id: UUID, ctx: Context, cmd: Commands) -> Verified:
    """Check the procedure's file: each event's hash, its versions, its links in the service's chain."""
    _, result = await _file(ctx, cmd, procedure_id)
    return Verified(procedure_id=procedure_id, events=result.events, ok=result.ok, problems=list(result.problems))


@router.get("/procedures/{procedure_id}/file", tags=["procedures"], response_model=None)
async def file(
    procedure_id: UUID,
    ctx: Context,
    cmd: Commands,
    format: Annotated[Literal["json", "html"], Query()] = "json",  # noqa: A002 - the parameter's public name
    lang: Annotated[Literal["zh", "en"], Query()] = "zh",
) -> Response | list[Envelope]:
    """The procedure's file: every event as recorded (JSON), or a page to print with the outcome of its check."""
    envelopes, result = await _file(ctx, cmd, procedure_id)
    if format == "html":
        page = procedure_file.printable(envelopes, result, clock.current(), lang)
        return Response(page, media_type="text/html; charset=utf-8")
    return envelopes
