"""Assessment's HTTP API: cycles, evaluations, check-ins, reminders, and the pool's standing."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from runtime.auth import CurrentActor, can_write, subtree_root
from runtime.commands import Accepted
from runtime.export import Table, table_or_rows
from runtime.http import Change, Context, Create, Under
from runtime.service import ServicePool, given, scoped
from services.assessment.commands import (
    AssessmentCommands,
    CheckIn,
    Evaluate,
    IssueReminder,
    OpenCycle,
    RejectExit,
    ResolveReminder,
)
from services.assessment.queries import (
    AssessmentQueries,
    CadreFileView,
    CycleProgress,
    CycleView,
    ExitCase,
    LevelGrades,
    Mentee,
    MentorDuty,
    OverdueCheckIn,
    Ranked,
    ReminderView,
    Shortfall,
)
from services.assessment.rules import SweepPolicy

router = APIRouter()


Commands = Annotated[AssessmentCommands, given(AssessmentCommands)]
Queries = Annotated[AssessmentQueries, scoped(AssessmentQueries)]
Policy = Annotated[SweepPolicy, given(SweepPolicy)]


@router.post("/cycles", status_code=status.HTTP_201_CREATED, tags=["cycles"])
async def open_cycle(body: OpenCycle, act: Create, cmd: Commands) -> Accepted:
    """Open an assessment cycle (annual, mid-year or ad hoc) over a subtree."""
    return act.tagged(await cmd.open_cycle(act.ctx, body))


@router.post("/cycles/{cycle_id}/close", tags=["cycles"])
async def close_cycle(cycle_id: UUID, act: Change, cmd: Commands) -> Accepted:
    """Close a cycle: no evaluation is recorded in it afterwards."""
    return act.tagged(await cmd.close_cycle(act.ctx, cycle_id, act.expected))


@router.get("/cycles/{cycle_id}/progress", tags=["cycles"])
async def cycle_progress(cycle_id: UUID, actor: CurrentActor, reads: Queries) -> CycleProgress:
    """Evaluated against due (the cadres in the pool of the cycle's subtree)."""
    return await reads.cycle_progress(actor, cycle_id)


@router.post("/cadres/{cadre_id}/evaluations", status_code=status.HTTP_201_CREATED, tags=["cadres"])
async def evaluate(cadre_id: UUID, body: Evaluate, act: Change, cmd: Commands) -> Accepted:
    """Record an evaluation (one per cycle; a correction names the one it supersedes)."""
    return act.tagged(await cmd.evaluate(act.ctx, cadre_id, body, act.expected))


@router.post("/cadres/{cadre_id}/check-ins", status_code=status.HTTP_201_CREATED, tags=["cadres"])
async def check_in(cadre_id: UUID, body: CheckIn, act: Create, cmd: Commands) -> Accepted:
    """Record a check-in about the cadre's thinking, work and life."""
    return act.tagged(await cmd.check_in(act.ctx, cadre_id, body))


@router.post("/cadres/{cadre_id}/reminders", status_code=status.HTTP_201_CREATED, tags=["reminders"])
async def issue_reminder(cadre_id: UUID, body: IssueReminder, act: Create, cmd: Commands) -> Accepted:
    """Point out a problem showing signs or tendencies."""
    return act.tagged(await cmd.issue_reminder(act.ctx, cadre_id, body))


@router.post("/cadres/{cadre_id}/reminders/{reminder_id}/resolution", tags=["reminders"])
async def resolve_reminder(
    cadre_id: UUID, reminder_id: UUID, body: ResolveReminder, act: Create, cmd: Commands
) -> Accepted:
    """Resolve a reminder after its follow-up."""
    return act.tagged(await cmd.resolve_reminder(act.ctx, cadre_id, reminder_id, body))


@router.post("/cadres/{cadre_id}/exit-recommendations/{recommendation_id}/rejection", tags=["pool"])
async def reject_exit(
    cadre_id: UUID, recommendation_id: UUID, body: RejectExit, act: Create, cmd: Commands
) -> Accepted:
    """Decide against an exit recommendation, with the reason (confirming one is the registry's retirement)."""
    return act.tagged(await cmd.reject_exit(act.ctx, cadre_id, recommendation_id, body))


class SweepResult(BaseModel):
    """What a sweep of the reminder rules raised."""

    root: str
    reminders_raised: int


@router.post("/sweeps", tags=["reminders"])
async def sweep(ctx: Context, cmd: Commands, pool: ServicePool, under: Under = None) -> SweepResult:
    """Run the periodic reminder rules (overdue check-ins, no training hours) over a subtree now."""
    can_write(ctx.actor)
    root = await subtree_root(pool, ctx.actor, under)
    return SweepResult(root=root, reminders_raised=await cmd.sweep(ctx, root))


@router.get("/cadres/{cadre_id}/file", tags=["cadres"])
async def cadre_file(cadre_id: UUID, actor: CurrentActor, reads: Queries) -> CadreFileView:
    """Grades over time, dimension scores, reminders, check-ins and exit recommendations."""
    return await reads.file(actor, cadre_id)


@router.get("/ranking", tags=["pool"], response_model=list[Ranked])
async def ranking(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Ranked] | Response:
    """The pool of a subtree, best first (scoring in docs/assessment.md)."""
    return table_or_rows(table, await reads.ranking(actor, under, limit), filename="ranking")


@router.get("/reminders", tags=["reminders"], response_model=list[ReminderView])
async def open_reminders(
    actor: CurrentActor, reads: Queries, table: Table, under: Under = None
) -> list[ReminderView] | Response:
    """Open reminders of a subtree."""
    return table_or_rows(table, await reads.open_reminders(actor, under), filename="reminders")


@router.get("/grade-distribution", tags=["pool"], response_model=list[LevelGrades])
async def grade_distribution(
    actor: CurrentActor, reads: Queries, table: Table, under: Under = None, cycle_id: UUID | None = None
) -> list[LevelGrades] | Response:
    """Standing grades by level of the organization."""
    return table_or_rows(table, await reads.grade_distribution(actor, under, cycle_id), filename="grade-distribution")


@router.get("/pool-shortfalls", tags=["pool"], response_model=list[Shortfall])
async def shortfalls(
    actor: CurrentActor, reads: Queries, table: Table, under: Under = None
) -> list[Shortfall] | Response:
    """Units whose pool shrank below its target size: where new entries are needed."""
    return table_or_rows(table, await reads.shortfalls(actor, under), filename="pool-shortfalls")


@router.get("/cycles", tags=["cycles"])
async def cycles(actor: CurrentActor, reads: Queries, under: Under = None) -> list[CycleView]:
    """Cycles over your subtree and over the units above it, newest first."""
    return await reads.cycles(actor, under)


@router.get("/exit-queue", tags=["pool"])
async def exit_queue(actor: CurrentActor, reads: Queries, under: Under = None) -> list[ExitCase]:
    """Exit recommendations waiting for a decision (their cadres are still in the pool)."""
    return await reads.exit_queue(actor, under)


@router.get("/mentees", tags=["reminders"])
async def mentees(
    actor: CurrentActor,
    reads: Queries,
    policy: Policy,
    mentor: Annotated[str | None, Query(max_length=64, description="The mentor's user id (default: you)")] = None,
) -> list[Mentee]:
    """A mentor's mentees in your subtree and what each needs: a check-in due, open reminders."""
    every = policy.check_in_every_days
    return await reads.mentees(actor, mentor or actor.user, every)


@router.get("/responsibility", tags=["reminders"], response_model=list[MentorDuty])
async def responsibility(
    actor: CurrentActor, reads: Queries, policy: Policy, table: Table, under: Under = None
) -> list[MentorDuty] | Response:
    """The responsibility report: every mentor of a subtree, check-ins held against due, reminders answered."""
    every = policy.check_in_every_days
    return table_or_rows(table, await reads.responsibility(actor, under, every), filename="responsibility")


@router.get("/overdue-check-ins", tags=["reminders"])
async def overdue_check_ins(
    actor: CurrentActor, reads: Queries, policy: Policy, under: Under = None
) -> list[OverdueCheckIn]:
    """Cadres nobody has checked in with for longer than the check-in interval."""
    every = policy.check_in_every_days
    return await reads.overdue_check_ins(actor, under, every)
