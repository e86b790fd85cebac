"""Selection's HTTP API: teams, posts and quotas, incumbents, successors, appointments, the pool's strength and use."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from contracts.envelope import OrgCode
from runtime.auth import CurrentActor
from runtime.commands import Accepted
from runtime.errors import CommandError
from runtime.export import Table, table_or_rows
from runtime.http import Change, Create, Day, Under
from runtime.service import given, scoped
from services.selection.commands import (
    Appoint,
    AppointCadre,
    ChangePost,
    CreatePost,
    EndTenure,
    NameSuccessor,
    RatePotential,
    RecordIncumbent,
    ReviewReadiness,
    SelectionCommands,
    SetQuota,
    WithdrawSuccessor,
)
from services.selection.queries import (
    GAPS_LISTED,
    POSTS_LIMIT,
    KindCount,
    NineBox,
    PoolUse,
    PostRow,
    ReadinessChange,
    SelectionQueries,
    Strength,
    TeamView,
)
from services.selection.team_ages import TeamStructure

router = APIRouter()


Commands = Annotated[SelectionCommands, given(SelectionCommands)]
Queries = Annotated[SelectionQueries, scoped(SelectionQueries)]


@router.post("/teams/{org_code}/quotas", tags=["teams"])
async def set_quota(org_code: OrgCode, body: SetQuota, act: Change, cmd: Commands) -> Accepted:
    """Set the unit's approved number of posts of a kind (职数)."""
    return act.tagged(await cmd.set_quota(act.ctx, org_code, body, act.expected))


