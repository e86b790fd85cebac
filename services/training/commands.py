"""Training's commands: load the stream, apply the rules, append what they decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from uuid import UUID

from pydantic import Field

from contracts.envelope import Envelope, OrgCode, Role, Sha256, uuid7
from contracts.registry import CadreRetired, Name, Statement, Text
from contracts.training import (
    Hours,
    PostingAssigned,
    PostingKind,
    PostingOutcome,
    ProgramPlan,
    SelfStudyKind,
    SelfStudyLogged,
    SelfStudyReported,
    Topic,
    TrainingProgramScheduled,
    WithdrawalReason,
)
from runtime.auth import can_write, require_role, require_scope, unit_path
from runtime.commands import Accepted, Command, Decision, Streams, change, start
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from runtime.received import cadre_stream
from runtime.registry_view import pool_cadre
from runtime.store import EventStore
from services.training import rules

program_stream = Streams("program")
"""Stream id of a programme."""


class ScheduleProgram(ProgramPlan, Command):
    """Schedule an organized training programme."""

    program_id: UUID | None = Field(default=None, description="Chosen by the caller to make retries safe")


class CancelProgram(Command):
    """Cancel a programme (its enrolments are withdrawn)."""

    reason: Statement


class Enrol(Command):
    """Enrol a cadre in a programme."""

    cadre_id: UUID


class Withdraw(Command):
    """End an enrolment without completion."""

    note: Text = ""


class Complete(Command):
    """Record that a cadre completed a programme."""

    completed_on: date
    hours: Hours
    score: int | None = Field(default=None, ge=0, le=100)
    passed: bool = True


class RecordAttendance(Command):
    """Record after the fact that a cadre completed a programme that already ran."""

    cadre_id: UUID
    completed_on: date
    hours: Hours
    score: int | None = Field(default=None, ge=0, le=100)
    passed: bool = True
    evidence: Statement = Field(description="What shows the cadre attended (certificate, register)")


class LogSelfStudy(Command):
    """Log autonomous study."""

    entry_id: UUID | None = None
    kind: SelfStudyKind
    topic: Topic
    studied_on: date
    hours: Hours
    evidence: Statement


class ReportSelfStudy(Command):
    """A cadre reports their own autonomous study, with the evidence document's name and SHA-256."""

    entry_id: UUID | None = Field(default=None, description="Chosen by the caller to make retries safe")
    kind: SelfStudyKind
    topic: Topic
    studied_on: date
    hours: Hours
    evidence_name: Name = Field(description="The evidence document's file name")
    evidence_sha256: Sha256 = Field(description="The evidence document's SHA-256, lower-case hex")


class RejectSelfStudy(Command):
    """Reject a reported self-study, saying why."""

    reason: Statement


class AssignPosting(Command):
    """Post a cadre for practical training."""

    posting_id: UUID | None = None
    kind: PostingKind
    host_org_code: OrgCode
    position: Name
    starts_on: date
    planned_end_on: date
    purpose: Text = ""


class EndPosting(Command):
    """End a posting, as planned or cut short."""

    ended_on: date
    outcome: PostingOutcome
    summary: Text = ""


