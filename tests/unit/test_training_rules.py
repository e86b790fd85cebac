"""Training's rules, without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest

from contracts.envelope import uuid7
from contracts.event import Event
from contracts.training import (
    PostingAssigned,
    PostingCompleted,
    PostingKind,
    PostingOutcome,
    TrainingAttendanceRecorded,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingProgramScheduled,
)
from runtime import clock
from runtime.errors import ConflictError, RuleViolationError
from services.training import rules

LONG = 36
pytestmark = pytest.mark.dates
_anchor: list[date] = []


@pytest.fixture(autouse=True)
def _anchored() -> None:
    """Scenario days count from the organization's today on the platform's clock, read once per test."""
    _anchor[:] = [clock.today()]


def on(days: int) -> date:
    """The scenario's day `days` after its anchor (today: the tests run at awkward instants too)."""
    return _anchor[0] + timedelta(days=days)


def posting(kind: PostingKind, start: date, end: date, *, ended: date | None = None) -> list[object]:
    posting_id = uuid7()
    events: list[object] = [
        PostingAssigned(
            posting_id=posting_id,
            cadre_id=CADRE,
            kind=kind,
            host_org_code="qs",
            host_unit_name="Host",
            position="Deputy",
            starts_on=start,
            planned_end_on=end,
        )
    ]
    if ended:
        events.append(
            PostingCompleted(posting_id=posting_id, cadre_id=CADRE, ended_on=ended, outcome=PostingOutcome.COMPLETED)
        )
    return events


CADRE = uuid7()


def state(*histories: list[object]) -> rules.CadreTraining:
    return rules.CadreTraining.replay(CADRE, [e for h in histories for e in h])  # type: ignore[misc]


def recommend(training: rules.CadreTraining, grassroots: int) -> rules.Recommendation:
    return rules.recommend(training, registry_grassroots_months=grassroots, long_grassroots_months=LONG)


def test_no_grassroots_time_recommends_a_downward_posting() -> None:
    advice = recommend(state(), grassroots=0)
    assert advice.kind is PostingKind.DOWNWARD
    assert "no grass-roots experience" in advice.reason


def test_a_served_downward_posting_counts_as_grassroots_time() -> None:
    served = state(posting(PostingKind.DOWNWARD, on(-731), on(-549), ended=on(-549)))
    assert recommend(served, grassroots=0).kind is PostingKind.COLD_HOT_EXCHANGE


def test_long_grassroots_service_without_higher_authority_time_recommends_upward() -> None:
    advice = recommend(state(), grassroots=48)
    assert advice.kind is PostingKind.UPWARD
    assert "48 months" in advice.reason
    been_up = state(posting(PostingKind.UPWARD, on(-731), on(-396), ended=on(-396)))
    assert recommend(been_up, grassroots=48).kind is PostingKind.COLD_HOT_EXCHANGE


def test_short_grassroots_service_skips_upward() -> None:
    assert recommend(state(), grassroots=12).kind is PostingKind.COLD_HOT_EXCHANGE


def test_after_an_exchange_an_urgent_task_then_nothing() -> None:
    exchanged = posting(PostingKind.COLD_HOT_EXCHANGE, on(-1096), on(-945), ended=on(-945))
    assert recommend(state(exchanged), grassroots=12).kind is PostingKind.URGENT_TASK
    urgent = posting(PostingKind.URGENT_TASK, on(-731), on(-671), ended=on(-671))
    done = recommend(state(exchanged, urgent), grassroots=12)
    assert done.kind is None
    assert "no posting is due" in done.reason


def test_one_posting_at_a_time_and_no_overlap() -> None:
    open_one = state(posting(PostingKind.DOWNWARD, on(-365), on(-1)))
    new = PostingAssigned(**posting(PostingKind.URGENT_TASK, on(31), on(59))[0].model_dump())  # type: ignore[attr-defined]
    with pytest.raises(RuleViolationError, match="already holds"):
        rules.assign_posting(open_one, new)
    closed = state(posting(PostingKind.DOWNWARD, on(-365), on(-1), ended=on(-1)))
    overlapping = new.model_copy(update={"starts_on": on(-31)})
    with pytest.raises(RuleViolationError, match="overlaps"):
        rules.assign_posting(closed, overlapping)
    reversed_dates = new.model_copy(update={"starts_on": on(59), "planned_end_on": on(31)})
    with pytest.raises(RuleViolationError, match="ends"):
        rules.assign_posting(closed, reversed_dates)
    assert rules.assign_posting(closed, new) == [new]


