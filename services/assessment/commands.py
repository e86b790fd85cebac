"""Assessment's commands: load the stream, apply the rules, append what they decide."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from pydantic import Field

from contracts.assessment import (
    AssessmentCycleOpened,
    CheckInRecorded,
    CyclePeriod,
    DimensionScores,
    EvaluationRecorded,
    Grade,
    ReminderIssued,
    Severity,
)
from contracts.envelope import OrgCode, Role, in_subtree, uuid7
from contracts.event import Event
from contracts.registry import Name, Statement, Text
from runtime import clock
from runtime.auth import can_write, require_scope, unit_path
from runtime.commands import Accepted, Command, Decision, Streams, change, check_expected, record, start
from runtime.context import CommandContext
from runtime.db import Pool, in_subtree_sql
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from runtime.received import cadre_stream
from runtime.registry_view import pool_cadre
from runtime.store import EventStore
from services.assessment import rules

cycle_stream = Streams("cycle")
"""Stream id of an assessment cycle."""


class OpenCycle(Command):
    """Open an assessment cycle for a subtree and a period."""

    cycle_id: UUID | None = None
    org_code: OrgCode
    period: CyclePeriod
    name: Name
    starts_on: date
    ends_on: date


class Evaluate(Command):
    """Record a cadre's evaluation in a cycle (or correct one with `supersedes`)."""

    evaluation_id: UUID | None = None
    cycle_id: UUID
    grade: Grade
    scores: DimensionScores
    evaluator_name: Name
    comments: Text = ""
    evidence: list[Text] = Field(default_factory=list, max_length=50)
    supersedes: UUID | None = None


class CheckIn(Command):
    """Record a conversation about a cadre's thinking, work and life."""

    check_in_id: UUID | None = None
    held_on: date
    thinking: Text = ""
    work: Text = ""
    life: Text = ""
    follow_up: Text = ""


class IssueReminder(Command):
    """Point out a problem showing signs or tendencies."""

    reminder_id: UUID | None = None
    concern: Statement
    severity: Severity
    follow_up_on: date


class ResolveReminder(Command):
    """Close a reminder after its follow-up."""

    resolution: Statement


class RejectExit(Command):
    """Decide against an exit recommendation: the cadre stays in the pool."""

    reason: Statement