@router.post("/teams/{org_code}/posts", status_code=status.HTTP_201_CREATED, tags=["teams"])
async def create_post(org_code: OrgCode, body: CreatePost, act: Change, cmd: Commands) -> Accepted:
    """Set up a post in the unit's team."""
    return act.tagged(await cmd.create_post(act.ctx, org_code, body, act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/change", tags=["teams"])
async def change_post(org_code: OrgCode, post_id: UUID, body: ChangePost, act: Change, cmd: Commands) -> Accepted:
    """Retitle or re-rank a post."""
    return act.tagged(await cmd.change_post(act.ctx, org_code, post_id, body, act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/incumbent", status_code=status.HTTP_201_CREATED, tags=["teams"])
async def record_incumbent(
    org_code: OrgCode, post_id: UUID, body: RecordIncumbent, act: Change, cmd: Commands
) -> Accepted:
    """Record who holds a vacant post; beyond the quota only with a recorded over-quota decision."""
    return act.tagged(await cmd.record_incumbent(act.ctx, org_code, post_id, body, act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/incumbent/end", tags=["teams"])
async def end_tenure(org_code: OrgCode, post_id: UUID, body: EndTenure, act: Change, cmd: Commands) -> Accepted:
    """The incumbent leaves the post (age limit, end of term, appointed elsewhere, removed)."""
    return act.tagged(await cmd.end_tenure(act.ctx, org_code, post_id, body, act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/successors", status_code=status.HTTP_201_CREATED, tags=["succession"])
async def name_successor(org_code: OrgCode, post_id: UUID, body: NameSuccessor, act: Change, cmd: Commands) -> Accepted:
    """Name a reserve as successor for the post, with a readiness and the reason."""
    return act.tagged(await cmd.name_successor(act.ctx, org_code, post_id, body, act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/successors/{cadre_id}/review", tags=["succession"])
async def review_readiness(
    org_code: OrgCode, post_id: UUID, cadre_id: UUID, body: ReviewReadiness, act: Change, cmd: Commands
) -> Accepted:
    """Review a successor's readiness, with the reason (it shows in the history)."""
    return act.tagged(await cmd.review_readiness(act.ctx, org_code, post_id, cadre_id, cmd=body, expected=act.expected))


@router.post("/teams/{org_code}/posts/{post_id}/successors/{cadre_id}/withdrawal", tags=["succession"])
async def withdraw_successor(
    org_code: OrgCode, post_id: UUID, cadre_id: UUID, body: WithdrawSuccessor, act: Change, cmd: Commands
) -> Accepted:
    """The cadre is no longer a successor for the post."""
    return act.tagged(
        await cmd.withdraw_successor(act.ctx, org_code, post_id, cadre_id, cmd=body, expected=act.expected)
    )


@router.get("/teams/{org_code}/posts/{post_id}/successors/{cadre_id}/history", tags=["succession"])
async def readiness_history(
    post_id: UUID, cadre_id: UUID, actor: CurrentActor, reads: Queries, org_code: OrgCode
) -> list[ReadinessChange]:
    """How the successor's readiness was set and reviewed, with each reason."""
    del org_code  # the post names its team
    return await reads.readiness_history(actor, post_id, cadre_id)


@router.post(
    "/teams/{org_code}/posts/{post_id}/appointment", status_code=status.HTTP_201_CREATED, tags=["appointments"]
)
async def appoint(org_code: OrgCode, post_id: UUID, body: Appoint, act: Change, cmd: Commands) -> Accepted:
    """Appoint a reserve out of the pool to the post: it fills the post and ends the tenure before it.

    The registry then takes the cadre out of the pool as appointed, linked to the post.
    """
    return act.tagged(await cmd.appoint(act.ctx, org_code, post_id, body, act.expected))


@router.post("/cadres/{cadre_id}/appointment", status_code=status.HTTP_201_CREATED, tags=["appointments"])
async def appoint_cadre(cadre_id: UUID, body: AppointCadre, act: Create, cmd: Commands) -> Accepted:
    """Appoint this reserve out of the pool to a post (how a level above's appointment is applied here, ADR 0042).

    The same as `POST /teams/{org_code}/posts/{post_id}/appointment`; the same appointment again is answered
    with no events. `procedure_id` names the level above's appointment procedure that decided it (the
    `appoint` directive its outcome sends down): the appointment records it.
    """
    appointment = body.appoint(cadre_id)
    return act.tagged(
        await cmd.appoint(act.ctx, body.org_code, body.post_id, appointment, None, procedure_id=body.procedure_id)
    )


@router.post("/cadres/{cadre_id}/potential", status_code=status.HTTP_201_CREATED, tags=["talent review"])
async def rate_potential(cadre_id: UUID, body: RatePotential, act: Create, cmd: Commands) -> Accepted:
    """Rate a cadre's potential in a review cycle, with the reason (you are the rater)."""
    return act.tagged(await cmd.rate_potential(act.ctx, cadre_id, body))


@router.get("/teams/{org_code}", tags=["teams"])
async def team(org_code: OrgCode, actor: CurrentActor, reads: Queries, on: Day | None = None) -> TeamView:
    """A unit's team as of a day (default today): counts per kind, posts, holders, successors with readiness."""
    return await reads.team(actor, org_code, on)


@router.get("/team-ages", tags=["teams"])
async def ages(actor: CurrentActor, reads: Queries, under: Under = None, on: Day | None = None) -> TeamStructure:
    """The age structure of each leadership team of a subtree on a day (default today).

    Its members by age band and kind of post, and the average age; `not_recorded` where a holder's
    birth date is not known (recorded with the incumbent, else the registry's for a pool cadre).
    """
    return await reads.team_ages(actor, under, on)


@router.get("/posts/counts", tags=["teams"], response_model=list[KindCount])
async def counts(
    actor: CurrentActor, reads: Queries, table: Table, under: Under = None, on: Day | None = None
) -> list[KindCount] | Response:
    """Approved, filled, vacant and over-quota posts per unit and kind of a subtree, as of a day."""
    return table_or_rows(table, await reads.counts(actor, under, on), filename="post-counts")


@router.get("/posts", tags=["teams"], response_model=list[PostRow])
async def posts(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
    on: Day | None = None,
    limit: Annotated[
        int, Query(ge=1, le=POSTS_LIMIT, description="At most so many posts, in unit order")
    ] = POSTS_LIMIT,
) -> list[PostRow] | Response:
    """The posts of a subtree as of a day (default today), by unit, with their incumbents and successors.

    Each post's kind, title and rank; its incumbent (name, cadre, start, end of term or age limit) or
    `vacant`; the number of successors and the best readiness among them. As CSV or XLSX with `format`.
    """
    return table_or_rows(table, await reads.posts(actor, under, on, limit), filename="posts")


@router.get("/strength", tags=["succession"])
async def strength(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    on: Day | None = None,
    within_months: Annotated[int, Query(ge=1, le=120, description="Falling vacant within so many months")] = 12,
    limit: Annotated[int, Query(ge=1, le=1000, description="Posts listed in each list of gaps")] = GAPS_LISTED,
) -> Strength:
    """Reserves per kind against the ratio; posts with no ready successor; posts falling vacant with none.

    Each list of posts holds its first `limit` in the units' order, beside how many there are in all.
    """
    return await reads.strength(actor, under, on, within_months, limit)


@router.get("/pool-use", tags=["appointments"])
async def pool_use(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    since: Day | None = None,
    until: Day | None = None,
) -> PoolUse:
    """Appointments per unit and kind over a period (default: this year), and the share filled from the pool."""
    if since is not None and until is not None and until < since:
        msg = "`until` lies before `since`"
        raise CommandError(msg)  # 400, as audit answers for its periods
    return await reads.pool_use(actor, under, since, until)


@router.get("/nine-box", tags=["talent review"])
async def nine_box(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    cycle_id: Annotated[UUID | None, Query(description="The assessment cycle (default: the latest begun)")] = None,
    compare_with: Annotated[
        UUID | None, Query(description="An earlier cycle to measure movement from (default: the one before)")
    ] = None,
) -> NineBox:
    """Performance (the cycle's grade) against potential (rated for the cycle) per box, with movement since."""
    return await reads.nine_box(actor, under, cycle_id, compare_with)