def test_ending_a_posting() -> None:
    events = posting(PostingKind.DOWNWARD, on(-365), on(-1))
    training = state(events)
    posting_id = events[0].posting_id  # type: ignore[attr-defined]
    with pytest.raises(RuleViolationError, match="before it started"):
        rules.end_posting(training, posting_id, ended_on=on(-731), outcome=PostingOutcome.COMPLETED, summary="")
    [done] = rules.end_posting(
        training, posting_id, ended_on=on(-214), outcome=PostingOutcome.CUT_SHORT, summary="flood relief"
    )
    ended = state(events, [done])
    assert ended.open_posting is None
    with pytest.raises(ConflictError):
        rules.end_posting(ended, posting_id, ended_on=on(-184), outcome=PostingOutcome.COMPLETED, summary="")
    assert rules.cut_short_on_retirement(ended, on(-153)) == []
    [cut] = rules.cut_short_on_retirement(training, on(-153))
    assert isinstance(cut, PostingCompleted)
    assert cut.outcome is PostingOutcome.CUT_SHORT


def scheduled(capacity: int, *, starts_on: int = 59, ends_on: int = 78) -> TrainingProgramScheduled:
    """A programme of 80 hours from `starts_on` to `ends_on` (days after the anchor)."""
    return TrainingProgramScheduled(
        program_id=uuid7(),
        title="Party school spring class",
        organizer_code="qs",
        starts_on=on(starts_on),
        ends_on=on(ends_on),
        hours=80,
        capacity=capacity,
        curriculum=["Theory", "Governance"],
    )


def program(capacity: int, *enrolled: object) -> rules.Program:
    opened = scheduled(capacity)
    events: list[object] = [opened]
    events += [TrainingEnrolled(program_id=opened.program_id, cadre_id=c) for c in enrolled]
    replayed = rules.Program.replay(events, "qs")  # type: ignore[arg-type]
    assert replayed is not None
    return replayed


def test_programme_capacity_and_dates() -> None:
    first, second = uuid7(), uuid7()
    full = program(1, first)
    with pytest.raises(RuleViolationError, match="full"):
        rules.enrol(full, second, on(31))
    with pytest.raises(ConflictError):
        rules.enrol(full, first, on(31))
    with pytest.raises(RuleViolationError, match="closed"):
        rules.enrol(program(5), second, on(60))
    [enrolled] = rules.enrol(program(5), second, on(59))
    assert isinstance(enrolled, TrainingEnrolled)


def test_completion_rules() -> None:
    cadre = uuid7()
    running = program(3, cadre)
    with pytest.raises(RuleViolationError, match="not enrolled"):
        rules.complete(running, uuid7(), completed_on=on(78), hours=80, score=90, passed=True)
    with pytest.raises(RuleViolationError, match="more than"):
        rules.complete(running, cadre, completed_on=on(78), hours=81, score=90, passed=True)
    with pytest.raises(RuleViolationError, match="precedes"):
        rules.complete(running, cadre, completed_on=on(31), hours=80, score=90, passed=True)
    [done] = rules.complete(running, cadre, completed_on=on(78), hours=76, score=88, passed=True)
    assert isinstance(done, TrainingCompleted)
    assert rules.schedule(scheduled(1, starts_on=1, ends_on=1))
    with pytest.raises(RuleViolationError, match="ends"):
        rules.schedule(scheduled(1, starts_on=1, ends_on=0))


def test_attendance_recorded_after_the_fact() -> None:
    cadre, enrolled = uuid7(), uuid7()
    started = program(2, enrolled)  # starts on day 59, ends on day 78, 80 hours

    def record(prog: rules.Program, who: UUID, day: int, today: int, hours: int = 40) -> list[Event]:
        return rules.record_attendance(
            prog, who, completed_on=on(day), hours=hours, score=90, passed=True, evidence="certificate 17",
            today=on(today),
        )  # fmt: skip

    with pytest.raises(RuleViolationError, match="enrol the cadre"):
        record(started, cadre, 59, 59)  # still open to enrolment
    with pytest.raises(RuleViolationError, match="record the completion"):
        record(started, enrolled, 78, 90)
    with pytest.raises(RuleViolationError, match="outside"):
        record(started, cadre, 58, 90)
    with pytest.raises(RuleViolationError, match="outside"):
        record(started, cadre, 91, 90)
    with pytest.raises(RuleViolationError, match="more than"):
        record(started, cadre, 78, 90, hours=81)
    [attended] = record(started, cadre, 78, 90)
    assert isinstance(attended, TrainingAttendanceRecorded)
    history: list[Event] = [
        scheduled(started.capacity).model_copy(update={"program_id": started.program_id}),
        TrainingEnrolled(program_id=started.program_id, cadre_id=enrolled),
        attended,
    ]
    after = rules.Program.replay(history, "qs")
    assert after is not None
    assert cadre in after.completed
    assert after.free_places == 0
    with pytest.raises(ConflictError):
        record(after, cadre, 78, 90)
    with pytest.raises(RuleViolationError, match="all taken"):
        record(after, uuid7(), 78, 90)
