"""The procedures' commands: load the procedure's stream, apply the rules, append what they decide.

Each procedure is the stream `procedure-<id>`; a unit's rules are `procedure-rules-<code>`,
its calendar adjustments `calendar-<code>`. The rules read "now" and "today" as of the
command's moment on the platform's clock (`CommandContext.occurred`), so a record entered
late is judged on its day, and a notice is never closed before its period ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from contracts.envelope import Envelope, OrgCode, in_subtree, uuid7
from contracts.event import Event
from contracts.procedure import (
    CalendarAdjusted,
    Candidate,
    Document,
    Inspection,
    MeetingVote,
    Motion,
    ProcedureConcluded,
    ProcedureKind,
    ProcedureOpened,
    ProcedureRules,
    ProcedureRulesSet,
    Talks,
)
from contracts.registry import Name, Statement, Text
from runtime import clock
from runtime.auth import can_write, unit_path
from runtime.commands import Accepted, Command, Decision, Streams, change, record, retrying, start
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from runtime.store import EventStore
from services.selection import procedures as rules
from services.selection.commands import SelectionCommands
from services.selection.working_days import WorkingCalendar, adjustments_for

Decide = Callable[["rules.Procedure", str, clock.Clock], Awaitable[list[Event]]]
"""What a step decides: the events for a procedure, at its unit's path, on the clock of the command's moment."""


procedure_stream = Streams("procedure")
"""Stream id of a procedure."""


class _Opening(Command):
    procedure_id: UUID | None = None
    org_code: OrgCode
    reason: Text = ""


class OpenEntry(_Opening):
    """Open a procedure into the pool: the candidate as the nomination will record them, and the reserve kind."""

    kind: Literal[ProcedureKind.ENTRY]
    candidate_id: UUID | None = None
    """The id the nomination will take (default: a new one)."""
    candidate: Candidate
    reserve_kind: Name


class OpenAppointment(_Opening):
    """Open a procedure onto a post: a cadre of the pool, and the motion (the post to fill and why)."""

    kind: Literal[ProcedureKind.APPOINTMENT]
    candidate_id: UUID
    motion: Motion


OpenProcedure = Annotated[OpenEntry | OpenAppointment, Field(discriminator="kind")]
"""Open a procedure: what each kind needs is in the schema (`kind` tells which), not a rule found at run time."""


class RecordRecommendation(Command):
    """The democratic recommendation: the meeting's ballot, the talks, the documents."""

    meeting: MeetingVote
    talks: Talks
    documents: tuple[Document, ...] = Field(default=(), max_length=20)


class RecordInspection(Inspection, Command):
    """The organizational inspection."""


class RecordDecision(Command):
    """The committee's collective decision."""

    held_on: date
    members: int = Field(ge=1, le=1000)
    present: int = Field(ge=0, le=1000)
    votes_for: int = Field(ge=0, le=1000)
    votes_against: int = Field(ge=0, le=1000)
    abstentions: int = Field(ge=0, le=1000)
    minutes: Document


class PublishNotice(Command):
    """The public notice: from today (or a later day) for the organization's working days at least."""

    starts_on: date | None = None
    working_days: int | None = Field(default=None, ge=1, le=60)
    where: Text = ""
    document: Document | None = None


class RaiseObjection(Command):
    """An objection received during the notice period."""

    objection_id: UUID | None = None
    summary: Statement
    document: Document | None = None


class ConcludeObjection(Command):
    """What looking into an objection found."""

    substantiated: bool
    finding: Statement
    document: Document | None = None


class Conclude(Command):
    """The outcome's document: admitted or appointed."""

    document_number: Name
    document_date: date


class StopProcedure(Command):
    """Stop a procedure with the reason."""

    reason: Statement


class SetRules(Command):
    """The rules a unit's procedures (and its subtree's) are judged by from now on."""

    rules: ProcedureRules


class AdjustCalendar(Command):
    """A day off or a working day of a unit (and its subtree) beside the public holidays."""

    day: date
    working: bool
    reason: Statement


