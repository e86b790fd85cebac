"""Assessment's rules: pure functions over plain values, no I/O.

One evaluation per cadre per cycle (corrections supersede), care and reminders when a
problem shows signs or tendencies, exits by "survival of the fittest", and the ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from uuid import UUID

from contracts.assessment import (
    AssessmentCycleClosed,
    AssessmentCycleOpened,
    CheckInRecorded,
    DimensionScores,
    EvaluationRecorded,
    ExitRecommendationRejected,
    ExitRecommended,
    ExitRule,
    Grade,
    ReminderIssued,
    ReminderResolved,
    ReminderRule,
    Severity,
)
from contracts.envelope import uuid7
from contracts.event import Event
from runtime.errors import ConflictError, NotFoundError, RuleViolationError

GRADE_POINTS: Mapping[Grade, int] = {
    Grade.EXCELLENT: 4,
    Grade.COMPETENT: 3,
    Grade.BASICALLY_COMPETENT: 2,
    Grade.INCOMPETENT: 0,
}


@dataclass(frozen=True)
class Cycle:
    """An assessment cycle as its stream knows it."""

    cycle_id: UUID
    org_path: str
    starts_on: date
    ends_on: date
    closed: bool
    version: int

    @classmethod
    def replay(cls, events: Sequence[Event], org_path: str) -> Cycle | None:
        """Fold a cycle's stream; None for one never opened."""
        cycle: Cycle | None = None
        for version, event in enumerate(events, start=1):
            if isinstance(event, AssessmentCycleOpened):
                cycle = Cycle(event.cycle_id, org_path, event.starts_on, event.ends_on, closed=False, version=version)
            elif isinstance(event, AssessmentCycleClosed) and cycle is not None:
                cycle = replace(cycle, closed=True, version=version)
        return cycle


def open_cycle(event: AssessmentCycleOpened) -> list[Event]:
    """A cycle's period must make sense."""
    if event.ends_on < event.starts_on:
        msg = f"the cycle ends ({event.ends_on}) before it starts ({event.starts_on})"
        raise RuleViolationError(msg)
    return [event]


def close_cycle(cycle: Cycle, on: date) -> list[Event]:
    """Close an open cycle."""
    if cycle.closed:
        msg = "the cycle is already closed"
        raise ConflictError(msg)
    return [AssessmentCycleClosed(cycle_id=cycle.cycle_id, closed_on=on)]


@dataclass(frozen=True)
class Evaluation:
    """One recorded evaluation."""

    evaluation_id: UUID
    cycle_id: UUID
    cycle_starts_on: date
    grade: Grade
    scores: DimensionScores
    superseded: bool = False


@dataclass(frozen=True)
class Reminder:
    """One reminder."""

    reminder_id: UUID
    rule: ReminderRule | None
    issued_on: date
    resolved: bool = False


@dataclass(frozen=True)
class CadreFile:
    """A cadre's assessment file as its stream knows it."""

    cadre_id: UUID
    evaluations: tuple[Evaluation, ...] = ()
    check_ins: tuple[date, ...] = ()
    check_in_ids: frozenset[UUID] = field(default_factory=frozenset)
    reminders: tuple[Reminder, ...] = ()
    exits: frozenset[ExitRule] = field(default_factory=frozenset)
    recommendations: tuple[UUID, ...] = ()
    rejected: frozenset[UUID] = field(default_factory=frozenset)
    version: int = 0

    def current(self) -> list[Evaluation]:
        """The evaluations that stand (not superseded), in cycle order."""
        return sorted((e for e in self.evaluations if not e.superseded), key=lambda e: e.cycle_starts_on)

    def open_reminder(self, rule: ReminderRule) -> Reminder | None:
        """An unresolved reminder raised by `rule`, if any."""
        return next((r for r in self.reminders if r.rule is rule and not r.resolved), None)

    @classmethod
    def replay(
        cls, cadre_id: UUID, events: Sequence[Event], cycle_starts: Mapping[UUID, date], days: Sequence[date]
    ) -> CadreFile:
        """Fold a cadre's stream (with the start of each cycle, and the day each event happened)."""
        file = CadreFile(cadre_id)
        for version, (event, day) in enumerate(zip(events, days, strict=True), start=1):
            match event:
                case EvaluationRecorded():
                    earlier = tuple(
                        replace(e, superseded=True) if e.evaluation_id == event.supersedes else e
                        for e in file.evaluations
                    )
                    added = Evaluation(
                        event.evaluation_id,
                        event.cycle_id,
                        cycle_starts.get(event.cycle_id, day),
                        event.grade,
                        event.scores,
                    )
                    file = replace(file, evaluations=(*earlier, added))
                case CheckInRecorded():
                    file = replace(
                        file,
                        check_ins=(*file.check_ins, event.held_on),
                        check_in_ids=file.check_in_ids | {event.check_in_id},
                    )
                case ReminderIssued():
                    file = replace(file, reminders=(*file.reminders, Reminder(event.reminder_id, event.rule, day)))
                case ReminderResolved():
                    reminders = tuple(
                        replace(r, resolved=True) if r.reminder_id == event.reminder_id else r for r in file.reminders
                    )
                    file = replace(file, reminders=reminders)
                case ExitRecommended():
                    file = replace(
                        file,
                        exits=file.exits | {event.rule},
                        recommendations=(*file.recommendations, event.recommendation_id),
                    )
                case ExitRecommendationRejected():
                    file = replace(file, rejected=file.rejected | {event.recommendation_id})
            file = replace(file, version=version)
        return file


