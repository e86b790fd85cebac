"""The audit service's HTTP API: timelines, the pool at any moment, changes, signed exports, the query log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from runtime.auth import CurrentActor
from runtime.export import Table, table_or_rows
from runtime.http import Context, Expensive, Moment, Under
from runtime.service import scoped
from services.audit.queries import AuditQueries, EventDetail, QueryView, TimelineEntry
from services.audit.replay import PoolDiff, PoolEntry

router = APIRouter(dependencies=[Expensive])
"""Every audit question records an event: each counts against the actor's share of expensive reads."""


Queries = Annotated[AuditQueries, scoped(AuditQueries)]


@router.get("/cadres/{cadre_id}/timeline", tags=["audit"])
async def timeline(cadre_id: UUID, ctx: Context, reads: Queries) -> list[TimelineEntry]:
    """A cadre's whole history across every service, in the order it was recorded."""
    return await reads.timeline(ctx, cadre_id)


@router.get("/pool", tags=["audit"], response_model=list[PoolEntry])
async def pool(
    ctx: Context,
    reads: Queries,
    table: Table,
    under: Under = None,
    at: Annotated[Moment | None, Query(description="The moment (ISO 8601 with zone); default now")] = None,
) -> list[PoolEntry] | Response:
    """The pool of a subtree as it stood at a moment: who, where posted, latest grade (replayed from events)."""
    return table_or_rows(table, await reads.pool(ctx, under, at), filename="pool")


@router.get("/pool/changes", tags=["audit"])
async def changes(ctx: Context, reads: Queries, since: Moment, until: Moment, under: Under = None) -> PoolDiff:
    """Who joined, who left and what changed in a subtree's pool between two moments."""
    return await reads.changes(ctx, under, since, until)


@router.get("/export", tags=["audit"], response_class=Response)
async def export(ctx: Context, reads: Queries, since: Moment, until: Moment, under: Under = None) -> Response:
    """A signed bundle of a subtree's events over a period, for offline verification (runtime/bundle.py)."""
    bundle = await reads.export(ctx, under, since, until)
    headers = {"Content-Disposition": 'attachment; filename="cadre-pool-audit-export.zip"'}
    return Response(bundle, media_type="application/zip", headers=headers)


@router.get("/queries", tags=["audit"])
async def audit_queries(
    actor: CurrentActor, reads: Queries, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[QueryView]:
    """The audit questions asked in your subtree (each is an `AuditQueryMade` event)."""
    return await reads.queries(actor, limit)


@router.get("/events/{event_id}", tags=["audit"])
async def event(event_id: UUID, ctx: Context, reads: Queries) -> EventDetail:
    """One event whole, its position in its service's chain, and whether its hash and link hold."""
    return await reads.event(ctx, event_id)