class ProcedureCommands:
    """Handles the procedures' commands against the store and the service's own tables."""

    def __init__(self, store: EventStore, pool: Pool) -> None:
        self._store = store
        self._pool = pool

    async def rules_at(self, org_path: str) -> ProcedureRules:
        """The rules in force at a unit: its own, or the nearest unit's above it, or the common ones."""
        found = await self._pool.fetchval(
            "SELECT rules::text FROM procedure_rules WHERE $1 = org_path OR $1 LIKE org_path || '.%'"
            " ORDER BY length(org_path) DESC LIMIT 1",
            org_path,
        )
        return ProcedureRules() if found is None else ProcedureRules.model_validate_json(found)

    async def calendar_at(self, org_path: str) -> WorkingCalendar:
        """The working days of a unit: the country's, with its own and its ancestors' adjustments."""
        rows = await self._pool.fetch(
            "SELECT org_path, day, working FROM calendar_adjustments WHERE $1 = org_path OR $1 LIKE org_path || '.%'",
            org_path,
        )
        return WorkingCalendar(adjustments_for(org_path, [(r["org_path"], r["day"], r["working"]) for r in rows]))

    def recorded_at(self, unit: str) -> str:
        """Where a procedure at the unit `unit` (an org path) is recorded: the unit, as a rule.

        A unit that a deployment below this one owns is run from here by the level above (ADR 0039):
        the procedure is this level's record, at its root (its rules, its calendar, its committee),
        and its outcome goes down to the owning deployment as a directive (`admit` for an entry,
        `appoint` for an appointment, ADR 0042).
        """
        topology = self._store.topology
        if topology.root and in_subtree(unit, topology.root) and topology.owner_of(unit) is not None:
            return topology.root
        return unit

    async def load(self, ctx: CommandContext, procedure_id: UUID) -> tuple[rules.Procedure, str]:
        """A procedure of the actor's subtree, and its unit's path (404 for any other)."""
        history = await self._store.read_stream(procedure_stream(procedure_id))
        procedure = rules.Procedure.replay([r.event for r in history])
        if procedure is None or not ctx.actor.covers(history[0].envelope.org_path):
            msg = f"procedure {procedure_id} not found"
            raise NotFoundError(msg)
        return procedure, history[0].envelope.org_path

    async def file(self, procedure_id: UUID) -> tuple[list[Envelope], dict[int, str], tuple[int, str]]:
        """A procedure's envelopes, the `prev_hash` of the row after each, and the chain's head (for its check)."""
        links = await self._store.read_stream_links(procedure_stream(procedure_id))
        return links.envelopes, links.successors, links.head

    async def open(self, ctx: CommandContext, cmd: OpenProcedure) -> Accepted:
        """Open a procedure at a unit of the actor's subtree."""
        can_write(ctx.actor)
        unit = await unit_path(self._pool, cmd.org_code, ctx.actor)
        path = self.recorded_at(unit)
        if isinstance(cmd, OpenAppointment):
            cadre = await self._pool.fetchrow(
                "SELECT full_name, org_path, in_pool FROM pool_cadres WHERE cadre_id = $1", cmd.candidate_id
            )
            if cadre is None or not ctx.actor.covers(cadre["org_path"]):
                msg = f"cadre {cmd.candidate_id} not found"
                raise NotFoundError(msg)
            if not cadre["in_pool"]:
                msg = f"cadre {cmd.candidate_id} is not in the reserve pool"
                raise RuleViolationError(msg)
            name = str(cadre["full_name"])
            post_unit = await self._pool.fetchval("SELECT org_code FROM posts WHERE post_id = $1", cmd.motion.post_id)
            if post_unit != cmd.org_code:
                msg = f"post {cmd.motion.post_id} is not a post of {cmd.org_code}'s team"
                raise NotFoundError(msg) if post_unit is None else RuleViolationError(msg)
            candidate, reserve_kind, motion = None, None, cmd.motion
        else:
            name = cmd.candidate.full_name
            candidate, reserve_kind, motion = cmd.candidate, cmd.reserve_kind, None
        candidate_id = cmd.candidate_id or uuid7()
        running = await self._pool.fetchval(
            "SELECT procedure_id FROM procedures WHERE candidate_id = $1 AND kind = $2"
            " AND step NOT IN ('concluded', 'stopped')",
            candidate_id,
            cmd.kind.value,
        )
        if running is not None:
            msg = f"procedure {running} for this candidate is still running"
            raise ConflictError(msg)
        procedure_id = cmd.procedure_id or uuid7()
        opened = ProcedureOpened(
            procedure_id=procedure_id,
            kind=cmd.kind,
            org_code=cmd.org_code,
            candidate_id=candidate_id,
            candidate_name=name or "-",
            reserve_kind=reserve_kind,
            candidate=candidate,
            motion=motion,
            reason=cmd.reason,
            rules=await self.rules_at(path),
        )
        return await start(
            self._store,
            procedure_stream(procedure_id),
            rules.open_procedure(opened),
            ctx=ctx,
            org_path=path,
            cadre_id=candidate_id,
            exists=f"procedure {procedure_id} is already open",
        )

    async def _step(
        self,
        ctx: CommandContext,
        procedure_id: UUID,
        expected: int | None,
        decide: Decide,
    ) -> Accepted:
        can_write(ctx.actor)
        path = ""  # the procedure's unit, as `load` found it in this attempt

        async def load() -> rules.Procedure:
            nonlocal path
            procedure, path = await self.load(ctx, procedure_id)
            return procedure

        async def decision(procedure: rules.Procedure) -> Decision:
            events = await decide(procedure, path, clock.current().at(ctx.occurred))
            return Decision(events, path, procedure.opened.candidate_id)

        return await change(self._store, procedure_stream(procedure_id), load, decision, ctx=ctx, expected=expected)

    async def recommend(
        self, ctx: CommandContext, procedure_id: UUID, cmd: RecordRecommendation, expected: int | None
    ) -> Accepted:
        """Record the democratic recommendation."""

        async def decide(procedure: rules.Procedure, _: str, at: clock.Clock) -> list[Event]:
            return rules.record_recommendation(procedure, cmd.meeting, cmd.talks, cmd.documents, at.today())

        return await self._step(ctx, procedure_id, expected, decide)

    async def inspect(
        self, ctx: CommandContext, procedure_id: UUID, cmd: RecordInspection, expected: int | None
    ) -> Accepted:
        """Record the organizational inspection."""

        async def decide(procedure: rules.Procedure, _: str, __: clock.Clock) -> list[Event]:
            return rules.record_inspection(
                procedure,
                team=cmd.team,
                interviewed=cmd.interviewed,
                report=cmd.report,
                conclusion=cmd.conclusion,
                summary=cmd.summary,
                clean_record=cmd.clean_record,
            )

        return await self._step(ctx, procedure_id, expected, decide)

    async def decide(
        self, ctx: CommandContext, procedure_id: UUID, cmd: RecordDecision, expected: int | None
    ) -> Accepted:
        """Record the committee's decision."""

        async def decide(procedure: rules.Procedure, _: str, at: clock.Clock) -> list[Event]:
            return rules.record_decision(
                procedure,
                held_on=cmd.held_on,
                members=cmd.members,
                present=cmd.present,
                votes_for=cmd.votes_for,
                votes_against=cmd.votes_against,
                abstentions=cmd.abstentions,
                minutes=cmd.minutes,
                today=at.today(),
            )

        return await self._step(ctx, procedure_id, expected, decide)

    async def publish_notice(
        self, ctx: CommandContext, procedure_id: UUID, cmd: PublishNotice, expected: int | None
    ) -> Accepted:
        """Publish the public notice on the unit's calendar."""

        async def decide(procedure: rules.Procedure, path: str, at: clock.Clock) -> list[Event]:
            return rules.publish_notice(
                procedure,
                await self.calendar_at(path),
                at,
                starts_on=cmd.starts_on,
                working_days=cmd.working_days,
                where=cmd.where,
                document=cmd.document,
            )

        return await self._step(ctx, procedure_id, expected, decide)

    async def raise_objection(self, ctx: CommandContext, procedure_id: UUID, cmd: RaiseObjection) -> Accepted:
        """Record an objection received during the notice."""
        objection_id = cmd.objection_id or uuid7()

        async def decide(procedure: rules.Procedure, _: str, at: clock.Clock) -> list[Event]:
            return rules.raise_objection(
                procedure, at, objection_id=objection_id, summary=cmd.summary, document=cmd.document
            )

        return await self._step(ctx, procedure_id, None, decide)

    async def conclude_objection(
        self, ctx: CommandContext, procedure_id: UUID, objection_id: UUID, cmd: ConcludeObjection
    ) -> Accepted:
        """Record what looking into an objection found."""

        async def decide(procedure: rules.Procedure, _: str, __: clock.Clock) -> list[Event]:
            return rules.conclude_objection(
                procedure,
                objection_id=objection_id,
                substantiated=cmd.substantiated,
                finding=cmd.finding,
                document=cmd.document,
            )

        return await self._step(ctx, procedure_id, None, decide)

    async def close_notice(self, ctx: CommandContext, procedure_id: UUID, expected: int | None) -> Accepted:
        """Close the notice once its period ended and no objection is open."""

        async def decide(procedure: rules.Procedure, _: str, at: clock.Clock) -> list[Event]:
            return rules.close_notice(procedure, at)

        return await self._step(ctx, procedure_id, expected, decide)

    async def conclude(self, ctx: CommandContext, procedure_id: UUID, cmd: Conclude, expected: int | None) -> Accepted:
        """Record the outcome: admitted or appointed."""

        async def decide(procedure: rules.Procedure, _: str, at: clock.Clock) -> list[Event]:
            events = rules.conclude(
                procedure,
                document_number=cmd.document_number,
                document_date=cmd.document_date,
                today=at.today(),
                unit_path=await unit_path(self._pool, procedure.opened.org_code),
            )
            for concluded in events:
                if isinstance(concluded, ProcedureConcluded) and concluded.kind is ProcedureKind.APPOINTMENT:
                    # Refused now, with the reason, what the appointment that follows would be refused.
                    await SelectionCommands(self._store, self._pool).appointment_of(ctx.actor, concluded, at.today())
            return events

        return await self._step(ctx, procedure_id, expected, decide)

    async def stop(self, ctx: CommandContext, procedure_id: UUID, cmd: StopProcedure) -> Accepted:
        """Stop a procedure at its step, with the reason."""

        async def decide(procedure: rules.Procedure, _: str, __: clock.Clock) -> list[Event]:
            return rules.stop(procedure, cmd.reason)

        return await self._step(ctx, procedure_id, None, decide)

    async def set_rules(self, ctx: CommandContext, org_code: str, cmd: SetRules) -> Accepted:
        """Set a unit's procedure rules (procedures already open keep theirs)."""
        can_write(ctx.actor)
        path = await unit_path(self._pool, org_code, ctx.actor)
        return await self._append_setting(
            ctx, f"procedure-rules-{org_code}", path, ProcedureRulesSet(org_code=org_code, rules=cmd.rules)
        )

    async def adjust_calendar(self, ctx: CommandContext, org_code: str, cmd: AdjustCalendar) -> Accepted:
        """Record a unit's day off or working day beside the public holidays."""
        can_write(ctx.actor)
        path = await unit_path(self._pool, org_code, ctx.actor)
        event = CalendarAdjusted(org_code=org_code, day=cmd.day, working=cmd.working, reason=cmd.reason)
        return await self._append_setting(ctx, f"calendar-{org_code}", path, event)

    async def _append_setting(self, ctx: CommandContext, stream: str, path: str, event: Event) -> Accepted:
        async def attempt() -> Accepted:
            version = await self._pool.fetchval(
                "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream
            )
            return await record(self._store, stream, int(version), [event], ctx=ctx, org_path=path)

        return await retrying(attempt, expected=None)
