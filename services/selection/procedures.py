"""The procedures' rules: pure functions over a procedure's stream, no I/O.

A procedure moves through its steps in one order: opened (with the motion, for an
appointment), democratic recommendation, organizational inspection, collective
decision, public notice, notice closed, concluded; or it stops at any step with the
reason. A step out of order, a tally that does not add up, a quorum not met, a notice
closed early or with an objection still open are refused with the reason and change
nothing. A vote that does not pass, an unfit inspection and a substantiated objection
are recorded, and stop the procedure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from contracts.event import Event
from contracts.procedure import (
    DecisionRecorded,
    Document,
    InspectionConclusion,
    InspectionRecorded,
    MeetingVote,
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
    Threshold,
)
from runtime.clock import Clock
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from services.selection.working_days import WorkingCalendar, notice_period

ORDER: tuple[Step, ...] = (
    Step.OPENED,
    Step.RECOMMENDATION,
    Step.INSPECTION,
    Step.DECISION,
    Step.NOTICE,
    Step.NOTICE_CLOSED,
    Step.CONCLUDED,
)
"""The steps a procedure passes through, in order (it may stop after any but the last)."""


def met(threshold: Threshold, count: int, base: int) -> bool:
    """Whether `count` out of `base` meets `threshold` (in integers: no rounding)."""
    left, right = count * threshold.denominator, threshold.numerator * base
    return left >= right if threshold.inclusive else left > right


def describe(threshold: Threshold) -> str:
    """`more than 1/2`, `at least 2/3`."""
    words = "at least" if threshold.inclusive else "more than"
    return f"{words} {threshold.numerator}/{threshold.denominator}"


@dataclass(frozen=True)
class Objection:
    """An objection raised during the notice, and what became of it."""

    objection_id: UUID
    received_on: date
    substantiated: bool | None = None
    """None while it is open."""

    @property
    def open(self) -> bool:
        """Not concluded yet: it holds the procedure."""
        return self.substantiated is None


@dataclass(frozen=True)
class Procedure:
    """A procedure as its stream knows it."""

    opened: ProcedureOpened
    step: Step = Step.OPENED
    """The last step reached (`stopped` once stopped)."""
    version: int = 1
    stopped_at: Step | None = None
    stop_reason: str = ""
    notice: NoticePublished | None = None
    objections: tuple[Objection, ...] = ()

    @property
    def procedure_id(self) -> UUID:
        """The procedure's stream id."""
        return self.opened.procedure_id

    @property
    def rules(self) -> ProcedureRules:
        """The rules in force when the procedure opened."""
        return self.opened.rules

    @property
    def finished(self) -> bool:
        """Concluded or stopped: nothing more is recorded."""
        return self.step in {Step.CONCLUDED, Step.STOPPED}

    def open_objections(self) -> list[Objection]:
        """The objections not concluded yet."""
        return [o for o in self.objections if o.open]

    def notice_ends_at(self, clock: Clock) -> datetime | None:
        """The instant the notice period ends (the end of its last working day), once published."""
        return None if self.notice is None else clock.start_of(self.notice.ends_on + timedelta(days=1))

    @classmethod
    def replay(cls, events: Sequence[Event]) -> Procedure | None:
        """Fold a procedure's stream; None for one never opened."""
        procedure: Procedure | None = None
        for version, event in enumerate(events, start=1):
            if isinstance(event, ProcedureOpened):
                procedure = Procedure(event)
                continue
            if procedure is None:
                continue
            procedure = _apply(procedure, event, version)
        return procedure


