"""Assessment's rules, without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TypeVar
from uuid import UUID

import pytest

from contracts.assessment import (
    CheckInRecorded,
    DimensionScores,
    EvaluationRecorded,
    ExitRecommended,
    ExitRule,
    Grade,
    ReminderIssued,
    ReminderRule,
)
from contracts.envelope import uuid7
from contracts.event import Event
from runtime import clock
from runtime.errors import ConflictError, RuleViolationError
from services.assessment import rules

E = TypeVar("E", bound=Event)

CADRE = uuid7()
SCORES = DimensionScores(political_integrity=80, ability=75, diligence=82, performance=70, probity=90)
POLICY = rules.SweepPolicy(check_in_every_days=90, training_due_after=(7, 1), follow_up_days=30)


pytestmark = pytest.mark.dates


@pytest.fixture
def today() -> date:
    """The organization's date on the platform's clock (the tests run at awkward instants too)."""
    return clock.today()


def cycle(starts: date, *, closed: bool = False) -> rules.Cycle:
    return rules.Cycle(uuid7(), "qs", starts, starts + timedelta(days=30), closed=closed, version=1)


def evaluation(c: rules.Cycle, grade: Grade, supersedes: UUID | None = None) -> EvaluationRecorded:
    return EvaluationRecorded(
        evaluation_id=uuid7(),
        cycle_id=c.cycle_id,
        cadre_id=CADRE,
        grade=grade,
        scores=SCORES,
        evaluator_id="e",
        evaluator_name="Evaluator",
        supersedes=supersedes,
    )


def fold(events: list[Event], cycles: list[rules.Cycle], on: date | None = None) -> rules.CadreFile:
    """The cadre's file after `events`, all recorded on `on` (today)."""
    day = on or clock.today()
    return rules.CadreFile.replay(CADRE, events, {c.cycle_id: c.starts_on for c in cycles}, [day] * len(events))


def run(grades: list[Grade]) -> tuple[list[Event], list[rules.Cycle]]:
    """Evaluate one grade per yearly cycle, keeping everything the rules decide."""
    events: list[Event] = []
    cycles: list[rules.Cycle] = []
    today = clock.today()
    for year, grade in enumerate(grades):
        c = cycle(today - timedelta(days=365 * (len(grades) - year)))  # one a year, the last one a year ago
        cycles.append(c)
        events += rules.evaluate(fold(events, cycles), c, evaluation(c, grade), follow_up_on=today)
    return events, cycles


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def test_one_evaluation_per_cycle_and_corrections_supersede(today: date) -> None:
    c = cycle(today - timedelta(days=60))
    first = evaluation(c, Grade.COMPETENT)
    events = rules.evaluate(fold([], [c]), c, first, follow_up_on=today)
    file = fold(events, [c])
    with pytest.raises(ConflictError, match="already evaluated"):
        rules.evaluate(file, c, evaluation(c, Grade.EXCELLENT), follow_up_on=today)
    with pytest.raises(RuleViolationError, match="supersedes the evaluation that stands"):
        rules.evaluate(file, c, evaluation(c, Grade.EXCELLENT, supersedes=uuid7()), follow_up_on=today)
    correction = evaluation(c, Grade.EXCELLENT, supersedes=first.evaluation_id)
    corrected = fold([*events, *rules.evaluate(file, c, correction, follow_up_on=today)], [c])
    assert [e.grade for e in corrected.current()] == [Grade.EXCELLENT]
    assert len(corrected.evaluations) == 2  # the history keeps both
    with pytest.raises(RuleViolationError, match="closed"):
        rules.evaluate(
            fold([], [c]),
            rules.Cycle(c.cycle_id, "qs", c.starts_on, c.ends_on, closed=True, version=2),
            first,
            follow_up_on=today,
        )


def test_an_incompetent_grade_recommends_an_exit_once() -> None:
    events, _ = run([Grade.COMPETENT, Grade.INCOMPETENT, Grade.INCOMPETENT])
    [exit_] = of_type(events, ExitRecommended)
    assert exit_.rule is ExitRule.INCOMPETENT_GRADE
    assert len(exit_.evidence) == 1