class AssessmentCommands:
    """Handles assessment's commands against its store and its own tables."""

    def __init__(self, store: EventStore, pool: Pool, policy: rules.SweepPolicy) -> None:
        self._store = store
        self._pool = pool
        self._policy = policy

    async def _cadre_to_change(self, ctx: CommandContext, cadre_id: UUID) -> Any:
        """The cadre an organizer (else 403) changes: in scope (else 404) and in the pool (else 422)."""
        can_write(ctx.actor)
        return await pool_cadre(self._pool, ctx.actor, cadre_id, left=": the case is closed")

    async def _cycle(self, ctx: CommandContext, cycle_id: UUID) -> rules.Cycle:
        """A cycle over the actor's subtree or above it (those it evaluates in); any other answers 404."""
        history = await self._store.read_stream(cycle_stream(cycle_id))
        cycle = rules.Cycle.replay([r.event for r in history], history[0].envelope.org_path if history else "")
        if cycle is None or not ctx.actor.reaches(cycle.org_path):
            msg = f"cycle {cycle_id} not found"
            raise NotFoundError(msg)
        return cycle

    async def file(self, cadre_id: UUID) -> rules.CadreFile:
        """A cadre's file, folded from its stream."""
        history = await self._store.read_stream(cadre_stream(cadre_id))
        cycle_ids = [r.event.cycle_id for r in history if isinstance(r.event, EvaluationRecorded)]
        starts = await self._pool.fetch("SELECT cycle_id, starts_on FROM cycles WHERE cycle_id = ANY($1)", cycle_ids)
        return rules.CadreFile.replay(
            cadre_id,
            [r.event for r in history],
            {row["cycle_id"]: row["starts_on"] for row in starts},
            [clock.date_of(r.envelope.occurred_at) for r in history],
        )

    async def open_cycle(self, ctx: CommandContext, cmd: OpenCycle) -> Accepted:
        """Open a cycle over a subtree the actor covers."""
        can_write(ctx.actor)
        path = await unit_path(self._pool, cmd.org_code, ctx.actor)
        cycle_id = cmd.cycle_id or uuid7()
        event = AssessmentCycleOpened(cycle_id=cycle_id, **cmd.model_dump(exclude={"cycle_id"}))
        already = f"cycle {cycle_id} is already open"
        return await start(
            self._store, cycle_stream(cycle_id), rules.open_cycle(event), ctx=ctx, org_path=path, exists=already
        )

    async def close_cycle(self, ctx: CommandContext, cycle_id: UUID, expected: int | None) -> Accepted:
        """Close a cycle of the actor's subtree."""
        can_write(ctx.actor)
        cycle = await self._cycle(ctx, cycle_id)
        require_scope(ctx.actor, cycle.org_path, f"cycle {cycle_id}")
        check_expected(cycle_stream(cycle_id), expected, cycle.version)
        events = rules.close_cycle(cycle, ctx.day)
        return await record(
            self._store, cycle_stream(cycle_id), cycle.version, events, ctx=ctx, org_path=cycle.org_path
        )

    async def evaluate(self, ctx: CommandContext, cadre_id: UUID, cmd: Evaluate, expected: int | None) -> Accepted:
        """Record an evaluation; the reminders and exits it calls for are recorded with it."""
        cadre = await self._cadre_to_change(ctx, cadre_id)
        cycle = await self._cycle(ctx, cmd.cycle_id)
        if not in_subtree(cadre["org_path"], cycle.org_path):
            msg = "the cadre is not in this cycle's subtree"
            raise RuleViolationError(msg)
        evaluation = EvaluationRecorded(
            evaluation_id=cmd.evaluation_id or uuid7(),
            cadre_id=cadre_id,
            evaluator_id=ctx.actor.user,
            **cmd.model_dump(exclude={"evaluation_id"}),
        )
        follow_up = ctx.day + timedelta(days=self._policy.follow_up_days)

        async def load() -> rules.CadreFile:
            file = await self.file(cadre_id)
            if any(e.evaluation_id == evaluation.evaluation_id for e in file.evaluations):
                msg = f"evaluation {evaluation.evaluation_id} is already recorded"
                raise ConflictError(msg)
            return file

        def decide(file: rules.CadreFile) -> Decision:
            return Decision(
                rules.evaluate(file, cycle, evaluation, follow_up_on=follow_up), cadre["org_path"], cadre_id
            )

        return await change(self._store, cadre_stream(cadre_id), load, decide, ctx=ctx, expected=expected)

    async def check_in(self, ctx: CommandContext, cadre_id: UUID, cmd: CheckIn) -> Accepted:
        """Record a check-in held with the cadre: by an organizer, or by the cadre's own mentor (a viewer's grant)."""
        cadre = await pool_cadre(self._pool, ctx.actor, cadre_id, left=": the case is closed")
        if not (ctx.actor.role is Role.VIEWER and cadre["mentor_user"] == ctx.actor.user):
            can_write(ctx.actor)
        event = CheckInRecorded(
            check_in_id=cmd.check_in_id or uuid7(),
            cadre_id=cadre_id,
            held_by=ctx.actor.user,
            **cmd.model_dump(exclude={"check_in_id"}),
        )

        return await self._change_file(ctx, cadre, lambda file: rules.check_in(file, event, ctx.day))

    async def issue_reminder(self, ctx: CommandContext, cadre_id: UUID, cmd: IssueReminder) -> Accepted:
        """Issue a reminder by hand."""
        cadre = await self._cadre_to_change(ctx, cadre_id)
        reminder = ReminderIssued(
            reminder_id=cmd.reminder_id or uuid7(), cadre_id=cadre_id, **cmd.model_dump(exclude={"reminder_id"})
        )

        return await self._change_file(ctx, cadre, lambda file: rules.issue_reminder(file, reminder, ctx.day))

    async def resolve_reminder(
        self, ctx: CommandContext, cadre_id: UUID, reminder_id: UUID, cmd: ResolveReminder
    ) -> Accepted:
        """Resolve an open reminder."""
        cadre = await self._cadre_to_change(ctx, cadre_id)

        return await self._change_file(
            ctx, cadre, lambda file: rules.resolve_reminder(file, reminder_id, cmd.resolution, ctx.day)
        )

    async def reject_exit(
        self, ctx: CommandContext, cadre_id: UUID, recommendation_id: UUID, cmd: RejectExit
    ) -> Accepted:
        """Decide against an exit recommendation (the organizer's other answer to it is the registry's retirement)."""
        cadre = await self._cadre_to_change(ctx, cadre_id)

        return await self._change_file(ctx, cadre, lambda file: rules.reject_exit(file, recommendation_id, cmd.reason))

    async def sweep(self, ctx: CommandContext, root_path: str) -> int:
        """Run the periodic reminder rules over the pool of a subtree; return the reminders raised."""
        today = ctx.day
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.org_path, c.nominated_on,"  # noqa: S608 - fixed clauses, values bound
            " coalesce(h.organized, 0) + coalesce(h.self_study, 0) AS hours"
            " FROM pool_cadres c LEFT JOIN training_hours h ON h.cadre_id = c.cadre_id AND h.year = $2"
            f" WHERE c.in_pool AND {in_subtree_sql('c.org_path', '$1')} ORDER BY c.cadre_id",
            root_path,
            today.year,
        )
        raised = 0
        for row in rows:

            def decide(file: rules.CadreFile, row: Any = row) -> list[Event]:
                return rules.sweep(
                    file,
                    in_pool_since=row["nominated_on"],
                    training_hours_this_year=row["hours"],
                    today=today,
                    policy=self._policy,
                )

            raised += len((await self._change_file(ctx, row, decide)).events)
        return raised

    async def _change_file(
        self, ctx: CommandContext, cadre: Any, decide: Callable[[rules.CadreFile], list[Event]]
    ) -> Accepted:
        """Change the file of `cadre` (its pool row) as `decide` says; on a race it decides again on the new file."""
        cadre_id: UUID = cadre["cadre_id"]

        def decision(file: rules.CadreFile) -> Decision:
            return Decision(decide(file), cadre["org_path"], cadre_id)

        return await change(
            self._store, cadre_stream(cadre_id), lambda: self.file(cadre_id), decision, ctx=ctx, expected=None
        )