def evaluate(file: CadreFile, cycle: Cycle, evaluation: EvaluationRecorded, *, follow_up_on: date) -> list[Event]:
    """Record an evaluation, then what the record now calls for (a reminder, an exit)."""
    if cycle.closed:
        msg = "the cycle is closed"
        raise RuleViolationError(msg)
    standing = next((e for e in file.current() if e.cycle_id == cycle.cycle_id), None)
    if evaluation.supersedes is None and standing is not None:
        msg = f"the cadre is already evaluated in this cycle ({standing.evaluation_id}); a correction supersedes it"
        raise ConflictError(msg, evaluation_id=str(standing.evaluation_id))
    if evaluation.supersedes is not None and (standing is None or standing.evaluation_id != evaluation.supersedes):
        msg = "a correction supersedes the evaluation that stands in the same cycle"
        raise RuleViolationError(msg)
    after = replace(
        file,
        evaluations=(
            *(replace(e, superseded=True) if e.evaluation_id == evaluation.supersedes else e for e in file.evaluations),
            Evaluation(evaluation.evaluation_id, cycle.cycle_id, cycle.starts_on, evaluation.grade, evaluation.scores),
        ),
    )
    return [evaluation, *falling_grade(after, follow_up_on), *exits(after)]


def falling_grade(file: CadreFile, follow_up_on: date) -> list[Event]:
    """Care and reminder: the latest grade is lower than the one before (once, while open)."""
    grades = file.current()
    if len(grades) < 2 or file.open_reminder(ReminderRule.FALLING_GRADE) is not None:  # noqa: PLR2004
        return []
    before, latest = grades[-2], grades[-1]
    if GRADE_POINTS[latest.grade] >= GRADE_POINTS[before.grade]:
        return []
    return [
        ReminderIssued(
            reminder_id=uuid7(),
            cadre_id=file.cadre_id,
            concern=f"grade fell from {before.grade.value} to {latest.grade.value}",
            severity=Severity.HIGH if latest.grade is Grade.INCOMPETENT else Severity.MEDIUM,
            follow_up_on=follow_up_on,
            rule=ReminderRule.FALLING_GRADE,
        )
    ]


def exits(file: CadreFile) -> list[Event]:
    """Survival of the fittest: an incompetent grade, or two basically competent in a row (once each)."""
    grades = file.current()
    if not grades:
        return []
    latest = grades[-1]
    if latest.grade is Grade.INCOMPETENT and ExitRule.INCOMPETENT_GRADE not in file.exits:
        return [_exit(file, ExitRule.INCOMPETENT_GRADE, [latest], "graded incompetent")]
    last_two = grades[-2:]
    if (
        len(last_two) == 2  # noqa: PLR2004
        and all(e.grade is Grade.BASICALLY_COMPETENT for e in last_two)
        and ExitRule.TWO_BASICALLY_COMPETENT not in file.exits
    ):
        return [_exit(file, ExitRule.TWO_BASICALLY_COMPETENT, last_two, "basically competent in two cycles in a row")]
    return []


def _exit(file: CadreFile, rule: ExitRule, evidence: Sequence[Evaluation], summary: str) -> ExitRecommended:
    return ExitRecommended(
        recommendation_id=uuid7(),
        cadre_id=file.cadre_id,
        rule=rule,
        evidence=[e.evaluation_id for e in evidence],
        summary=summary,
    )


def issue_reminder(file: CadreFile, reminder: ReminderIssued, today: date) -> list[Event]:
    """A reminder by hand: its follow-up lies ahead."""
    if any(r.reminder_id == reminder.reminder_id for r in file.reminders):
        msg = f"reminder {reminder.reminder_id} is already issued"
        raise ConflictError(msg)
    if reminder.follow_up_on < today:
        msg = "the follow-up date has passed"
        raise RuleViolationError(msg)
    return [reminder]


