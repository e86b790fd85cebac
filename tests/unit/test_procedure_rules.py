"""The procedures' rules, without Kafka or PostgreSQL: the steps in order, the tallies, the notice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from uuid import UUID

import pytest

from contracts.envelope import uuid7
from contracts.event import Event
from contracts.procedure import (
    Candidate,
    Document,
    InspectionConclusion,
    MeetingVote,
    Motion,
    NoticeClosed,
    NoticePublished,
    ObjectionConcluded,
    ObjectionRaised,
    ProcedureConcluded,
    ProcedureKind,
    ProcedureOpened,
    ProcedureRules,
    ProcedureStopped,
    RecommendationRecorded,
    Step,
    Talks,
    TallyLine,
    Threshold,
)
from contracts.registry import Education, Gender
from runtime import clock
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from services.selection import procedures as rules
from services.selection.procedures import Procedure
from services.selection.working_days import WorkingCalendar

pytestmark = pytest.mark.dates

CANDIDATE = uuid7()
DOC = Document(title="report", sha256="a" * 64)
CALENDAR = WorkingCalendar()  # the country's; the tests travel to the end of the period


def today() -> date:
    return clock.today()


def opened(kind: ProcedureKind = ProcedureKind.ENTRY, rules_: ProcedureRules | None = None) -> ProcedureOpened:
    entry = kind is ProcedureKind.ENTRY
    return ProcedureOpened(
        procedure_id=uuid7(),
        kind=kind,
        org_code="county",
        candidate_id=CANDIDATE,
        candidate_name="Li Ming",
        reserve_kind="county deputy" if entry else None,
        candidate=Candidate(
            full_name="Li Ming",
            gender=Gender.FEMALE,
            birth_date=today() - timedelta(days=35 * 365),
            education=Education.MASTER,
            current_position="deputy director",
            years_of_service=12,
            grassroots_months=30,
        )
        if entry
        else None,
        motion=None if entry else Motion(post_id=uuid7(), post_title="deputy county head", reason="a vacancy"),
        rules=rules_ or ProcedureRules(),
    )


def fold(events: Sequence[Event]) -> Procedure:
    procedure = Procedure.replay(events)
    assert procedure is not None
    return procedure


def meeting(votes: int = 30, *, cast: int = 40, present: int = 42, eligible: int = 45) -> MeetingVote:
    return MeetingVote(
        held_on=today(),
        eligible=eligible,
        present=present,
        ballots_cast=cast,
        valid_ballots=cast - 1,
        invalid_ballots=1,
        tally=(
            TallyLine(candidate_name="Li Ming", candidate_id=CANDIDATE, votes=votes),
            TallyLine(candidate_name="Wang Fang", votes=8),
        ),
    )


ONE_TALK = Talks(interviewed=1, in_favour=1)


def recommend(ballot: MeetingVote, talks: Talks = ONE_TALK, start: Event | None = None) -> list[Event]:
    """Record a recommendation with `ballot` on a procedure just opened (`start`, or `opened()`)."""
    return rules.record_recommendation(fold([start or opened()]), ballot, talks, (), today())


def tallied(lines: tuple[TallyLine, ...]) -> MeetingVote:
    return meeting().model_copy(update={"tally": lines})


def recommended(history: list[Event]) -> list[Event]:
    return history + rules.record_recommendation(
        fold(history), meeting(), Talks(interviewed=20, in_favour=15), (), today()
    )


def inspected(history: list[Event], conclusion: InspectionConclusion = InspectionConclusion.FIT) -> list[Event]:
    return history + rules.record_inspection(
        fold(history),
        team=("Zhao", "Qian"),
        interviewed=25,
        report=DOC,
        conclusion=conclusion,
        summary="",
        clean_record=DOC,
    )


def decide(history: list[Event], *, members: int = 9, present: int = 9, votes_for: int = 7) -> list[Event]:
    return rules.record_decision(
        fold(history),
        held_on=today(),
        members=members,
        present=present,
        votes_for=votes_for,
        votes_against=present - votes_for,
        abstentions=0,
        minutes=DOC,
        today=today(),
    )


def decided(history: list[Event]) -> list[Event]:
    return history + decide(history)


def noticed(history: list[Event]) -> list[Event]:
    return history + rules.publish_notice(
        fold(history), CALENDAR, clock.current(), starts_on=None, working_days=None, where="", document=None
    )


def to_notice() -> list[Event]:
    return noticed(decided(inspected(recommended([opened()]))))


def after_notice_period(history: list[Event]) -> clock.Clock:
    ends_at = fold(history).notice_ends_at(clock.current())
    assert ends_at is not None
    return clock.current().at(ends_at)


def test_a_whole_entry_procedure_reaches_admission() -> None:
    history = to_notice()
    later = after_notice_period(history)
    history += rules.close_notice(fold(history), later)
    history += rules.conclude(fold(history), document_number="Org [2026] 12", document_date=today(), today=today())
    procedure = fold(history)
    assert procedure.step is Step.CONCLUDED
    outcome = history[-1]
    assert isinstance(outcome, ProcedureConcluded)
    assert (outcome.kind, outcome.candidate_id, outcome.post_id) == (ProcedureKind.ENTRY, CANDIDATE, None)
    assert procedure.version == len(history)


def test_a_whole_appointment_procedure_names_the_motions_post() -> None:
    history = noticed(decided(inspected(recommended([opened(ProcedureKind.APPOINTMENT)]))))
    history += rules.close_notice(fold(history), after_notice_period(history))
    history += rules.conclude(fold(history), document_number="Org [2026] 13", document_date=today(), today=today())
    outcome = history[-1]
    first = history[0]
    assert isinstance(outcome, ProcedureConcluded)
    assert isinstance(first, ProcedureOpened)
    assert first.motion is not None
    assert outcome.post_id == first.motion.post_id


def test_an_entry_names_its_candidate_and_an_appointment_its_motion() -> None:
    entry = opened()
    with pytest.raises(RuleViolationError, match="names the candidate"):
        rules.open_procedure(entry.model_copy(update={"candidate": None}))
    with pytest.raises(RuleViolationError, match="no motion"):
        rules.open_procedure(opened().model_copy(update={"motion": opened(ProcedureKind.APPOINTMENT).motion}))
    with pytest.raises(RuleViolationError, match="differs"):
        rules.open_procedure(entry.model_copy(update={"candidate_name": "Someone Else"}))
    appointment = opened(ProcedureKind.APPOINTMENT)
    with pytest.raises(RuleViolationError, match="motion"):
        rules.open_procedure(appointment.model_copy(update={"motion": None}))
    with pytest.raises(RuleViolationError, match="already in the pool"):
        rules.open_procedure(appointment.model_copy(update={"candidate": entry.candidate}))
    assert rules.open_procedure(entry) == [entry]


STEPS: dict[str, Callable[[list[Event]], object]] = {
    "recommendation": recommended,
    "inspection": inspected,
    "decision": decide,
    "notice": noticed,
    "close": lambda events: rules.close_notice(fold(events), clock.current()),
    "conclude": lambda events: rules.conclude(fold(events), document_number="1", document_date=today(), today=today()),
}


@pytest.mark.parametrize(
    ("history", "step"),
    [
        (lambda: [opened()], "inspection"),
        (lambda: [opened()], "decision"),
        (lambda: [opened()], "notice"),
        (lambda: recommended([opened()]), "recommendation"),
        (lambda: recommended([opened()]), "decision"),
        (lambda: inspected(recommended([opened()])), "notice"),
        (lambda: decided(inspected(recommended([opened()]))), "close"),
        (lambda: decided(inspected(recommended([opened()]))), "conclude"),
        (to_notice, "conclude"),
        (to_notice, "decision"),
    ],
)
def test_a_step_out_of_order_is_refused(history: Callable[[], list[Event]], step: str) -> None:
    action = STEPS[step]
    events = history()
    with pytest.raises(ConflictError, match="out of order"):
        action(events)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"present": 46}, "46 present but only 45 eligible"),
        ({"ballots_cast": 43, "valid_ballots": 42}, "43 ballots cast by 42 present"),
        ({"invalid_ballots": 2}, "39 valid and 2 invalid ballots are not the 40 cast"),
        ({"ballots_cast": 0, "valid_ballots": 0, "invalid_ballots": 0}, "no ballots were cast"),
    ],
)
def test_a_meeting_tally_that_does_not_add_up_is_refused(change: dict[str, int], problem: str) -> None:
    ballot = meeting().model_copy(update=change)
    with pytest.raises(RuleViolationError, match="does not add up") as refused:
        recommend(ballot)
    assert problem in str(refused.value)


def test_votes_beyond_the_valid_ballots_and_a_candidate_twice_are_refused() -> None:
    lines = (
        TallyLine(candidate_name="Li Ming", candidate_id=CANDIDATE, votes=39),
        TallyLine(candidate_name="Wang Fang", votes=2),
    )
    with pytest.raises(RuleViolationError, match="41 votes in all from 39 valid ballots"):
        recommend(tallied(lines))
    over = (TallyLine(candidate_name="Li Ming", candidate_id=CANDIDATE, votes=40),)
    with pytest.raises(RuleViolationError, match="40 votes from 39 valid ballots"):
        recommend(tallied(over))
    twice = (
        TallyLine(candidate_name="Li Ming", candidate_id=CANDIDATE, votes=10),
        TallyLine(candidate_name="Li Ming", votes=10),
    )
    with pytest.raises(RuleViolationError, match="twice"):
        recommend(tallied(twice))
    two_seats = meeting().model_copy(update={"tally": lines, "seats": 2})
    assert recommend(two_seats)


def test_talks_that_do_not_add_up_and_a_tally_without_the_candidate_are_refused() -> None:
    with pytest.raises(RuleViolationError, match="6 in favour of 5 talked to"):
        recommend(meeting(), Talks(interviewed=5, in_favour=6))
    others = (TallyLine(candidate_name="Wang Fang", votes=8),)
    with pytest.raises(RuleViolationError, match="no line for the candidate"):
        recommend(tallied(others))
    by_name = (TallyLine(candidate_name="Li Ming", votes=30),)
    events = recommend(tallied(by_name))
    assert isinstance(events[0], RecommendationRecorded)


def test_a_meeting_in_the_future_is_refused() -> None:
    later = meeting().model_copy(update={"held_on": today() + timedelta(days=1)})
    with pytest.raises(RuleViolationError, match="after today"):
        recommend(later)


@pytest.mark.parametrize(("votes", "passed"), [(20, False), (21, True)])
def test_more_than_half_of_the_votes_cast_recommends_and_half_stops(votes: int, passed: bool) -> None:
    events = recommend(meeting(votes), Talks(interviewed=9, in_favour=3))
    recorded = events[0]
    assert isinstance(recorded, RecommendationRecorded)
    assert recorded.passed is passed
    procedure = fold([opened(), *events])
    if passed:
        assert len(events) == 1
        assert procedure.step is Step.RECOMMENDATION
    else:
        stopped = events[1]
        assert isinstance(stopped, ProcedureStopped)
        assert stopped.at_step is Step.RECOMMENDATION
        assert "20 votes of 40 cast, more than 1/2" in stopped.reason
        assert (procedure.step, procedure.stopped_at) == (Step.STOPPED, Step.RECOMMENDATION)
        with pytest.raises(ConflictError, match="stopped at recommendation"):
            inspected([opened(), *events])


def test_the_organizations_threshold_is_the_one_the_procedure_opened_with() -> None:
    two_thirds = ProcedureRules(recommendation=Threshold(numerator=2, denominator=3, inclusive=True))
    start = opened(rules_=two_thirds)
    below = recommend(meeting(26), start=start)
    at = recommend(meeting(27), start=start)
    assert isinstance(below[0], RecommendationRecorded)
    assert isinstance(at[0], RecommendationRecorded)
    assert (below[0].passed, at[0].passed) == (False, True)


def test_an_unfit_inspection_stops_the_procedure() -> None:
    history = inspected(recommended([opened()]), InspectionConclusion.UNFIT)
    assert fold(history).stopped_at is Step.INSPECTION
    with pytest.raises(RuleViolationError, match="twice"):
        rules.record_inspection(
            fold(recommended([opened()])),
            team=("Zhao", "Zhao"),
            interviewed=3,
            report=DOC,
            conclusion=InspectionConclusion.FIT,
            summary="",
            clean_record=DOC,
        )


def test_a_quorum_not_met_is_refused_and_two_thirds_present_is_one() -> None:
    history = inspected(recommended([opened()]))
    with pytest.raises(RuleViolationError, match="quorum not met: 5 of 9 members present, at least 2/3 needed"):
        decide(history, present=5, votes_for=5)
    assert fold(history + decide(history, present=6, votes_for=6)).step is Step.DECISION


def test_a_decision_tally_that_does_not_add_up_is_refused() -> None:
    procedure = fold(inspected(recommended([opened()])))
    with pytest.raises(RuleViolationError, match="are not the 9 present"):
        rules.record_decision(
            procedure,
            held_on=today(),
            members=9,
            present=9,
            votes_for=5,
            votes_against=1,
            abstentions=1,
            minutes=DOC,
            today=today(),
        )
    with pytest.raises(RuleViolationError, match="10 present of 9 members"):
        decide(inspected(recommended([opened()])), present=10, votes_for=10)


def test_more_than_half_of_all_members_must_vote_in_favour() -> None:
    history = inspected(recommended([opened()]))
    # 8 of 9 present, 4 in favour: a majority of those present voting for it, not of all members.
    against = decide(history, members=9, present=8, votes_for=4)
    stopped = against[-1]
    assert isinstance(stopped, ProcedureStopped)
    assert "4 of 9 members in favour, more than 1/2 of all needed" in stopped.reason
    assert fold(history + decide(history, members=9, present=8, votes_for=5)).step is Step.DECISION


def test_a_notice_runs_at_least_the_organizations_working_days_and_starts_no_earlier_than_today() -> None:
    procedure = fold(decided(inspected(recommended([opened()]))))
    with pytest.raises(RuleViolationError, match="at least 5 working days, not 4"):
        rules.publish_notice(
            procedure, CALENDAR, clock.current(), starts_on=None, working_days=4, where="", document=None
        )
    with pytest.raises(RuleViolationError, match="in the past"):
        rules.publish_notice(
            procedure,
            CALENDAR,
            clock.current(),
            starts_on=today() - timedelta(days=1),
            working_days=None,
            where="",
            document=None,
        )
    (published,) = rules.publish_notice(
        procedure, CALENDAR, clock.current(), starts_on=None, working_days=7, where="", document=None
    )
    assert isinstance(published, NoticePublished)
    assert published.starts_on == today()
    assert CALENDAR.working_days_between(today(), published.ends_on) == 7


def test_a_notice_closed_early_is_refused_even_a_moment_before_its_end() -> None:
    history = to_notice()
    ends_at = fold(history).notice_ends_at(clock.current())
    assert ends_at is not None
    with pytest.raises(RuleViolationError, match="cannot close early"):
        rules.close_notice(fold(history), clock.current())
    with pytest.raises(RuleViolationError, match="cannot close early"):
        rules.close_notice(fold(history), clock.current().at(ends_at - timedelta(seconds=1)))
    (closed,) = rules.close_notice(fold(history), clock.current().at(ends_at))
    assert isinstance(closed, NoticeClosed)
    notice = fold(history).notice
    assert notice is not None
    assert closed.closed_on == notice.ends_on + timedelta(days=1)


def objection(history: list[Event], at: clock.Clock | None = None) -> tuple[UUID, list[Event]]:
    objection_id = uuid7()
    events = rules.raise_objection(
        fold(history), at or clock.current(), objection_id=objection_id, summary="a complaint", document=None
    )
    return objection_id, history + events


def test_an_open_objection_holds_the_notice_and_a_dismissed_one_releases_it() -> None:
    objection_id, history = objection(to_notice())
    raised = history[-1]
    assert isinstance(raised, ObjectionRaised)
    assert raised.received_on == today()
    later = after_notice_period(history)
    with pytest.raises(ConflictError, match="still open and holds the procedure"):
        rules.close_notice(fold(history), later)
    history += rules.conclude_objection(
        fold(history), objection_id=objection_id, substantiated=False, finding="not borne out", document=DOC
    )
    assert isinstance(history[-1], ObjectionConcluded)
    assert fold(history).step is Step.NOTICE
    with pytest.raises(ConflictError, match="already concluded"):
        rules.conclude_objection(
            fold(history), objection_id=objection_id, substantiated=True, finding="", document=None
        )
    with pytest.raises(NotFoundError):
        rules.conclude_objection(fold(history), objection_id=uuid7(), substantiated=True, finding="", document=None)
    assert isinstance(rules.close_notice(fold(history), later)[0], NoticeClosed)


def test_a_substantiated_objection_stops_the_procedure() -> None:
    objection_id, history = objection(to_notice())
    history += rules.conclude_objection(
        fold(history), objection_id=objection_id, substantiated=True, finding="undeclared business", document=DOC
    )
    procedure = fold(history)
    assert (procedure.step, procedure.stopped_at) == (Step.STOPPED, Step.NOTICE)
    assert "undeclared business" in procedure.stop_reason
    with pytest.raises(ConflictError, match="stopped at notice"):
        rules.close_notice(procedure, after_notice_period(history))


def test_an_objection_after_the_period_or_twice_is_refused() -> None:
    objection_id, history = objection(to_notice())
    with pytest.raises(ConflictError, match="already on the record"):
        rules.raise_objection(fold(history), clock.current(), objection_id=objection_id, summary="x", document=None)
    with pytest.raises(RuleViolationError, match="ended"):
        objection(history, after_notice_period(history))


def test_an_objection_before_a_notice_begins_is_refused() -> None:
    history = decided(inspected(recommended([opened()])))
    history += rules.publish_notice(
        fold(history),
        CALENDAR,
        clock.current(),
        starts_on=today() + timedelta(days=3),
        working_days=None,
        where="",
        document=None,
    )
    with pytest.raises(RuleViolationError, match="begins on"):
        objection(history)


def test_stopping_needs_a_reason_and_a_finished_procedure_stays_finished() -> None:
    history = recommended([opened()])
    with pytest.raises(RuleViolationError, match="reason"):
        rules.stop(fold(history), "  ")
    history += rules.stop(fold(history), "the candidate withdrew")
    procedure = fold(history)
    assert (procedure.stopped_at, procedure.stop_reason) == (Step.RECOMMENDATION, "the candidate withdrew")
    with pytest.raises(ConflictError, match="stopped"):
        rules.stop(procedure, "again")


def test_a_document_dated_after_today_is_refused() -> None:
    history = to_notice()
    history += rules.close_notice(fold(history), after_notice_period(history))
    with pytest.raises(RuleViolationError, match="after today"):
        rules.conclude(fold(history), document_number="1", document_date=today() + timedelta(days=1), today=today())


def test_thresholds_compare_in_integers() -> None:
    half = Threshold(numerator=1, denominator=2)
    two_thirds = Threshold(numerator=2, denominator=3, inclusive=True)
    assert not rules.met(half, 5, 10)
    assert rules.met(half, 6, 11)
    assert rules.met(two_thirds, 6, 9)
    assert not rules.met(two_thirds, 5, 9)
    assert rules.describe(two_thirds) == "at least 2/3"


def test_the_board_shows_the_notices_end_and_an_objection_unanswered_too_long() -> None:
    assert rules.due(fold(decided(inspected(recommended([opened()])))), today()) == []
    objection_id, history = objection(to_notice())
    procedure = fold(history)
    notice = procedure.notice
    assert notice is not None
    assert rules.due(procedure, today()) == [rules.Due(rules.DueKind.NOTICE_ENDS, notice.ends_on)]
    late = today() + timedelta(days=procedure.rules.objection_due_days + 1)
    assert rules.due(procedure, late) == [
        rules.Due(rules.DueKind.NOTICE_ENDED, notice.ends_on),
        rules.Due(rules.DueKind.OBJECTION_OVERDUE, late - timedelta(days=1), objection_id),
    ]
    assert rules.due(procedure, late - timedelta(days=1))[1:] == []


@pytest.mark.parametrize("published_at", ["2024-09-26T16:30:00+00:00", "2024-09-27T15:30:00+00:00"])
def test_a_notice_across_a_weekend_and_the_national_day_closes_when_its_fifth_working_day_ends(
    published_at: str,
) -> None:
    # Calendar facts of 2024 (fixed, historic): published on Friday 27 September at 00:30 or 23:30 in the
    # organization, the five working days are 27 and 29 (a Sunday worked) and 30 September, 8 and 9 October.
    at = clock.current().at(datetime.fromisoformat(published_at))
    history = decided(inspected(recommended([opened()])))
    history += rules.publish_notice(
        fold(history), CALENDAR, at, starts_on=None, working_days=None, where="", document=None
    )
    notice = fold(history).notice
    assert notice is not None
    assert (notice.starts_on, notice.ends_on) == (date(2024, 9, 27), date(2024, 10, 9))
    last_moment = clock.current().at(datetime.fromisoformat("2024-10-09T15:59:59+00:00"))  # 23:59:59 in Shanghai
    with pytest.raises(RuleViolationError, match="close early"):
        rules.close_notice(fold(history), last_moment)
    midnight = clock.current().at(datetime.fromisoformat("2024-10-09T16:00:00+00:00"))  # 10 October begins
    (closed,) = rules.close_notice(fold(history), midnight)
    assert isinstance(closed, NoticeClosed)
    assert closed.closed_on == date(2024, 10, 10)
