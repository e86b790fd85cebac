"""Wiring of the registry service: its settings, its parts, its app."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.registry import Education, OrgLevel
from runtime.service import ServiceSpec, build_app
from runtime.settings import ServiceSettings
from services.registry import api, projection
from services.registry.rules import EntryRules


class RegistrySettings(ServiceSettings):
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


SPEC = ServiceSpec(
    name="registry",
    title="Reserve cadre registry",
    description="Org units, nominations into the reserve pool, mentors, responsible leaders, retirements.",
    routers=[api.router],
    schema=projection.SCHEMA,
    inline=projection.RegistryProjection(),
    follows_handovers=False,  # the registry is where a cadre's handover begins
)


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """The registry's ASGI app."""
    settings = settings or RegistrySettings()
    app = build_app(SPEC, settings)
    app.state.entry_rules = settings.entry_rules()
    return app
