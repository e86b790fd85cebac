"""Wiring of the training service: its settings, its parts, its app."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from pydantic import Field

from contracts import topics
from contracts.registry import CadreRetired
from exchange.templates import download_router
from runtime.projection import Recorded, of_type
from runtime.registry_view import RegistryView
from runtime.service import Parts, Reaction, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.training import api, projection
from services.training.commands import TrainingCommands
from services.training.queries import TrainingQueries


class TrainingSettings(ServiceSettings):
    """Training's environment."""

    service_name: str = "training"
    long_grassroots_months: int = Field(
        default=36, ge=1, description="Grass-roots months from which an upward posting is recommended"
    )
    yearly_hours_quota: int = Field(default=60, ge=0, description="Training hours each cadre owes per year")


class RetirementReaction(Reaction):
    """When a cadre leaves the pool, its open enrolments and posting close (once)."""

    name = "retirement-reaction"
    events = (CadreRetired,)

    async def react(self, events: Sequence[Recorded]) -> None:
        """Issue the closing commands; they check state, so a repeat appends nothing."""
        commands = self._service.part(TrainingCommands)
        for envelope, retired in of_type(events, CadreRetired):
            await commands.close_for_retired(envelope, retired)


SPEC = ServiceSpec(
    name="training",
    title="Reserve cadre training",
    description="Organized programmes, enrolments and completions, self-study, and practical postings "
    "(upward, downward, cold-hot exchange, urgent tasks), with the next posting recommended.",
    routers=[api.router, download_router("training")],
    schema=projection.SCHEMA,
    inline=projection.TrainingProjection(),
    subscriptions=[
        Subscription(topics=[topics.REGISTRY], projection=RegistryView(), with_received=True),
        Subscription(topics=[topics.REGISTRY], factory=RetirementReaction),
    ],
    batchable=[
        "/programs/{program_id}/attendance",
        "/cadres/{cadre_id}/self-study",
        "/cadres/{cadre_id}/postings",
        "/cadres/{cadre_id}/postings/{posting_id}/end",
    ],
)


def create_app(settings: TrainingSettings | None = None) -> FastAPI:
    """Training's ASGI app."""
    settings = settings or TrainingSettings()
    months, quota = settings.long_grassroots_months, settings.yearly_hours_quota
    parts = (
        Parts()
        .once(TrainingCommands, lambda s: TrainingCommands(s.store, s.pool))
        .reading(TrainingQueries, lambda s, db: TrainingQueries(db, s.store, months, quota))
    )
    return build_app(SPEC, settings, parts)
