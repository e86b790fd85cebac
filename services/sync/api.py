"""The sync service's HTTP API: the links' status, directives to the deployments below."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

from contracts.envelope import Role
from runtime.auth import CurrentActor, require_role
from runtime.commands import Accepted
from runtime.http import Context
from runtime.service import ActorDB, service_of
from services.sync import directives
from services.sync.status import Status
from services.sync.status import status as read_status

router = APIRouter()


@router.get("/status", tags=["sync"])
async def sync_status(request: Request, actor: CurrentActor) -> Status:
    """Per deployment and service: received, verified, signed, released, lag, last heard, refusals."""
    require_role(actor, Role.ORGANIZER, Role.AUDITOR)
    service = service_of(request)  # counts and positions of the links, no cadre's data: read as the system
    topology = service.settings.topology
    return await read_status(service.pool, topology.deployment, topology.parent, sorted(topology.children))


@router.post("/directives", status_code=status.HTTP_201_CREATED, tags=["directives"])
async def issue_directive(
    request: Request, body: directives.IssueDirective, ctx: Context, response: Response
) -> Accepted:
    """Decide about a cadre that a deployment below owns: it applies the decision once, or refuses it with a reason."""
    service = service_of(request)
    accepted = await directives.issue(service.store, service.settings.topology, ctx, body)
    response.headers["Location"] = f"/directives/{accepted.stream_id.removeprefix('directive-')}"
    return accepted


class DirectiveView(BaseModel):
    """A directive, issued here or received from above, and what became of it."""

    directive_id: UUID
    issued_by: str
    target: str
    cadre_id: UUID
    kind: str
    note: str
    actor_user: str
    status: str
    outcome: dict[str, object] | None


@router.get("/directives", tags=["directives"])
async def list_directives(
    actor: CurrentActor,
    db: ActorDB,
    state: Annotated[Literal["issued", "applied", "refused"] | None, Query(alias="status")] = None,
) -> list[DirectiveView]:
    """Directives issued in your subtree or above it (those concern this deployment's cadres), newest first."""
    require_role(actor, Role.ORGANIZER, Role.AUDITOR)
    rows = await db.fetch(
        "SELECT directive_id, issued_by, target, cadre_id, kind, note, actor_user, status, outcome::text AS outcome"
        " FROM directives WHERE ($1::text IS NULL OR status = $1) ORDER BY issued_at DESC LIMIT 500",
        state,
    )
    return [DirectiveView(**{**dict(r), "outcome": orjson.loads(r["outcome"]) if r["outcome"] else None}) for r in rows]
