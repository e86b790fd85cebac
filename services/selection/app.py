"""Wiring of the selection service: its settings, its parts, its app."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from contracts import topics
from contracts.selection import PostKind
from runtime.registry_view import RegistryView
from runtime.service import ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.selection import api, projection


class SelectionSettings(ServiceSettings):
    """Selection's environment."""

    service_name: str = "selection"
    reserve_ratios: dict[str, dict[PostKind, float]] = Field(
        default={"default": {PostKind.PRINCIPAL: 1.0, PostKind.DEPUTY: 2.0}},
        description="Reserves asked for per post, by kind, per unit level (JSON; `default` for levels not listed)",
    )


SPEC = ServiceSpec(
    name="selection",
    title="Leadership teams and succession",
    description="Posts and their quotas per unit, incumbents, successors with readiness, appointments out of the "
    "pool, potential ratings; the pool's strength and use.",
    routers=[api.router],
    schema=projection.SCHEMA,
    inline=projection.SelectionProjection(),
    subscriptions=[Subscription(topics=[topics.REGISTRY], projection=RegistryView(), with_received=True)],
)


def create_app(settings: SelectionSettings | None = None) -> FastAPI:
    """Selection's ASGI app."""
    settings = settings or SelectionSettings()
    app = build_app(SPEC, settings)
    app.state.reserve_ratios = settings.reserve_ratios
    return app