def _apply(procedure: Procedure, event: Event, version: int) -> Procedure:  # noqa: PLR0911 - one case per event
    moved = replace(procedure, version=version)
    match event:
        case RecommendationRecorded():
            return replace(moved, step=Step.RECOMMENDATION)
        case InspectionRecorded():
            return replace(moved, step=Step.INSPECTION)
        case DecisionRecorded():
            return replace(moved, step=Step.DECISION)
        case NoticePublished():
            return replace(moved, step=Step.NOTICE, notice=event)
        case ObjectionRaised():
            return replace(moved, objections=(*moved.objections, Objection(event.objection_id, event.received_on)))
        case ObjectionConcluded():
            objections = tuple(
                replace(o, substantiated=event.substantiated) if o.objection_id == event.objection_id else o
                for o in moved.objections
            )
            return replace(moved, objections=objections)
        case NoticeClosed():
            return replace(moved, step=Step.NOTICE_CLOSED)
        case ProcedureConcluded():
            return replace(moved, step=Step.CONCLUDED)
        case ProcedureStopped():
            return replace(moved, step=Step.STOPPED, stopped_at=event.at_step, stop_reason=event.reason)
    return moved


def _expect(procedure: Procedure, after: Step, what: str) -> None:
    """Refuse `what` unless the procedure has just completed `after`."""
    if procedure.step is Step.STOPPED:
        msg = f"the procedure stopped at {procedure.stopped_at}: {procedure.stop_reason}"
        raise ConflictError(msg)
    if procedure.step is Step.CONCLUDED:
        msg = "the procedure is concluded"
        raise ConflictError(msg)
    if procedure.step is not after:
        msg = f"out of order: {what} comes after the {after} step, and the procedure is at the {procedure.step} step"
        raise ConflictError(msg)


def _not_after_today(day: date, today: date, what: str) -> None:
    if day > today:
        msg = f"{what} ({day}) is after today ({today})"
        raise RuleViolationError(msg)


def open_procedure(event: ProcedureOpened) -> list[Event]:
    """An entry names its candidate and reserve kind; an appointment starts from a motion."""
    if event.kind is ProcedureKind.ENTRY:
        if event.candidate is None or event.reserve_kind is None:
            msg = "an entry procedure names the candidate (as the nomination will record them) and the reserve kind"
            raise RuleViolationError(msg)
        if event.motion is not None:
            msg = "an entry procedure has no motion (a motion is for a post)"
            raise RuleViolationError(msg)
        if event.candidate.full_name != event.candidate_name:
            msg = "the candidate's name differs from the candidate's record"
            raise RuleViolationError(msg)
    else:
        if event.motion is None:
            msg = "an appointment procedure starts from a motion: the post to fill and why"
            raise RuleViolationError(msg)
        if event.candidate is not None:
            msg = "an appointment procedure is for a cadre already in the pool: no candidate record"
            raise RuleViolationError(msg)
    return [event]


def _check_meeting(meeting: MeetingVote) -> None:
    """The ballot adds up, or the recommendation is refused with what does not."""
    problems: list[str] = []
    if meeting.present > meeting.eligible:
        problems.append(f"{meeting.present} present but only {meeting.eligible} eligible")
    if meeting.ballots_cast > meeting.present:
        problems.append(f"{meeting.ballots_cast} ballots cast by {meeting.present} present")
    if meeting.valid_ballots + meeting.invalid_ballots != meeting.ballots_cast:
        problems.append(
            f"{meeting.valid_ballots} valid and {meeting.invalid_ballots} invalid ballots"
            f" are not the {meeting.ballots_cast} cast"
        )
    problems.extend(
        f"{line.candidate_name} has {line.votes} votes from {meeting.valid_ballots} valid ballots"
        for line in meeting.tally
        if line.votes > meeting.valid_ballots
    )
    total = sum(line.votes for line in meeting.tally)
    if total > meeting.valid_ballots * meeting.seats:
        problems.append(
            f"{total} votes in all from {meeting.valid_ballots} valid ballots of {meeting.seats} name(s) each"
        )
    names = [line.candidate_name for line in meeting.tally]
    if len(set(names)) != len(names):
        problems.append("a candidate appears twice in the tally")
    if meeting.ballots_cast == 0:
        problems.append("no ballots were cast")
    if problems:
        raise RuleViolationError("the tally does not add up: " + "; ".join(problems))


