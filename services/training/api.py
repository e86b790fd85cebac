"""Training's HTTP API: programmes, enrolments, self-study, postings, and what to do next."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from runtime.auth import OWN_RECORD, CurrentActor
from runtime.commands import Accepted
from runtime.export import Table, table_or_rows
from runtime.http import Change, Create, Day, Under
from runtime.service import given, scoped
from services.training.commands import (
    AssignPosting,
    CancelProgram,
    Complete,
    EndPosting,
    Enrol,
    LogSelfStudy,
    RecordAttendance,
    RejectSelfStudy,
    ReportSelfStudy,
    ScheduleProgram,
    TrainingCommands,
    Withdraw,
)
from services.training.queries import (
    BehindQuota,
    CadreBrief,
    PostingView,
    ProgramView,
    RecommendationView,
    SelfStudyReportView,
    TrainingQueries,
    TrainingRecord,
)

router = APIRouter()


Commands = Annotated[TrainingCommands, given(TrainingCommands)]
Queries = Annotated[TrainingQueries, scoped(TrainingQueries)]


@router.post("/programs", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def schedule_program(body: ScheduleProgram, act: Create, cmd: Commands) -> Accepted:
    """Schedule an organized training programme."""
    return act.tagged(await cmd.schedule_program(act.ctx, body))


@router.post("/programs/{program_id}/cancellation", tags=["programmes"])
async def cancel_program(program_id: UUID, body: CancelProgram, act: Change, cmd: Commands) -> Accepted:
    """Cancel a programme; its enrolments are withdrawn."""
    return act.tagged(await cmd.cancel_program(act.ctx, program_id, body, act.expected))


@router.post("/programs/{program_id}/enrolments", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def enrol(program_id: UUID, body: Enrol, act: Change, cmd: Commands) -> Accepted:
    """Enrol a cadre (capacity and dates are checked)."""
    return act.tagged(await cmd.enrol(act.ctx, program_id, body, act.expected))


@router.post("/programs/{program_id}/enrolments/{cadre_id}/withdrawal", tags=["programmes"])
async def withdraw(program_id: UUID, cadre_id: UUID, body: Withdraw, act: Change, cmd: Commands) -> Accepted:
    """Withdraw a cadre from a programme."""
    return act.tagged(await cmd.withdraw(act.ctx, program_id, cadre_id, body, act.expected))


@router.post("/programs/{program_id}/enrolments/{cadre_id}/completion", tags=["programmes"])
async def complete(program_id: UUID, cadre_id: UUID, body: Complete, act: Change, cmd: Commands) -> Accepted:
    """Record a completion with hours and score."""
    return act.tagged(await cmd.complete(act.ctx, program_id, cadre_id, body, act.expected))


@router.post("/programs/{program_id}/attendance", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def record_attendance(program_id: UUID, body: RecordAttendance, act: Change, cmd: Commands) -> Accepted:
    """Record after the fact that a cadre completed a programme that already ran (past records, imports)."""
    return act.tagged(await cmd.record_attendance(act.ctx, program_id, body, act.expected))


@router.get("/programs", tags=["programmes"], response_model=list[ProgramView])
async def list_programs(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    with_free_places: bool = False,
    upcoming_only: bool = False,
) -> list[ProgramView] | Response:
    """Programmes you may use (organized above you or in your subtree)."""
    items = await reads.programs(actor, with_free_places=with_free_places, upcoming_only=upcoming_only)
    return table_or_rows(table, items, filename="programmes")


@router.post("/cadres/{cadre_id}/self-study", status_code=status.HTTP_201_CREATED, tags=["cadres"])
async def log_self_study(cadre_id: UUID, body: LogSelfStudy, act: Create, cmd: Commands) -> Accepted:
    """Log autonomous study."""
    return act.tagged(await cmd.log_self_study(act.ctx, cadre_id, body))


@router.post(
    "/cadres/{cadre_id}/self-study-reports",
    status_code=status.HTTP_201_CREATED,
    tags=["cadres"],
    openapi_extra=OWN_RECORD,
)
async def report_self_study(cadre_id: UUID, body: ReportSelfStudy, act: Create, cmd: Commands) -> Accepted:
    """A cadre reports their own self-study (their own grant only): it counts once an organizer confirms it."""
    return act.tagged(await cmd.report_self_study(act.ctx, cadre_id, body))


@router.post("/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", tags=["cadres"])
async def confirm_self_study(cadre_id: UUID, entry_id: UUID, act: Change, cmd: Commands) -> Accepted:
    """Confirm a reported self-study (organizers of the cadre's subtree): its hours count from now on."""
    return act.tagged(await cmd.decide_self_study(act.ctx, cadre_id, entry_id, confirm=True, expected=act.expected))


@router.post("/cadres/{cadre_id}/self-study-reports/{entry_id}/rejection", tags=["cadres"])
async def reject_self_study(
    cadre_id: UUID, entry_id: UUID, body: RejectSelfStudy, act: Change, cmd: Commands
) -> Accepted:
    """Reject a reported self-study, saying why (organizers of the cadre's subtree): it never counts."""
    decided = await cmd.decide_self_study(
        act.ctx, cadre_id, entry_id, confirm=False, reason=body.reason, expected=act.expected
    )
    return act.tagged(decided)


@router.get("/self-study-reports", tags=["cadres"])
async def waiting_reports(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[SelfStudyReportView]:
    """Self-study reported by cadres of a subtree, waiting for an organizer, oldest first."""
    return await reads.waiting_reports(actor, under, limit)


@router.post("/cadres/{cadre_id}/postings", status_code=status.HTTP_201_CREATED, tags=["postings"])
async def assign_posting(cadre_id: UUID, body: AssignPosting, act: Change, cmd: Commands) -> Accepted:
    """Post a cadre: upward, downward, cold-hot exchange or urgent task (one at a time)."""
    return act.tagged(await cmd.assign_posting(act.ctx, cadre_id, body, act.expected))


@router.post("/cadres/{cadre_id}/postings/{posting_id}/end", tags=["postings"])
async def end_posting(cadre_id: UUID, posting_id: UUID, body: EndPosting, act: Change, cmd: Commands) -> Accepted:
    """End a posting, as planned or cut short."""
    return act.tagged(await cmd.end_posting(act.ctx, cadre_id, posting_id, body, act.expected))


@router.get("/cadres/{cadre_id}/training-record", tags=["cadres"], openapi_extra=OWN_RECORD)
async def training_record(cadre_id: UUID, actor: CurrentActor, reads: Queries) -> TrainingRecord:
    """Hours per year (organized vs self-study), programmes, self-study and self-study reports of a cadre."""
    return await reads.record(actor, cadre_id)


@router.get("/cadres/{cadre_id}/postings", tags=["postings"], openapi_extra=OWN_RECORD)
async def postings(cadre_id: UUID, actor: CurrentActor, reads: Queries) -> list[PostingView]:
    """A cadre's postings."""
    return await reads.postings(actor, cadre_id)


@router.get("/cadres/{cadre_id}/recommendation", tags=["postings"], openapi_extra=OWN_RECORD)
async def recommendation(cadre_id: UUID, actor: CurrentActor, reads: Queries) -> RecommendationView:
    """The posting kind to plan next, with the reason."""
    return await reads.recommendation(actor, cadre_id)


@router.get("/postings/current", tags=["postings"], response_model=list[PostingView])
async def current_postings(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
    on: Day | None = None,
) -> list[PostingView] | Response:
    """Who of a subtree is posted where (today, or on a given day)."""
    return table_or_rows(table, await reads.current_postings(actor, under, on), filename="current-postings")


@router.get("/cadres-without-grassroots", tags=["cadres"], response_model=list[CadreBrief])
async def without_grassroots(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
) -> list[CadreBrief] | Response:
    """Cadres in the pool with no grass-roots experience (candidates for a downward posting)."""
    return table_or_rows(table, await reads.without_grassroots(actor, under), filename="without-grassroots")


@router.get("/behind-quota", tags=["cadres"])
async def behind_quota(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[BehindQuota]:
    """Cadres in the pool whose training hours this year are below the yearly quota, furthest behind first."""
    return await reads.behind_quota(actor, under, limit)
