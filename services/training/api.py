"""Training's HTTP API: programmes, enrolments, self-study, postings, and what to do next."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from runtime.auth import OWN_RECORD, CurrentActor
from runtime.commands import Accepted, tagged
from runtime.export import Table, table_response
from runtime.http import Context, Day, ExpectedVersion
from runtime.service import ActorDB, service_of
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


async def commands(request: Request) -> TrainingCommands:
    """FastAPI dependency: the command handlers."""
    service = service_of(request)
    return TrainingCommands(service.store, service.pool)


async def queries(request: Request, db: ActorDB) -> TrainingQueries:
    """FastAPI dependency: the queries, reading as the request's actor (row-level security)."""
    service = service_of(request)
    long_grassroots: int = request.app.state.long_grassroots_months
    return TrainingQueries(db, service.store, long_grassroots, request.app.state.yearly_hours_quota)


Commands = Annotated[TrainingCommands, Depends(commands)]
Queries = Annotated[TrainingQueries, Depends(queries)]


@router.post("/programs", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def schedule_program(body: ScheduleProgram, ctx: Context, cmd: Commands, response: Response) -> Accepted:
    """Schedule an organized training programme."""
    return tagged(response, await cmd.schedule_program(ctx, body))


@router.post("/programs/{program_id}/cancellation", tags=["programmes"])
async def cancel_program(
    program_id: UUID, body: CancelProgram, ctx: Context, cmd: Commands, expected: ExpectedVersion, response: Response
) -> Accepted:
    """Cancel a programme; its enrolments are withdrawn."""
    return tagged(response, await cmd.cancel_program(ctx, program_id, body, expected))


@router.post("/programs/{program_id}/enrolments", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def enrol(
    program_id: UUID, body: Enrol, ctx: Context, cmd: Commands, expected: ExpectedVersion, response: Response
) -> Accepted:
    """Enrol a cadre (capacity and dates are checked)."""
    return tagged(response, await cmd.enrol(ctx, program_id, body, expected))


@router.post("/programs/{program_id}/enrolments/{cadre_id}/withdrawal", tags=["programmes"])
async def withdraw(
    program_id: UUID,
    cadre_id: UUID,
    body: Withdraw,
    ctx: Context,
    cmd: Commands,
    expected: ExpectedVersion,
    response: Response,
) -> Accepted:
    """Withdraw a cadre from a programme."""
    return tagged(response, await cmd.withdraw(ctx, program_id, cadre_id, body, expected))


@router.post("/programs/{program_id}/enrolments/{cadre_id}/completion", tags=["programmes"])
async def complete(
    program_id: UUID,
    cadre_id: UUID,
    body: Complete,
    ctx: Context,
    cmd: Commands,
    expected: ExpectedVersion,
    response: Response,
) -> Accepted:
    """Record a completion with hours and score."""
    return tagged(response, await cmd.complete(ctx, program_id, cadre_id, body, expected))


@router.post("/programs/{program_id}/attendance", status_code=status.HTTP_201_CREATED, tags=["programmes"])
async def record_attendance(
    program_id: UUID,
    body: RecordAttendance,
    ctx: Context,
    cmd: Commands,
    expected: ExpectedVersion,
    response: Response,
) -> Accepted:
    """Record after the fact that a cadre completed a programme that already ran (past records, imports)."""
    return tagged(response, await cmd.record_attendance(ctx, program_id, body, expected))


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
    return table_response(table, items, filename="programmes") if table else items


@router.post("/cadres/{cadre_id}/self-study", status_code=status.HTTP_201_CREATED, tags=["cadres"])
async def log_self_study(
    cadre_id: UUID, body: LogSelfStudy, ctx: Context, cmd: Commands, response: Response
) -> Accepted:
    """Log autonomous study."""
    return tagged(response, await cmd.log_self_study(ctx, cadre_id, body))


@router.post(
    "/cadres/{cadre_id}/self-study-reports",
    status_code=status.HTTP_201_CREATED,
    tags=["cadres"],
    openapi_extra=OWN_RECORD,
)
async def report_self_study(
    cadre_id: UUID, body: ReportSelfStudy, ctx: Context, cmd: Commands, response: Response
) -> Accepted:
    """A cadre reports their own self-study (their own grant only): it counts once an organizer confirms it."""
    return tagged(response, await cmd.report_self_study(ctx, cadre_id, body))


@router.post("/cadres/{cadre_id}/self-study-reports/{entry_id}/confirmation", tags=["cadres"])
async def confirm_self_study(
    cadre_id: UUID, entry_id: UUID, ctx: Context, cmd: Commands, expected: ExpectedVersion, response: Response
) -> Accepted:
    """Confirm a reported self-study (organizers of the cadre's subtree): its hours count from now on."""
    return tagged(response, await cmd.decide_self_study(ctx, cadre_id, entry_id, confirm=True, expected=expected))


@router.post("/cadres/{cadre_id}/self-study-reports/{entry_id}/rejection", tags=["cadres"])
async def reject_self_study(
    cadre_id: UUID,
    entry_id: UUID,
    body: RejectSelfStudy,
    ctx: Context,
    cmd: Commands,
    expected: ExpectedVersion,
    response: Response,
) -> Accepted:
    """Reject a reported self-study, saying why (organizers of the cadre's subtree): it never counts."""
    decided = await cmd.decide_self_study(ctx, cadre_id, entry_id, confirm=False, reason=body.reason, expected=expected)
    return tagged(response, decided)


@router.get("/self-study-reports", tags=["cadres"])
async def waiting_reports(
    actor: CurrentActor,
    reads: Queries,
    under: Annotated[str | None, Query(description="Root unit code (default: yours)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[SelfStudyReportView]:
    """Self-study reported by cadres of a subtree, waiting for an organizer, oldest first."""
    return await reads.waiting_reports(actor, under, limit)


@router.post("/cadres/{cadre_id}/postings", status_code=status.HTTP_201_CREATED, tags=["postings"])
async def assign_posting(
    cadre_id: UUID, body: AssignPosting, ctx: Context, cmd: Commands, expected: ExpectedVersion, response: Response
) -> Accepted:
    """Post a cadre: upward, downward, cold-hot exchange or urgent task (one at a time)."""
    return tagged(response, await cmd.assign_posting(ctx, cadre_id, body, expected))


@router.post("/cadres/{cadre_id}/postings/{posting_id}/end", tags=["postings"])
async def end_posting(
    cadre_id: UUID,
    posting_id: UUID,
    body: EndPosting,
    ctx: Context,
    cmd: Commands,
    expected: ExpectedVersion,
    response: Response,
) -> Accepted:
    """End a posting, as planned or cut short."""
    return tagged(response, await cmd.end_posting(ctx, cadre_id, posting_id, body, expected))


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
    under: Annotated[str | None, Query(description="Root unit code (default: yours)")] = None,
    on: Day | None = None,
) -> list[PostingView] | Response:
    """Who of a subtree is posted where (today, or on a given day)."""
    items = await reads.current_postings(actor, under, on)
    return table_response(table, items, filename="current-postings") if table else items


@router.get("/cadres-without-grassroots", tags=["cadres"], response_model=list[CadreBrief])
async def without_grassroots(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Annotated[str | None, Query(description="Root unit code (default: yours)")] = None,
) -> list[CadreBrief] | Response:
    """Cadres in the pool with no grass-roots experience (candidates for a downward posting)."""
    items = await reads.without_grassroots(actor, under)
    return table_response(table, items, filename="without-grassroots") if table else items


@router.get("/behind-quota", tags=["cadres"])
async def behind_quota(
    actor: CurrentActor,
    reads: Queries,
    under: Annotated[str | None, Query(description="Root unit code (default: yours)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[BehindQuota]:
    """Cadres in the pool whose training hours this year are below the yearly quota, furthest behind first."""
    return await reads.behind_quota(actor, under, limit)