def check_in(file: CadreFile, check_in: CheckInRecorded, today: date) -> list[Event]:
    """Record a check-in that has been held (once)."""
    if check_in.check_in_id in file.check_in_ids:
        msg = f"check-in {check_in.check_in_id} is already recorded"
        raise ConflictError(msg)
    if check_in.held_on > today:
        msg = "a check-in cannot be recorded before it is held"
        raise RuleViolationError(msg)
    return [check_in]


def resolve_reminder(file: CadreFile, reminder_id: UUID, resolution: str, on: date) -> list[Event]:
    """Close an open reminder."""
    reminder = next((r for r in file.reminders if r.reminder_id == reminder_id), None)
    if reminder is None:
        msg = f"reminder {reminder_id} not found"
        raise RuleViolationError(msg)
    if reminder.resolved:
        msg = "the reminder is already resolved"
        raise ConflictError(msg)
    return [ReminderResolved(reminder_id=reminder_id, cadre_id=file.cadre_id, resolved_on=on, resolution=resolution)]


@dataclass(frozen=True)
class SweepPolicy:
    """When the periodic rules raise reminders (configurable per deployment)."""

    check_in_every_days: int
    """A cadre not talked with for longer than this is overdue a check-in."""
    training_due_after: tuple[int, int]
    """(month, day) from which a cadre with no training hours this year gets a reminder."""
    follow_up_days: int


def sweep(
    file: CadreFile, *, in_pool_since: date, training_hours_this_year: int, today: date, policy: SweepPolicy
) -> list[Event]:
    """The reminders the periodic rules call for now; none already raised and still open, none twice a year."""
    found: list[Event] = []
    follow_up = today + timedelta(days=policy.follow_up_days)
    last_talk = max([in_pool_since, *file.check_ins])
    if (today - last_talk).days > policy.check_in_every_days and file.open_reminder(
        ReminderRule.OVERDUE_CHECK_IN
    ) is None:
        found.append(
            ReminderIssued(
                reminder_id=uuid7(),
                cadre_id=file.cadre_id,
                concern=f"no check-in since {last_talk} ({(today - last_talk).days} days)",
                severity=Severity.MEDIUM,
                follow_up_on=follow_up,
                rule=ReminderRule.OVERDUE_CHECK_IN,
            )
        )
    month, day = policy.training_due_after
    raised_this_year = any(
        r.rule is ReminderRule.NO_TRAINING_HOURS and r.issued_on.year == today.year for r in file.reminders
    )
    if training_hours_this_year == 0 and today >= date(today.year, month, day) and not raised_this_year:
        found.append(
            ReminderIssued(
                reminder_id=uuid7(),
                cadre_id=file.cadre_id,
                concern=f"no training hours in {today.year} yet",
                severity=Severity.LOW,
                follow_up_on=follow_up,
                rule=ReminderRule.NO_TRAINING_HOURS,
            )
        )
    return found


@dataclass(frozen=True)
class RankingWeights:
    """How the ranking of a subtree weighs the record (documented in docs/assessment.md)."""

    grades: float
    dimensions: float
    postings: float
    training: float
    training_hours_target: int
    """Hours in the current year that count as full marks for training."""
    postings_target: int
    """Served postings that count as full marks for practical training."""


@dataclass(frozen=True)
class Standing:
    """What the ranking reads of one cadre."""

    grade_points: Sequence[int]
    dimension_average: float | None
    postings_served: int
    training_hours_this_year: int


def score(standing: Standing, weights: RankingWeights) -> float:
    """A cadre's ranking score, 0 to 100.

    100 * (w_g * mean grade points / 4 + w_d * mean dimension score / 100
    + w_p * min(postings / target, 1) + w_t * min(hours / target, 1)) / (w_g + w_d + w_p + w_t).
    A cadre never evaluated scores 0 on grades and dimensions.
    """
    grades = sum(standing.grade_points) / len(standing.grade_points) / 4 if standing.grade_points else 0.0
    dimensions = (standing.dimension_average or 0.0) / 100
    postings = min(standing.postings_served / max(weights.postings_target, 1), 1.0)
    training = min(standing.training_hours_this_year / max(weights.training_hours_target, 1), 1.0)
    total = weights.grades + weights.dimensions + weights.postings + weights.training
    weighted = (
        weights.grades * grades
        + weights.dimensions * dimensions
        + weights.postings * postings
        + weights.training * training
    )
    return round(100 * weighted / total, 2) if total else 0.0


def reject_exit(file: CadreFile, recommendation_id: UUID, reason: str) -> list[Event]:
    """Decide against an exit recommendation of this cadre (once)."""
    if recommendation_id not in file.recommendations:
        msg = f"exit recommendation {recommendation_id} not found"
        raise NotFoundError(msg)
    if recommendation_id in file.rejected:
        msg = "the exit recommendation is already rejected"
        raise ConflictError(msg)
    return [ExitRecommendationRejected(recommendation_id=recommendation_id, cadre_id=file.cadre_id, reason=reason)]
