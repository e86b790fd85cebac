"""Wiring of the assessment service: its settings, its parts, its periodic sweep, its app."""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from pydantic import Field

from contracts import topics
from contracts.envelope import Actor, Role, uuid7
from exchange.templates import download_router
from runtime import logs
from runtime.context import CommandContext
from runtime.registry_view import RegistryView
from runtime.service import Parts, Service, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.assessment import api, projection, rules
from services.assessment.commands import AssessmentCommands
from services.assessment.queries import AssessmentQueries

log = logs.get(__name__)


class AssessmentSettings(ServiceSettings):
    """Assessment's environment: the reminder rules and the ranking's weights."""

    service_name: str = "assessment"
    check_in_every_days: int = Field(default=90, ge=1, description="Days after which a check-in is overdue")
    training_due_month: int = Field(
        default=7, ge=1, le=12, description="Month from which no training hours is a reminder"
    )
    training_due_day: int = Field(default=1, ge=1, le=28, description="Day of that month")
    follow_up_days: int = Field(default=30, ge=1, description="Days until a rule-raised reminder's follow-up")
    sweep_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the reminder rules sweep the pool"
    )
    sweep_root: str = Field(default="", description="Org path the periodic sweep covers (empty: every root)")
    ranking_weight_grades: float = Field(default=0.5, ge=0, description="Ranking weight of grades")
    ranking_weight_dimensions: float = Field(default=0.2, ge=0, description="Ranking weight of dimension scores")
    ranking_weight_postings: float = Field(default=0.15, ge=0, description="Ranking weight of served postings")
    ranking_weight_training: float = Field(default=0.15, ge=0, description="Ranking weight of this year's training")
    ranking_training_hours_target: int = Field(default=60, ge=1, description="Training hours that score full marks")
    ranking_postings_target: int = Field(default=2, ge=1, description="Served postings that score full marks")

    def sweep_policy(self) -> rules.SweepPolicy:
        """The reminder rules these settings describe."""
        return rules.SweepPolicy(
            check_in_every_days=self.check_in_every_days,
            training_due_after=(self.training_due_month, self.training_due_day),
            follow_up_days=self.follow_up_days,
        )

    def ranking_weights(self) -> rules.RankingWeights:
        """The ranking these settings describe."""
        return rules.RankingWeights(
            grades=self.ranking_weight_grades,
            dimensions=self.ranking_weight_dimensions,
            postings=self.ranking_weight_postings,
            training=self.ranking_weight_training,
            training_hours_target=self.ranking_training_hours_target,
            postings_target=self.ranking_postings_target,
        )


async def sweep_periodically(service: Service) -> None:
    """Raise the periodic reminders over the whole pool, now and then at every interval."""
    settings = service.settings
    assert isinstance(settings, AssessmentSettings)
    commands = service.part(AssessmentCommands)
    while not await service.pause(settings.sweep_interval_seconds):
        roots = (
            [settings.sweep_root]
            if settings.sweep_root
            else [row["path"] for row in await service.pool.fetch("SELECT path FROM units WHERE path NOT LIKE '%.%'")]
        )
        for root in roots:
            ctx = CommandContext(
                actor=Actor(user="system:assessment", org_path=root, role=Role.SYSTEM), correlation_id=uuid7()
            )
            with contextlib.suppress(Exception):
                raised = await commands.sweep(ctx, root)
                log.info("reminder sweep", root=root, raised=raised)


SPEC = ServiceSpec(
    name="assessment",
    title="Reserve cadre assessment",
    description="Assessment cycles, evaluations (one per cycle, corrections supersede), check-ins, care and "
    "reminders, exit recommendations by survival of the fittest, the ranking and the pool's gaps.",
    routers=[api.router, download_router("assessment")],
    schema=projection.SCHEMA,
    inline=projection.AssessmentProjection(),
    subscriptions=[
        Subscription(topics=[topics.REGISTRY], projection=RegistryView(), with_received=True),
        Subscription(topics=[topics.TRAINING], projection=projection.TrainingView(), with_received=True),
    ],
    background=[sweep_periodically],
    batchable=["/cadres/{cadre_id}/evaluations"],
)


def create_app(settings: AssessmentSettings | None = None) -> FastAPI:
    """Assessment's ASGI app."""
    settings = settings or AssessmentSettings()
    policy, weights = settings.sweep_policy(), settings.ranking_weights()
    parts = (
        Parts()
        .value(rules.SweepPolicy, policy)
        .once(AssessmentCommands, lambda s: AssessmentCommands(s.store, s.pool, policy))
        .reading(AssessmentQueries, lambda _, db: AssessmentQueries(db, weights))
    )
    return build_app(SPEC, settings, parts)