def record_recommendation(
    procedure: Procedure, meeting: MeetingVote, talks: Talks, documents: tuple[Document, ...], today: date
) -> list[Event]:
    """The democratic recommendation; a candidate below the threshold does not go on (the procedure stops)."""
    _expect(procedure, Step.OPENED, "the recommendation")
    _not_after_today(meeting.held_on, today, "the meeting")
    _check_meeting(meeting)
    if talks.in_favour > talks.interviewed:
        msg = f"the tally does not add up: {talks.in_favour} in favour of {talks.interviewed} talked to"
        raise RuleViolationError(msg)
    lines = [line for line in meeting.tally if line.candidate_id == procedure.opened.candidate_id] or [
        line
        for line in meeting.tally
        if line.candidate_id is None and line.candidate_name == procedure.opened.candidate_name
    ]
    if len(lines) != 1:
        msg = f"the tally has no line for the candidate {procedure.opened.candidate_name}"
        raise RuleViolationError(msg)
    votes = lines[0].votes
    threshold = procedure.rules.recommendation
    passed = met(threshold, votes, meeting.ballots_cast)
    events: list[Event] = [
        RecommendationRecorded(
            procedure_id=procedure.procedure_id, meeting=meeting, talks=talks, passed=passed, documents=documents
        )
    ]
    if not passed:
        reason = (
            f"not recommended: {votes} votes of {meeting.ballots_cast} cast, {describe(threshold)} of the votes cast"
            " needed"
        )
        events.append(ProcedureStopped(procedure_id=procedure.procedure_id, at_step=Step.RECOMMENDATION, reason=reason))
    return events


def record_inspection(
    procedure: Procedure,
    *,
    team: tuple[str, ...],
    interviewed: int,
    report: Document,
    conclusion: InspectionConclusion,
    summary: str,
    clean_record: Document,
) -> list[Event]:
    """The inspection, with its report and the clean-record letter; an unfit conclusion stops the procedure."""
    _expect(procedure, Step.RECOMMENDATION, "the inspection")
    if len(set(team)) != len(team):
        msg = "a member appears twice in the inspection team"
        raise RuleViolationError(msg)
    events: list[Event] = [
        InspectionRecorded(
            procedure_id=procedure.procedure_id,
            team=team,
            interviewed=interviewed,
            report=report,
            conclusion=conclusion,
            summary=summary,
            clean_record=clean_record,
        )
    ]
    if conclusion is InspectionConclusion.UNFIT:
        events.append(
            ProcedureStopped(
                procedure_id=procedure.procedure_id,
                at_step=Step.INSPECTION,
                reason="the inspection concluded the candidate unfit" + (f": {summary}" if summary else ""),
            )
        )
    return events


def record_decision(
    procedure: Procedure,
    *,
    held_on: date,
    members: int,
    present: int,
    votes_for: int,
    votes_against: int,
    abstentions: int,
    minutes: Document,
    today: date,
) -> list[Event]:
    """The committee's decision: refused without a quorum or when the votes do not add up; a vote against stops."""
    _expect(procedure, Step.INSPECTION, "the decision")
    _not_after_today(held_on, today, "the meeting")
    if present > members:
        msg = f"the tally does not add up: {present} present of {members} members"
        raise RuleViolationError(msg)
    if votes_for + votes_against + abstentions != present:
        msg = (
            f"the tally does not add up: {votes_for} for, {votes_against} against and {abstentions} abstaining"
            f" are not the {present} present"
        )
        raise RuleViolationError(msg)
    rules = procedure.rules
    if not met(rules.quorum, present, members):
        msg = f"quorum not met: {present} of {members} members present, {describe(rules.quorum)} needed"
        raise RuleViolationError(msg)
    passed = met(rules.majority, votes_for, members)
    events: list[Event] = [
        DecisionRecorded(
            procedure_id=procedure.procedure_id,
            held_on=held_on,
            members=members,
            present=present,
            votes_for=votes_for,
            votes_against=votes_against,
            abstentions=abstentions,
            passed=passed,
            minutes=minutes,
        )
    ]
    if not passed:
        reason = f"not decided: {votes_for} of {members} members in favour, {describe(rules.majority)} of all needed"
        events.append(ProcedureStopped(procedure_id=procedure.procedure_id, at_step=Step.DECISION, reason=reason))
    return events