class TrainingCommands:
    """Handles training's commands against its store and its own tables."""

    def __init__(self, store: EventStore, pool: Pool) -> None:
        self._store = store
        self._pool = pool

    async def _cadre_to_change(self, ctx: CommandContext, cadre_id: UUID) -> Any:
        """The cadre an organizer (else 403) changes: in scope (else 404) and in the pool (else 422)."""
        can_write(ctx.actor)
        return await pool_cadre(self._pool, ctx.actor, cadre_id, own=True)

    async def _program(self, program_id: UUID) -> rules.Program:
        history = await self._store.read_stream(program_stream(program_id))
        program = rules.Program.replay([r.event for r in history], history[0].envelope.org_path if history else "")
        if program is None:
            msg = f"programme {program_id} not found"
            raise NotFoundError(msg)
        return program

    async def _visible_program(self, ctx: CommandContext, program_id: UUID) -> rules.Program:
        program = await self._program(program_id)
        if not ctx.actor.reaches(program.org_path):
            msg = f"programme {program_id} not found"
            raise NotFoundError(msg)
        return program

    async def schedule_program(self, ctx: CommandContext, cmd: ScheduleProgram) -> Accepted:
        """Schedule a programme organized by a unit of the actor's subtree."""
        can_write(ctx.actor)
        path = await unit_path(self._pool, cmd.organizer_code, ctx.actor)
        program_id = cmd.program_id or uuid7()
        event = TrainingProgramScheduled(program_id=program_id, **cmd.model_dump(exclude={"program_id"}))
        events = rules.schedule(event)
        already = f"programme {program_id} is already scheduled"
        return await start(self._store, program_stream(program_id), events, ctx=ctx, org_path=path, exists=already)

    async def cancel_program(
        self, ctx: CommandContext, program_id: UUID, cmd: CancelProgram, expected: int | None
    ) -> Accepted:
        """Cancel a programme the actor's subtree organizes."""
        can_write(ctx.actor)

        def decide(program: rules.Program) -> Decision:
            return Decision(rules.cancel(program, cmd.reason), program.org_path)

        return await self._change_program(ctx, program_id, decide, expected, organizer=True)

    async def enrol(self, ctx: CommandContext, program_id: UUID, cmd: Enrol, expected: int | None) -> Accepted:
        """Enrol a cadre of the actor's subtree in a programme it may use."""
        cadre = await self._cadre_to_change(ctx, cmd.cadre_id)

        def decide(program: rules.Program) -> Decision:
            return Decision(rules.enrol(program, cmd.cadre_id, ctx.day), cadre["org_path"], cmd.cadre_id)

        return await self._change_program(ctx, program_id, decide, expected)

    async def withdraw(
        self, ctx: CommandContext, program_id: UUID, cadre_id: UUID, cmd: Withdraw, expected: int | None
    ) -> Accepted:
        """Withdraw a cadre of the actor's subtree from a programme."""
        cadre = await self._cadre_to_change(ctx, cadre_id)

        def decide(program: rules.Program) -> Decision:
            events = rules.withdraw(program, cadre_id, WithdrawalReason.WITHDREW, cmd.note)
            if not events:
                msg = "the cadre is not enrolled in this programme"
                raise RuleViolationError(msg)
            return Decision(events, cadre["org_path"], cadre_id)

        return await self._change_program(ctx, program_id, decide, expected)

    async def complete(
        self, ctx: CommandContext, program_id: UUID, cadre_id: UUID, cmd: Complete, expected: int | None
    ) -> Accepted:
        """Record a completion: by the programme's organizer (its subtree)."""
        can_write(ctx.actor)

        async def decide(program: rules.Program) -> Decision:
            events = rules.complete(
                program, cadre_id, completed_on=cmd.completed_on, hours=cmd.hours, score=cmd.score, passed=cmd.passed
            )
            path = await self._pool.fetchval("SELECT org_path FROM pool_cadres WHERE cadre_id = $1", cadre_id)
            return Decision(events, str(path or program.org_path), cadre_id)

        return await self._change_program(ctx, program_id, decide, expected, organizer=True)

    async def record_attendance(
        self, ctx: CommandContext, program_id: UUID, cmd: RecordAttendance, expected: int | None
    ) -> Accepted:
        """Record a past completion of a cadre of the actor's subtree, in a programme it may use (as enrolment)."""
        cadre = await self._cadre_to_change(ctx, cmd.cadre_id)

        def decide(program: rules.Program) -> Decision:
            events = rules.record_attendance(
                program,
                cmd.cadre_id,
                completed_on=cmd.completed_on,
                hours=cmd.hours,
                score=cmd.score,
                passed=cmd.passed,
                evidence=cmd.evidence,
                today=ctx.day,
            )
            return Decision(events, cadre["org_path"], cmd.cadre_id)

        return await self._change_program(ctx, program_id, decide, expected)

    async def _change_program(
        self,
        ctx: CommandContext,
        program_id: UUID,
        decide: Callable[[rules.Program], Decision | Awaitable[Decision]],
        expected: int | None,
        *,
        organizer: bool = False,
    ) -> Accepted:
        """Change a programme the actor may use (`organizer`: one its subtree organizes) as `decide` says."""

        async def load() -> rules.Program:
            program = await self._visible_program(ctx, program_id)
            if organizer:
                require_scope(ctx.actor, program.org_path, f"programme {program_id}")
            return program

        return await change(self._store, program_stream(program_id), load, decide, ctx=ctx, expected=expected)

    async def _cadre_training(self, cadre_id: UUID) -> rules.CadreTraining:
        history = await self._store.read_stream(cadre_stream(cadre_id))
        return rules.CadreTraining.replay(cadre_id, [r.event for r in history])

    async def log_self_study(self, ctx: CommandContext, cadre_id: UUID, cmd: LogSelfStudy) -> Accepted:
        """Log a cadre's autonomous study."""
        cadre = await self._cadre_to_change(ctx, cadre_id)
        if cmd.studied_on > ctx.day:
            msg = "study cannot be logged for a day that has not come"
            raise RuleViolationError(msg)
        entry_id = cmd.entry_id or uuid7()

        def decide(state: rules.CadreTraining) -> Decision:
            if entry_id in state.self_study_entries:
                msg = f"self-study entry {entry_id} is already logged"
                raise ConflictError(msg)
            event = SelfStudyLogged(
                entry_id=entry_id,
                cadre_id=cadre_id,
                kind=cmd.kind,
                topic_studied=cmd.topic,
                studied_on=cmd.studied_on,
                hours=cmd.hours,
                evidence=cmd.evidence,
            )
            return Decision([event], cadre["org_path"], cadre_id)

        return await self._change_cadre(ctx, cadre_id, decide, expected=None)

    async def report_self_study(self, ctx: CommandContext, cadre_id: UUID, cmd: ReportSelfStudy) -> Accepted:
        """A cadre reports their own study (another cadre: 404); it waits for an organizer's confirmation."""
        cadre = await pool_cadre(self._pool, ctx.actor, cadre_id, own=True)
        require_role(ctx.actor, Role.CADRE)  # organizers log what they saw themselves (log_self_study)
        entry_id = cmd.entry_id or uuid7()
        event = SelfStudyReported(
            entry_id=entry_id,
            cadre_id=cadre_id,
            kind=cmd.kind,
            topic_studied=cmd.topic,
            studied_on=cmd.studied_on,
            hours=cmd.hours,
            evidence_name=cmd.evidence_name,
            evidence_sha256=cmd.evidence_sha256,
        )

        def decide(state: rules.CadreTraining) -> Decision:
            return Decision(rules.report_self_study(state, event, ctx.day), cadre["org_path"], cadre_id)

        return await self._change_cadre(ctx, cadre_id, decide, expected=None)

    async def decide_self_study(
        self,
        ctx: CommandContext,
        cadre_id: UUID,
        entry_id: UUID,
        *,
        confirm: bool,
        reason: str = "",
        expected: int | None = None,
    ) -> Accepted:
        """An organizer of the cadre's subtree confirms a waiting report (its hours count) or rejects it."""
        cadre = await self._cadre_to_change(ctx, cadre_id)

        def decide(state: rules.CadreTraining) -> Decision:
            events = rules.decide_report(state, entry_id, confirm=confirm, reason=reason)
            return Decision(events, cadre["org_path"], cadre_id)

        return await self._change_cadre(ctx, cadre_id, decide, expected)

    async def assign_posting(
        self, ctx: CommandContext, cadre_id: UUID, cmd: AssignPosting, expected: int | None
    ) -> Accepted:
        """Post a cadre of the actor's subtree to a host unit (anywhere in the organization)."""
        cadre = await self._cadre_to_change(ctx, cadre_id)
        host = await self._pool.fetchrow("SELECT name FROM units WHERE code = $1", cmd.host_org_code)
        if host is None:
            msg = f"host unit {cmd.host_org_code} not found"
            raise NotFoundError(msg)
        posting_id = cmd.posting_id or uuid7()

        event = PostingAssigned(
            posting_id=posting_id,
            cadre_id=cadre_id,
            host_unit_name=host["name"],
            **cmd.model_dump(exclude={"posting_id"}),
        )

        def decide(state: rules.CadreTraining) -> Decision:
            return Decision(rules.assign_posting(state, event), cadre["org_path"], cadre_id)

        return await self._change_cadre(ctx, cadre_id, decide, expected)

    async def end_posting(
        self, ctx: CommandContext, cadre_id: UUID, posting_id: UUID, cmd: EndPosting, expected: int | None
    ) -> Accepted:
        """End a cadre's posting."""
        cadre = await self._cadre_to_change(ctx, cadre_id)

        def decide(state: rules.CadreTraining) -> Decision:
            events = rules.end_posting(
                state, posting_id, ended_on=cmd.ended_on, outcome=cmd.outcome, summary=cmd.summary
            )
            return Decision(events, cadre["org_path"], cadre_id)

        return await self._change_cadre(ctx, cadre_id, decide, expected)

    async def _change_cadre(
        self,
        ctx: CommandContext,
        cadre_id: UUID,
        decide: Callable[[rules.CadreTraining], Decision],
        expected: int | None,
    ) -> Accepted:
        """Change a cadre's training stream as `decide` says."""
        return await change(
            self._store,
            cadre_stream(cadre_id),
            lambda: self._cadre_training(cadre_id),
            decide,
            ctx=ctx,
            expected=expected,
        )

    async def close_for_retired(self, envelope: Envelope, retired: CadreRetired) -> int:
        """The cadre left the pool: withdraw its open enrolments, cut its open posting short.

        Idempotent by state: a second delivery finds nothing open and appends nothing.
        Returns how many events were appended.
        """
        ctx = CommandContext.reacting_to(envelope, "training")
        appended = 0
        open_programs = await self._pool.fetch(
            "SELECT program_id FROM enrolments WHERE cadre_id = $1 AND status = 'enrolled'", retired.cadre_id
        )
        for row in open_programs:

            async def program(program_id: UUID = row["program_id"]) -> rules.Program:
                return await self._program(program_id)

            def withdraw(program: rules.Program) -> Decision:
                events = rules.withdraw(program, retired.cadre_id, WithdrawalReason.CADRE_RETIRED, retired.note)
                return Decision(events, envelope.org_path, retired.cadre_id)

            stream = program_stream(row["program_id"])
            appended += len((await change(self._store, stream, program, withdraw, ctx=ctx, expected=None)).events)

        def cut_short(state: rules.CadreTraining) -> Decision:
            events = rules.cut_short_on_retirement(state, retired.effective_on)
            return Decision(events, envelope.org_path, retired.cadre_id)

        appended += len((await self._change_cadre(ctx, retired.cadre_id, cut_short, expected=None)).events)
        return appended
