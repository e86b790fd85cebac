"""Wiring of the sync service: the links of this deployment with the levels above and below it (ADR 0010)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import Field

from contracts import topics
from contracts.envelope import Actor, Role, uuid7
from contracts.sync import DeploymentLinked
from runtime import logs
from runtime.context import CommandContext
from runtime.relay import Outbox
from runtime.service import Service, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.sync import api, ingest, links, projection, status
from services.sync.directives import Applier, OutcomeDirectives

log = logs.get(__name__)


class SyncSettings(ServiceSettings):
    """The sync service's environment (the topology itself is every service's: DEPLOYMENT_*, CHILD_DEPLOYMENTS)."""

    service_name: str = "sync"
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description='This deployment\'s services (JSON: {"registry": "http://...", ...}): where directives from'
        " above are applied",
    )
    directive_interval_seconds: float = Field(default=1.0, gt=0, description="How often open directives are tried")
    status_interval_seconds: float = Field(default=5.0, gt=0, description="How often the sync metrics are refreshed")
    bundle_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Largest signed bundle (offline link) imported or exported, in bytes unpacked: a larger upload"
        " is refused; an export stops there and the next one goes on",
    )


def _bundle_limit(settings: ServiceSettings) -> dict[str, int]:
    """`POST /bundles` and `/bundles/check` take a signed bundle up to BUNDLE_MAX_BYTES (they bound the body)."""
    assert isinstance(settings, SyncSettings)
    return {"/bundles": settings.bundle_max_bytes, "/bundles/check": settings.bundle_max_bytes}


def _released(source: str) -> Outbox:
    return Outbox(
        rows_sql="SELECT * FROM (SELECT seq AS position, key, event_id, event_type, body FROM released"  # noqa: S608
        f" WHERE source = '{source}') r",
        head_sql="SELECT seq FROM release_head WHERE id = 1",
        channel=ingest.RELEASED_CHANNEL,
    )


def _link_consumer(service: Service) -> links.LinkConsumer:
    settings = service.settings
    return links.LinkConsumer(settings, ingest.Ingest(settings.topology, settings.parent_public_key))


async def vouch_for_children(service: Service) -> None:
    """Record a `DeploymentLinked` for each child whose root or key is not on record yet (the levels above trust it)."""
    settings = service.settings
    for name, child in settings.child_deployments.items():
        row = await service.pool.fetchrow("SELECT root, public_key FROM links WHERE deployment = $1", name)
        if row is not None and (row["root"], row["public_key"]) == (child.root, child.public_key):
            continue
        stream = f"link-{name}"
        version = await service.pool.fetchval("SELECT max(stream_version) FROM events WHERE stream_id = $1", stream)
        where = settings.deployment_root or "system"
        ctx = CommandContext(actor=Actor(user="system:sync", org_path=where, role=Role.SYSTEM), correlation_id=uuid7())
        event = DeploymentLinked(
            deployment=name, root=child.root, public_key=child.public_key, parent=settings.deployment_id
        )
        await service.store.append(
            stream, int(version or 0), [event], ctx=ctx, org_path=settings.deployment_root or "system"
        )
        log.info("deployment linked", child=name, root=child.root)


async def apply_directives_forever(service: Service) -> None:
    """Apply the directives that target this deployment, once each, until the service stops."""
    settings = service.settings
    assert isinstance(settings, SyncSettings)
    applier = Applier(
        service.store,
        service.pool,
        settings.topology,
        service_urls=settings.service_urls,
        secret=settings.auth_secret.get_secret_value(),
    )
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            try:
                await applier.round(client)
            except Exception:  # the next round tries again
                log.exception("directive round failed")
            if await service.pause(settings.directive_interval_seconds):
                return


async def refresh_status_forever(service: Service) -> None:
    """Keep the `cadre_sync_*` metrics current."""
    settings = service.settings
    assert isinstance(settings, SyncSettings)
    topology = settings.topology
    while True:
        try:
            await status.status(service.pool, topology.deployment, topology.parent, sorted(topology.children))
        except Exception:  # the next round tries again
            log.exception("sync status refresh failed")
        if await service.pause(settings.status_interval_seconds):
            return


SPEC = ServiceSpec(
    name="sync",
    title="Reserve cadre sync",
    description="The links of this deployment with the levels above and below it: events from other deployments "
    "verified on arrival (hashes, chains, signed checkpoints) and passed on to this deployment's services; "
    "directives to the deployments below; status of every link.",
    routers=[api.router],
    schema=(*ingest.SCHEMA, *projection.SCHEMA),
    inline=projection.SyncProjection(),
    consumers=[_link_consumer],
    # Procedures concluded here for units owned below: their outcome goes down as a directive (ADR 0039).
    subscriptions=[Subscription(topics=[topics.SELECTION], factory=OutcomeDirectives)],
    outboxes=[(topics.received(topic), _released(topic.removesuffix(".events"))) for topic in topics.ALL],
    extra_topics=lambda settings: sorted(links.mirrored(settings)),
    background=[vouch_for_children, apply_directives_forever, refresh_status_forever],
    follows_handovers=False,
    body_limits=_bundle_limit,
)


def create_app(settings: SyncSettings | None = None) -> FastAPI:
    """The sync service's ASGI app."""
    return build_app(SPEC, settings or SyncSettings())