def publish_notice(
    procedure: Procedure,
    calendar: WorkingCalendar,
    clock: Clock,
    *,
    starts_on: date | None,
    working_days: int | None,
    where: str,
    document: Document | None,
) -> list[Event]:
    """The public notice, from today (or a later day) for at least the organization's number of working days."""
    _expect(procedure, Step.DECISION, "the public notice")
    today = clock.today()
    start = today if starts_on is None else starts_on
    if start < today:
        msg = f"a notice cannot start in the past ({start}, today is {today})"
        raise RuleViolationError(msg)
    least = procedure.rules.notice_working_days
    days = least if working_days is None else working_days
    if days < least:
        msg = f"a public notice runs at least {least} working days, not {days}"
        raise RuleViolationError(msg)
    period = notice_period(calendar, clock, start, days)
    return [
        NoticePublished(
            procedure_id=procedure.procedure_id,
            starts_on=start,
            working_days=days,
            ends_on=period.ends_on,
            where=where,
            document=document,
        )
    ]


def raise_objection(
    procedure: Procedure, clock: Clock, *, objection_id: UUID, summary: str, document: Document | None
) -> list[Event]:
    """An objection during the notice period (one after the period is too late for this procedure's record)."""
    _expect(procedure, Step.NOTICE, "an objection")
    if procedure.notice is None:  # pragma: no cover - the notice step always has its notice
        raise AssertionError
    now = clock.now()
    if now < clock.start_of(procedure.notice.starts_on):
        msg = f"the notice period begins on {procedure.notice.starts_on}"
        raise RuleViolationError(msg)
    ends_at = procedure.notice_ends_at(clock)
    if ends_at is not None and now >= ends_at:
        msg = f"the notice period ended with {procedure.notice.ends_on}"
        raise RuleViolationError(msg)
    if any(o.objection_id == objection_id for o in procedure.objections):
        msg = f"objection {objection_id} is already on the record"
        raise ConflictError(msg)
    return [
        ObjectionRaised(
            procedure_id=procedure.procedure_id,
            objection_id=objection_id,
            received_on=clock.date_of(now),
            summary=summary,
            document=document,
        )
    ]


def conclude_objection(
    procedure: Procedure, *, objection_id: UUID, substantiated: bool, finding: str, document: Document | None
) -> list[Event]:
    """An objection looked into: a substantiated one stops the procedure, a dismissed one releases it."""
    _expect(procedure, Step.NOTICE, "concluding an objection")
    objection = next((o for o in procedure.objections if o.objection_id == objection_id), None)
    if objection is None:
        msg = f"no objection {objection_id} in this procedure"
        raise NotFoundError(msg)
    if not objection.open:
        msg = f"objection {objection_id} is already concluded"
        raise ConflictError(msg)
    events: list[Event] = [
        ObjectionConcluded(
            procedure_id=procedure.procedure_id,
            objection_id=objection_id,
            substantiated=substantiated,
            finding=finding,
            document=document,
        )
    ]
    if substantiated:
        reason = "an objection was substantiated" + (f": {finding}" if finding else "")
        events.append(ProcedureStopped(procedure_id=procedure.procedure_id, at_step=Step.NOTICE, reason=reason))
    return events


