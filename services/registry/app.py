"""Wiring of the registry service: its settings, its parts, its app."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts import topics
from contracts.procedure import ProcedureConcluded, ProcedureKind
from contracts.registry import Education, OrgLevel
from contracts.selection import CadreAppointed
from exchange.templates import download_router
from runtime.batch import memo_of
from runtime.keystore import KeyEraser, PersonalDataSettings
from runtime.projection import Recorded
from runtime.service import Parts, Reaction, Service, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.registry import api, projection, sessions, statistics
from services.registry.commands import RegistryCommands
from services.registry.queries import RegistryQueries
from services.registry.rules import EntryRules


class RegistrySettings(ServiceSettings, PersonalDataSettings):
    """The registry's environment (entry rules are per deployment)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: str = "registry"
    nomination_max_age_by_level: dict[OrgLevel, int] = Field(
        default={
            OrgLevel.TOWNSHIP: 35,
            OrgLevel.COUNTY: 40,
            OrgLevel.MUNICIPAL: 45,
            OrgLevel.PROVINCIAL: 50,
            OrgLevel.CENTRAL: 55,
        },
        description="Oldest age at nomination, by the nominating unit's level (JSON)",
    )
    nomination_default_max_age: int = Field(default=45, description="Age limit for levels not listed")
    nomination_min_education: Education = Field(default=Education.COLLEGE, description="Lowest education")
    nomination_min_years_of_service: int = Field(default=2, ge=0, description="Fewest years of service")

    def entry_rules(self) -> EntryRules:
        """The entry rules these settings describe."""
        return EntryRules(
            max_age_by_level=self.nomination_max_age_by_level,
            default_max_age=self.nomination_default_max_age,
            min_education=self.nomination_min_education,
            min_years_of_service=self.nomination_min_years_of_service,
        )


class SelectionReaction(Reaction):
    """Selection's decisions the pool follows, each once.

    An entry procedure admitted: the cadre enters the pool, naming the procedure. A reserve
    appointed to a post: the cadre leaves the pool as appointed.
    """

    name = "appointment-reaction"
    """The consumer's name (its watermarks), kept from when it read the appointments alone."""
    events = (CadreAppointed, ProcedureConcluded)

    async def react(self, events: Sequence[Recorded]) -> None:
        """Each through its command; the commands check state, so a redelivery appends nothing."""
        commands = self._service.part(RegistryCommands)
        for recorded in events:
            match recorded.event:
                case CadreAppointed() as appointed:
                    await commands.retire_appointed(recorded.envelope, appointed)
                case ProcedureConcluded(kind=ProcedureKind.ENTRY) as concluded:
                    await commands.admit(recorded.envelope, concluded)
                case _:
                    pass  # an appointment procedure's outcome: selection records the appointment itself


async def destroy_erased_keys(service: Service) -> None:
    """At start: destroy the keys of cadres erased while the process stopped between event and key."""
    erased = await service.pool.fetch("SELECT cadre_id FROM cadres WHERE personal_erased_at IS NOT NULL")
    if erased:
        await service.keystore.destroy(dict.fromkeys(row["cadre_id"] for row in erased))


SPEC = ServiceSpec(
    name="registry",
    title="Reserve cadre registry",
    description="Org units, nominations into the reserve pool, mentors, responsible leaders, retirements.",
    routers=[api.router, sessions.router, download_router("registry")],
    schema=(*projection.SCHEMA, *sessions.SCHEMA),
    inline=projection.RegistryProjection(),
    subscriptions=[
        # What the appointment form shows of the other services' records (grades, postings).
        Subscription(topics=[topics.ASSESSMENT], projection=projection.GradesView(), with_received=True),
        Subscription(topics=[topics.TRAINING], projection=projection.PostingsView(), with_received=True),
        Subscription(topics=[topics.SELECTION], factory=SelectionReaction),
    ],
    follows_handovers=False,  # the registry is where a cadre's handover begins
    background=[destroy_erased_keys],
    keystore=True,
    batchable=["/cadres"],
)


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """The registry's ASGI app."""
    settings = settings or RegistrySettings()
    spec = SPEC
    if settings.personal_data_follow_topics:
        # Erasures in deployments that granted us keys: destroy our copies when they arrive.
        follow = Subscription(
            topics=settings.personal_data_follow_topics,
            factory=lambda service: KeyEraser(lambda: service.keystore),
        )
        spec = dataclasses.replace(SPEC, subscriptions=[*SPEC.subscriptions, follow])
    entry_rules = settings.entry_rules()
    parts = (
        Parts()
        .value(EntryRules, entry_rules)
        .per_request(
            RegistryCommands,
            lambda s, request: RegistryCommands(
                s.store, s.pool, entry_rules, s.keystore, memo_of(request) if request else None
            ),
        )
        .reading(
            RegistryQueries,
            lambda s, db: RegistryQueries(db, s.store, s.keystore, counts=statistics.pool_counts(s.pool)),
        )
    )
    return build_app(spec, settings, parts)
