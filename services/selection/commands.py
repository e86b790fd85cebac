"""Selection's commands: load the team (or the cadre), apply the rules, append what they decide."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from uuid import UUID

from pydantic import Field

from contracts.envelope import Actor, Envelope, OrgCode, uuid7
from contracts.event import Event
from contracts.procedure import ProcedureConcluded
from contracts.registry import Name, Statement, Text
from contracts.selection import (
    CadreAppointed,
    OverQuota,
    PostCreated,
    PostKind,
    Potential,
    PotentialRated,
    Readiness,
    TenureEnd,
)
from runtime.auth import can_write, require_scope, unit_path
from runtime.commands import Accepted, Command, Decision, Streams, change, record, retrying
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import RuleViolationError
from runtime.received import cadre_stream
from runtime.registry_view import pool_cadre
from runtime.store import EventStore
from services.selection import rules

team_stream = Streams("team")
"""Stream id of a unit's leadership team."""


class SetQuota(Command):
    """Set a unit's approved number of posts of a kind (职数)."""

    kind: PostKind
    approved: int = Field(ge=0, le=200)
    document_number: Name


class CreatePost(Command):
    """Set up a leadership post in a unit's team."""

    post_id: UUID | None = Field(default=None, description="Chosen by the caller to make retries safe")
    kind: PostKind
    title: Name
    rank: Name


class ChangePost(Command):
    """Retitle or re-rank a post."""

    title: Name
    rank: Name


class RecordIncumbent(Command):
    """Record who holds a vacant post (a present member, or someone appointed from outside the pool)."""

    holder_name: Name
    starts_on: date
    ends_by: date | None = Field(default=None, description="When the age limit or the end of term comes")
    cadre_id: UUID | None = None
    over_quota: OverQuota | None = Field(default=None, description="The decision that allows going beyond the quota")
    birth_date: date | None = Field(default=None, description="The holder's, for the team's age structure")


class EndTenure(Command):
    """An incumbent leaves the post."""

    left_on: date
    reason: TenureEnd
    note: Text = ""


class NameSuccessor(Command):
    """Name a reserve of the pool as successor for a post."""

    cadre_id: UUID
    readiness: Readiness
    reason: Statement


class ReviewReadiness(Command):
    """Review a successor's readiness."""

    readiness: Readiness
    reason: Statement


class WithdrawSuccessor(Command):
    """A cadre is no longer meant for the post."""

    reason: Statement


class Appoint(Command):
    """Appoint a reserve out of the pool to a post (the decision, with its document)."""

    cadre_id: UUID
    appointed_on: date
    document_number: Name
    ends_by: date | None = None
    over_quota: OverQuota | None = None


class AppointCadre(Command):
    """Appoint this reserve out of the pool to a post of a unit's team (a level above decided it, ADR 0042)."""

    org_code: OrgCode
    post_id: UUID
    appointed_on: date
    document_number: Name
    ends_by: date | None = None
    over_quota: OverQuota | None = None
    procedure_id: UUID | None = Field(
        default=None, description="The level above's appointment procedure that decided it (recorded with it)"
    )

    def appoint(self, cadre_id: UUID) -> Appoint:
        """The same appointment as the post's team takes it."""
        return Appoint(
            cadre_id=cadre_id,
            appointed_on=self.appointed_on,
            document_number=self.document_number,
            ends_by=self.ends_by,
            over_quota=self.over_quota,
        )


class RatePotential(Command):
    """Rate a cadre's potential in a review cycle, with the reason."""

    potential: Potential
    cycle: Name
    reason: Statement


