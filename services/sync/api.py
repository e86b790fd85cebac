"""The sync service's HTTP API: the links' status, directives to the deployments below, signed bundles."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

from contracts.envelope import Actor, Role
from runtime import checkpoint
from runtime.auth import CurrentActor, require_role, require_scope
from runtime.commands import Accepted
from runtime.errors import CommandError
from runtime.http import Context, read_body
from runtime.service import ActorDB, Service, service_of
from runtime.topology import Topology
from services.sync import bundles, directives
from services.sync.ingest import Ingest
from services.sync.status import Status
from services.sync.status import status as read_status

router = APIRouter()


@router.get("/status", tags=["sync"])
async def sync_status(request: Request, actor: CurrentActor) -> Status:
    """Per deployment and service: received, verified, signed, released, lag, last heard, refusals."""
    require_role(actor, Role.ORGANIZER, Role.AUDITOR)
    service = service_of(request)  # counts and positions of the links, no cadre's data: read as the system
    topology = service.settings.topology
    return await read_status(
        service.pool, topology.deployment, topology.parent, sorted(topology.children), root=topology.root
    )


@router.post("/directives", status_code=status.HTTP_201_CREATED, tags=["directives"])
async def issue_directive(
    request: Request, body: directives.IssueDirective, ctx: Context, response: Response
) -> Accepted:
    """Decide about a cadre that a deployment below owns: it applies the decision once, or refuses it with a reason."""
    service = service_of(request)
    accepted = await directives.issue(service.store, service.pool, service.settings.topology, ctx, body)
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


def _may_exchange(actor: Actor, topology: Topology) -> None:
    """Bundles carry the whole deployment: organizers of its root unit (or above) only."""
    require_role(actor, Role.ORGANIZER)
    if topology.root:
        require_scope(actor, topology.root, f"deployment {topology.deployment}")
    elif "." in actor.org_path:  # the whole organization: an organizer of its top unit
        require_scope(actor, "", f"deployment {topology.deployment}")


def _max_bytes(service: Service) -> int:
    limit = getattr(service.settings, "bundle_max_bytes", None)
    assert isinstance(limit, int)
    return limit


@router.get("/bundles/ack", tags=["bundles"])
async def bundle_ack(request: Request, actor: CurrentActor) -> bundles.Ack:
    """What this deployment holds of every chain it received: give it to a linked deployment to export since."""
    service = service_of(request)
    _may_exchange(actor, service.settings.topology)
    return await bundles.acknowledge(service.pool, service.settings.deployment_id)


@router.get(
    "/bundles",
    tags=["bundles"],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "A signed bundle"}},
)
async def export_bundle(
    request: Request,
    actor: CurrentActor,
    to: Annotated[str, Query(description="The linked deployment the bundle is for (the parent or a child)")],
    since: Annotated[
        list[str],
        Query(description="`<deployment>:<source>:<position>` the receiver holds (its acknowledgement); repeat"),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
) -> Response:
    """A signed bundle of what `to` lacks (offline link): download it here, import it there."""
    service = service_of(request)
    settings = service.settings
    _may_exchange(actor, settings.topology)
    bundles.direction(settings.topology, to)  # 404 before any topic is read
    key = checkpoint.private_key(settings.checkpoint_signing_key.get_secret_value())
    data = await bundles.export(settings, key, to=to, since=_watermarks(since), max_bytes=_max_bytes(service))
    name = f"cadre-sync-{settings.deployment_id}-to-{to}.zip"
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _watermarks(since: list[str]) -> dict[tuple[str, str], int]:
    watermarks: dict[tuple[str, str], int] = {}
    for item in since:
        deployment, _, rest = item.partition(":")
        source, _, position = rest.partition(":")
        if not deployment or not source or not position.isdigit():
            msg = f"`since` takes <deployment>:<source>:<position>, not {item!r}"
            raise CommandError(msg)
        watermarks[deployment, source] = int(position)
    return watermarks


_ZIP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def _sent_bundle(request: Request, actor: Actor) -> tuple[Service, Ingest, bytes, int]:
    """The bundle a request sends, once `actor` may exchange bundles; with the service, its ingest, the size limit."""
    service = service_of(request)
    settings = service.settings
    _may_exchange(actor, settings.topology)
    limit = _max_bytes(service)
    data = await read_body(request, limit)
    return service, Ingest(settings.topology, settings.parent_public_key), data, limit


@router.post("/bundles/check", tags=["bundles"], openapi_extra=_ZIP_BODY)
async def check_bundle(request: Request, actor: CurrentActor) -> bundles.Checked:
    """Verify a signed bundle whole as an import would, applying nothing: what it would bring (422: why not)."""
    service, ingest, data, limit = await _sent_bundle(request, actor)
    return await bundles.check(service.pool, ingest, service.settings.topology, data, max_bytes=limit)


@router.post(
    "/bundles",
    tags=["bundles"],
    openapi_extra=_ZIP_BODY,
)
async def import_bundle(request: Request, actor: CurrentActor) -> bundles.Imported:
    """Import a signed bundle: verified whole, then applied in one transaction; refused whole (422) with the reason."""
    service, ingest, data, limit = await _sent_bundle(request, actor)
    return await bundles.take(service.pool, ingest, service.settings.topology, data, max_bytes=limit)