def test_two_basically_competent_in_a_row_recommend_an_exit() -> None:
    events, _ = run([Grade.BASICALLY_COMPETENT, Grade.COMPETENT, Grade.BASICALLY_COMPETENT])
    assert of_type(events, ExitRecommended) == []
    events, _ = run([Grade.COMPETENT, Grade.BASICALLY_COMPETENT, Grade.BASICALLY_COMPETENT])
    [exit_] = of_type(events, ExitRecommended)
    assert exit_.rule is ExitRule.TWO_BASICALLY_COMPETENT
    assert len(exit_.evidence) == 2


def test_a_falling_grade_raises_a_reminder_while_none_is_open() -> None:
    events, _ = run([Grade.EXCELLENT, Grade.COMPETENT, Grade.BASICALLY_COMPETENT])
    reminders = of_type(events, ReminderIssued)
    assert len(reminders) == 1  # the second fall finds the first reminder still open
    [reminder] = reminders
    assert reminder.rule is ReminderRule.FALLING_GRADE
    assert "excellent to competent" in reminder.concern
    steady, _ = run([Grade.COMPETENT, Grade.COMPETENT, Grade.EXCELLENT])
    assert of_type(steady, ReminderIssued) == []


def test_overdue_check_in_is_raised_once_while_open(today: date) -> None:
    def sweep(*events: Event) -> list[Event]:
        return rules.sweep(
            fold(list(events), []),
            in_pool_since=today - timedelta(days=200),
            training_hours_this_year=10,
            today=today,
            policy=POLICY,
        )

    [overdue] = sweep()
    assert isinstance(overdue, ReminderIssued)
    assert overdue.rule is ReminderRule.OVERDUE_CHECK_IN
    assert sweep(overdue) == []
    assert (
        sweep(CheckInRecorded(check_in_id=uuid7(), cadre_id=CADRE, held_on=today - timedelta(days=10), held_by="m"))
        == []
    )


def test_no_training_hours_is_raised_once_a_year_after_its_date(today: date) -> None:
    due = date(today.year, 7, 1)  # POLICY.training_due_after, in the organization's current year
    file = fold([], [])

    def sweep(f: rules.CadreFile, day: date, hours: int = 0) -> list[Event]:
        return rules.sweep(f, in_pool_since=day, training_hours_this_year=hours, today=day, policy=POLICY)

    assert sweep(file, due - timedelta(days=1)) == []
    [missing] = sweep(file, due)
    assert isinstance(missing, ReminderIssued)
    assert missing.rule is ReminderRule.NO_TRAINING_HOURS
    raised = rules.CadreFile.replay(CADRE, [missing], {}, [due])
    assert sweep(raised, date(today.year, 12, 31)) == []  # once a year
    assert [e.rule for e in sweep(raised, date(today.year + 1, 7, 1)) if isinstance(e, ReminderIssued)] == [
        ReminderRule.NO_TRAINING_HOURS
    ]  # and again the next year
    assert sweep(file, due, hours=8) == []
    assert bool(sweep(file, today)) == (today >= due)  # and whatever today is


def test_the_ranking_score() -> None:
    weights = rules.RankingWeights(
        grades=0.5, dimensions=0.2, postings=0.15, training=0.15, training_hours_target=60, postings_target=2
    )
    best = rules.Standing(grade_points=[4, 4], dimension_average=100, postings_served=3, training_hours_this_year=90)
    assert rules.score(best, weights) == 100.0
    none = rules.Standing(grade_points=[], dimension_average=None, postings_served=0, training_hours_this_year=0)
    assert rules.score(none, weights) == 0.0
    middling = rules.Standing(grade_points=[3, 2], dimension_average=80, postings_served=1, training_hours_this_year=30)
    # grades 2.5 of 4, dimensions 0.8, postings 1 of 2, hours 30 of 60: 100 times the weighted mean
    assert rules.score(middling, weights) == pytest.approx(62.25)
