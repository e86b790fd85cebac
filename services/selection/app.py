"""Wiring of the selection service: its settings, its parts, its app."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from pydantic import Field

from contracts import topics
from contracts.procedure import ProcedureConcluded, ProcedureKind
from contracts.selection import PostKind
from exchange.templates import download_router
from runtime.db import Conn
from runtime.projection import Projection, Recorded, of_type
from runtime.registry_view import RegistryView
from runtime.service import Parts, Reaction, ServiceSpec, Subscription, build_app
from runtime.settings import ServiceSettings
from services.selection import api, procedure_api, procedure_board, projection
from services.selection.commands import SelectionCommands
from services.selection.procedure_commands import ProcedureCommands
from services.selection.queries import SelectionQueries


class SelectionSettings(ServiceSettings):
    """Selection's environment."""

    service_name: str = "selection"
    reserve_ratios: dict[str, dict[PostKind, float]] = Field(
        default={"default": {PostKind.PRINCIPAL: 1.0, PostKind.DEPUTY: 2.0}},
        description="Reserves asked for per post, by kind, per unit level (JSON; `default` for levels not listed)",
    )


class OwnEvents:
    """Selection's inline projection: its teams (projection) and its procedures (procedure_board)."""

    name = "selection"

    def __init__(self, *parts: Projection) -> None:
        self._parts = parts

    def handles(self, event_type: str) -> bool:
        """Whether a part reads it."""
        return any(part.handles(event_type) for part in self._parts)

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Each part gets the events it reads, in order."""
        for part in self._parts:
            mine = [r for r in events if part.handles(r.envelope.event_type)]
            if mine:
                await part.apply(conn, mine)


class OutcomeReaction(Reaction):
    """An appointment procedure concluded: the appointment it decided is recorded in the post's team (once)."""

    name = "procedure-outcome"
    events = (ProcedureConcluded,)

    async def react(self, events: Sequence[Recorded]) -> None:
        """Each appointment through its command, which finds a repeat already recorded and appends nothing."""
        commands = self._service.part(SelectionCommands)
        for envelope, concluded in of_type(events, ProcedureConcluded):
            if concluded.kind is ProcedureKind.APPOINTMENT:  # an entry's outcome is the registry's to follow
                await commands.appoint_by_procedure(envelope, concluded)


SPEC = ServiceSpec(
    name="selection",
    title="Leadership teams and succession",
    description="Posts and their quotas per unit, incumbents, successors with readiness, appointments out of the "
    "pool, potential ratings and the 9-box; the pool's strength and use.",
    routers=[api.router, procedure_api.router, download_router("selection")],
    schema=(*projection.SCHEMA, *procedure_board.SCHEMA),
    inline=OwnEvents(projection.SelectionProjection(), procedure_board.ProcedureBoard()),
    subscriptions=[
        Subscription(topics=[topics.REGISTRY], projection=RegistryView(), with_received=True),
        Subscription(topics=[topics.ASSESSMENT], projection=projection.PerformanceView(), with_received=True),
        Subscription(topics=[topics.SELECTION], factory=OutcomeReaction),
    ],
    batchable=["/teams/{org_code}/posts", "/teams/{org_code}/posts/{post_id}/incumbent"],
)


def create_app(settings: SelectionSettings | None = None) -> FastAPI:
    """Selection's ASGI app."""
    settings = settings or SelectionSettings()
    ratios = settings.reserve_ratios
    parts = (
        Parts()
        .once(SelectionCommands, lambda s: SelectionCommands(s.store, s.pool))
        .once(ProcedureCommands, lambda s: ProcedureCommands(s.store, s.pool))
        .reading(SelectionQueries, lambda s, db: SelectionQueries(db, ratios, system=s.pool))
    )
    return build_app(SPEC, settings, parts)