def close_notice(procedure: Procedure, clock: Clock) -> list[Event]:
    """Close the notice: not before its period has ended, not while an objection is open."""
    _expect(procedure, Step.NOTICE, "closing the notice")
    ends_at = procedure.notice_ends_at(clock)
    if procedure.notice is None or ends_at is None:  # pragma: no cover - the notice step always has its notice
        raise AssertionError
    now = clock.now()
    if now < ends_at:
        msg = (
            f"the notice cannot close early: its period runs to the end of {procedure.notice.ends_on}"
            f" (today is {clock.date_of(now)})"
        )
        raise RuleViolationError(msg)
    still_open = procedure.open_objections()
    if still_open:
        ids = ", ".join(str(o.objection_id) for o in still_open)
        msg = f"an objection is still open and holds the procedure: {ids}"
        raise ConflictError(msg)
    return [NoticeClosed(procedure_id=procedure.procedure_id, closed_on=clock.date_of(now))]


def conclude(
    procedure: Procedure, *, document_number: str, document_date: date, today: date, unit_path: str | None = None
) -> list[Event]:
    """The outcome: admitted into the pool, or appointed to the motion's post, by a document.

    `unit_path` is the unit's place in the tree: the deployment that owns it applies the outcome.
    """
    _expect(procedure, Step.NOTICE_CLOSED, "the outcome")
    _not_after_today(document_date, today, "the document's date")
    opened = procedure.opened
    return [
        ProcedureConcluded(
            procedure_id=procedure.procedure_id,
            kind=opened.kind,
            candidate_id=opened.candidate_id,
            document_number=document_number,
            document_date=document_date,
            post_id=None if opened.motion is None else opened.motion.post_id,
            org_code=opened.org_code,
            candidate=opened.candidate,
            reserve_kind=opened.reserve_kind,
            unit_path=unit_path,
        )
    ]


def stop(procedure: Procedure, reason: str) -> list[Event]:
    """Stop a procedure at the step it reached (a withdrawal, a change of plan), with the reason."""
    if procedure.finished:
        _expect(procedure, procedure.step, "stopping")  # raises with what the procedure already is
    if not reason.strip():
        msg = "a procedure is stopped with a reason"
        raise RuleViolationError(msg)
    return [ProcedureStopped(procedure_id=procedure.procedure_id, at_step=procedure.step, reason=reason)]


class DueKind(StrEnum):
    """What a procedure waits on, as the board shows it."""

    NOTICE_ENDS = "notice_ends"
    """The notice period ends on a day still to come."""
    NOTICE_ENDED = "notice_ended"
    """The notice period has ended: the notice may be closed (or an objection holds it)."""
    OBJECTION_OVERDUE = "objection_overdue"
    """An objection unanswered for longer than the organization allows."""


@dataclass(frozen=True)
class Due:
    """One thing due in a procedure, and its day."""

    kind: DueKind
    on: date
    objection_id: UUID | None = None


def due(procedure: Procedure, today: date) -> list[Due]:
    """What is due in a running procedure on `today`: its notice's end, its overdue objections."""
    if procedure.step is not Step.NOTICE or procedure.notice is None:
        return []
    return due_at_notice(
        procedure.notice.ends_on,
        [(o.objection_id, o.received_on) for o in procedure.open_objections()],
        procedure.rules.objection_due_days,
        today,
    )


def due_at_notice(
    ends_on: date, open_objections: Sequence[tuple[UUID, date]], objection_due_days: int, today: date
) -> list[Due]:
    """What is due during a notice ending on `ends_on` with these open objections (id, received on)."""
    found = [Due(DueKind.NOTICE_ENDED if today > ends_on else DueKind.NOTICE_ENDS, ends_on)]
    allowed = timedelta(days=objection_due_days)
    found.extend(
        Due(DueKind.OBJECTION_OVERDUE, received_on + allowed, objection_id)
        for objection_id, received_on in open_objections
        if today > received_on + allowed
    )
    return found