class SelectionCommands:
    """Handles selection's commands against its store and its view of the registry."""

    def __init__(self, store: EventStore, pool: Pool) -> None:
        self._store = store
        self._pool = pool

    async def _cadre_to_change(self, ctx: CommandContext, cadre_id: UUID) -> Any:
        """The cadre an organizer (else 403) changes: in scope (else 404) and in the pool (else 422)."""
        can_write(ctx.actor)
        return await pool_cadre(self._pool, ctx.actor, cadre_id)

    async def _team(self, org_code: str) -> rules.Team:
        history = await self._store.read_stream(team_stream(org_code))
        return rules.Team.replay(org_code, [r.event for r in history])

    async def _decide(
        self, ctx: CommandContext, org_code: str, expected: int | None, decide: Callable[[rules.Team], list[Event]]
    ) -> Accepted:
        """Load the team, let `decide(team)` return the events, append them at the team's version (retried)."""
        can_write(ctx.actor)
        path = await unit_path(self._pool, org_code, ctx.actor)

        def decision(team: rules.Team) -> Decision:
            return Decision(decide(team), path)

        return await change(
            self._store, team_stream(org_code), lambda: self._team(org_code), decision, ctx=ctx, expected=expected
        )

    async def set_quota(self, ctx: CommandContext, org_code: str, cmd: SetQuota, expected: int | None) -> Accepted:
        """Set the approved number of posts of a kind of a unit in the actor's subtree."""
        return await self._decide(
            ctx, org_code, expected, lambda team: rules.set_quota(team, cmd.kind, cmd.approved, cmd.document_number)
        )

    async def create_post(self, ctx: CommandContext, org_code: str, cmd: CreatePost, expected: int | None) -> Accepted:
        """Set up a post in a unit's team."""
        event = PostCreated(
            post_id=cmd.post_id or uuid7(), org_code=org_code, kind=cmd.kind, title=cmd.title, rank=cmd.rank
        )
        return await self._decide(ctx, org_code, expected, lambda team: rules.create_post(team, event))

    async def change_post(
        self, ctx: CommandContext, org_code: str, post_id: UUID, cmd: ChangePost, expected: int | None
    ) -> Accepted:
        """Retitle or re-rank a post."""
        return await self._decide(
            ctx, org_code, expected, lambda team: rules.change_post(team, post_id, cmd.title, cmd.rank)
        )

    async def record_incumbent(
        self, ctx: CommandContext, org_code: str, post_id: UUID, cmd: RecordIncumbent, expected: int | None
    ) -> Accepted:
        """Record who holds a vacant post (the quota is checked)."""
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.appoint_incumbent(
                team,
                post_id,
                holder_name=cmd.holder_name,
                starts_on=cmd.starts_on,
                ends_by=cmd.ends_by,
                cadre_id=cmd.cadre_id,
                over_quota=cmd.over_quota,
                today=ctx.day,
                birth_date=cmd.birth_date,
            ),
        )

    async def end_tenure(
        self, ctx: CommandContext, org_code: str, post_id: UUID, cmd: EndTenure, expected: int | None
    ) -> Accepted:
        """An incumbent leaves the post."""
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.end_tenure(
                team, post_id, left_on=cmd.left_on, reason=cmd.reason, note=cmd.note, today=ctx.day
            ),
        )

    async def name_successor(
        self, ctx: CommandContext, org_code: str, post_id: UUID, cmd: NameSuccessor, expected: int | None
    ) -> Accepted:
        """Name a reserve of the actor's subtree, in the pool, as successor for a post."""
        cadre = await self._cadre_to_change(ctx, cmd.cadre_id)
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.name_successor(
                team,
                post_id,
                cadre_id=cmd.cadre_id,
                full_name=cadre["full_name"],
                readiness=cmd.readiness,
                reason=cmd.reason,
            ),
        )

    async def review_readiness(
        self,
        ctx: CommandContext,
        org_code: str,
        post_id: UUID,
        cadre_id: UUID,
        *,
        cmd: ReviewReadiness,
        expected: int | None,
    ) -> Accepted:
        """Review a successor's readiness, with the reason."""
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.review_readiness(
                team, post_id, cadre_id=cadre_id, readiness=cmd.readiness, reason=cmd.reason
            ),
        )

    async def withdraw_successor(
        self,
        ctx: CommandContext,
        org_code: str,
        post_id: UUID,
        cadre_id: UUID,
        *,
        cmd: WithdrawSuccessor,
        expected: int | None,
    ) -> Accepted:
        """A cadre is no longer a successor for the post."""
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.withdraw_successor(team, post_id, cadre_id=cadre_id, reason=cmd.reason),
        )

    async def appoint(
        self,
        ctx: CommandContext,
        org_code: str,
        post_id: UUID,
        cmd: Appoint,
        expected: int | None,
        *,
        procedure_id: UUID | None = None,
    ) -> Accepted:
        """Appoint a reserve of the actor's subtree out of the pool to a post; the registry takes it out of the pool.

        The same appointment again (the cadre holds the post by this document since that day) is answered with no
        events: a directive applied again after a crash, or a retried request, records it once (ADR 0042).
        `procedure_id` names the procedure of a level above that decided it (its `appoint` directive).
        """
        can_write(ctx.actor)
        await unit_path(self._pool, org_code, ctx.actor)  # in the actor's subtree (else 404), before any answer
        events = [r.event for r in await self._store.read_stream(team_stream(org_code))]
        if rules.appointed_before(events, post_id, cmd.cadre_id, cmd.document_number):
            return Accepted.of(team_stream(org_code), len(events), [])
        cadre = await self._cadre_to_change(ctx, cmd.cadre_id)
        return await self._decide(
            ctx,
            org_code,
            expected,
            lambda team: rules.appoint_cadre(
                team,
                post_id,
                cadre_id=cmd.cadre_id,
                full_name=cadre["full_name"],
                nominated_on=cadre["nominated_on"],
                appointed_on=cmd.appointed_on,
                document_number=cmd.document_number,
                ends_by=cmd.ends_by,
                over_quota=cmd.over_quota,
                today=ctx.day,
                procedure_id=procedure_id,
            ),
        )

    async def appointment_of(
        self, actor: Actor, concluded: ProcedureConcluded, today: date
    ) -> tuple[str, rules.Team, list[Event]]:
        """What an appointment procedure's outcome records: the post's unit path, its team, the appointment's events.

        Refused as the same appointment made directly would be: the post not one of the teams' (422), outside
        the actor's subtree (404), the cadre out of the pool, the quota full (422; an appointment over the
        quota is made directly, with its decision).
        """
        post_id = concluded.post_id
        post = await self._pool.fetchrow("SELECT org_code, org_path FROM posts WHERE post_id = $1", post_id)
        if post_id is None or post is None:
            msg = f"the motion's post {concluded.post_id} is not a post of a leadership team"
            raise RuleViolationError(msg)
        require_scope(actor, str(post["org_path"]), f"post {concluded.post_id}")
        cadre = await self._pool.fetchrow(
            "SELECT full_name, nominated_on, in_pool FROM pool_cadres WHERE cadre_id = $1", concluded.candidate_id
        )
        if cadre is None or not cadre["in_pool"]:
            msg = f"cadre {concluded.candidate_id} is not in the reserve pool"
            raise RuleViolationError(msg)
        team = await self._team(str(post["org_code"]))
        events = rules.appoint_cadre(
            team,
            post_id,
            cadre_id=concluded.candidate_id,
            full_name=cadre["full_name"],
            nominated_on=cadre["nominated_on"],
            appointed_on=concluded.document_date,
            document_number=concluded.document_number,
            ends_by=None,
            over_quota=None,
            today=today,
            procedure_id=concluded.procedure_id,
        )
        return str(post["org_path"]), team, events

    async def appoint_by_procedure(self, envelope: Envelope, concluded: ProcedureConcluded) -> Accepted | None:
        """An appointment procedure concluded: record the appointment in the post's team, once.

        Selection acts on its own authority (role `system`). A redelivery finds the appointment naming this
        procedure in the team's stream and appends nothing (None). A post of a unit that a deployment below
        this one owns is left to it: the sync service sends it the outcome as an `appoint` directive, and its
        selection records the appointment there (None here, ADR 0042).
        """
        post_path = await self._pool.fetchval("SELECT org_path FROM posts WHERE post_id = $1", concluded.post_id)
        unit = post_path or concluded.unit_path
        if unit is not None and self._store.topology.owner_of(str(unit)) is not None:
            return None
        ctx = CommandContext.reacting_to(envelope, "selection", org_path=str(post_path or envelope.org_path))

        async def attempt() -> Accepted | None:
            post = await self._pool.fetchval("SELECT org_code FROM posts WHERE post_id = $1", concluded.post_id)
            if post is not None:
                history = await self._store.read_stream(team_stream(str(post)))
                if any(
                    isinstance(r.event, CadreAppointed) and r.event.procedure_id == concluded.procedure_id
                    for r in history
                ):
                    return None
            path, team, events = await self.appointment_of(ctx.actor, concluded, ctx.day)
            return await record(self._store, team_stream(team.org_code), team.version, events, ctx=ctx, org_path=path)

        return await retrying(attempt, expected=None)

    async def rate_potential(self, ctx: CommandContext, cadre_id: UUID, cmd: RatePotential) -> Accepted:
        """Rate the potential of a cadre of the actor's subtree (the actor is the rater)."""
        cadre = await self._cadre_to_change(ctx, cadre_id)
        stream = cadre_stream(cadre_id)
        event = PotentialRated(cadre_id=cadre_id, potential=cmd.potential, cycle=cmd.cycle, reason=cmd.reason)

        async def attempt() -> Accepted:
            history = await self._store.read_stream(stream)
            version = history[-1].envelope.stream_version if history else 0
            return await record(
                self._store, stream, version, [event], ctx=ctx, org_path=cadre["org_path"], cadre_id=cadre_id
            )

        return await retrying(attempt, expected=None)
