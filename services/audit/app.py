"""Wiring of the audit service: the archive of every topic, the query log, the signing key."""

from __future__ import annotations

from fastapi import FastAPI

from contracts import topics
from runtime import checkpoint
from runtime.service import Parts, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.audit import api, projection
from services.audit.queries import AuditQueries


class AuditSettings(ServiceSettings):
    """The audit service's environment (its exports are signed with CHECKPOINT_SIGNING_KEY)."""

    service_name: str = "audit"


SPEC = ServiceSpec(
    name="audit",
    title="Reserve cadre audit",
    description="Every service's events archived whole: a cadre's timeline, the pool of any subtree at any past "
    "moment and its changes, signed exports for offline verification; every question asked is itself recorded.",
    routers=[api.router],
    schema=projection.SCHEMA,
    inline=projection.AuditLog(),
    subscriptions=[
        Subscription(
            topics=[topics.REGISTRY, topics.TRAINING, topics.ASSESSMENT, topics.NOTIFY, topics.SYNC],
            projection=projection.Archive(),
            with_received=True,
        )
    ],
)


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    """The audit service's ASGI app."""
    settings = settings or AuditSettings()
    key = checkpoint.private_key(settings.checkpoint_signing_key.get_secret_value())
    parts = Parts().reading(AuditQueries, lambda s, db: AuditQueries(db, s.store, key, chain=s.pool))
    return build_app(SPEC, settings, parts)
