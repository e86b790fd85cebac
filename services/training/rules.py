"""Training's rules: pure functions over plain values, no I/O.

Programmes (capacity, dates, who is enrolled), a cadre's practical training
(one posting at a time, dates that make sense), and which posting to recommend next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal
from uuid import UUID

from contracts.event import Event
from contracts.training import (
    EnrolmentWithdrawn,
    PostingAssigned,
    PostingCompleted,
    PostingKind,
    PostingOutcome,
    SelfStudyConfirmed,
    SelfStudyLogged,
    SelfStudyRejected,
    SelfStudyReported,
    TrainingAttendanceRecorded,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingProgramCancelled,
    TrainingProgramScheduled,
    WithdrawalReason,
)
from runtime.errors import ConflictError, NotFoundError, RuleViolationError


@dataclass(frozen=True)
class Program:
    """A programme as its stream knows it."""

    program_id: UUID
    org_path: str
    starts_on: date
    ends_on: date
    hours: int
    capacity: int
    cancelled: bool
    enrolled: frozenset[UUID]
    """Enrolled and neither withdrawn nor completed."""
    completed: frozenset[UUID]
    version: int

    @property
    def free_places(self) -> int:
        """Places left (completed cadres keep theirs)."""
        return max(0, self.capacity - len(self.enrolled) - len(self.completed))

    @classmethod
    def replay(cls, events: Sequence[Event], org_path: str) -> Program | None:
        """Fold a programme's stream; None for one never scheduled."""
        program: Program | None = None
        for version, event in enumerate(events, start=1):
            if isinstance(event, TrainingProgramScheduled):
                program = Program(
                    program_id=event.program_id,
                    org_path=org_path,
                    starts_on=event.starts_on,
                    ends_on=event.ends_on,
                    hours=event.hours,
                    capacity=event.capacity,
                    cancelled=False,
                    enrolled=frozenset(),
                    completed=frozenset(),
                    version=version,
                )
                continue
            if program is None:
                continue
            match event:
                case TrainingProgramCancelled():
                    program = replace(program, cancelled=True, enrolled=frozenset())
                case TrainingEnrolled():
                    program = replace(program, enrolled=program.enrolled | {event.cadre_id})
                case EnrolmentWithdrawn():
                    program = replace(program, enrolled=program.enrolled - {event.cadre_id})
                case TrainingCompleted() | TrainingAttendanceRecorded():
                    program = replace(
                        program,
                        enrolled=program.enrolled - {event.cadre_id},
                        completed=program.completed | {event.cadre_id},
                    )
            program = replace(program, version=version)
        return program


def schedule(event: TrainingProgramScheduled) -> list[Event]:
    """A programme's dates must make sense."""
    if event.ends_on < event.starts_on:
        msg = f"the programme ends ({event.ends_on}) before it starts ({event.starts_on})"
        raise RuleViolationError(msg)
    return [event]


def cancel(program: Program, reason: str) -> list[Event]:
    """Cancel a programme that has not been cancelled; its enrolments are withdrawn with it."""
    if program.cancelled:
        msg = "the programme is already cancelled"
        raise ConflictError(msg)
    withdrawals: list[Event] = [
        EnrolmentWithdrawn(program_id=program.program_id, cadre_id=c, reason=WithdrawalReason.PROGRAM_CANCELLED)
        for c in sorted(program.enrolled)
    ]
    return [TrainingProgramCancelled(program_id=program.program_id, reason=reason), *withdrawals]


def enrol(program: Program, cadre_id: UUID, on: date) -> list[Event]:
    """Enrol a cadre while places are free and the programme has not started."""
    if program.cancelled:
        msg = "the programme is cancelled"
        raise RuleViolationError(msg)
    if cadre_id in program.enrolled or cadre_id in program.completed:
        msg = "the cadre is already enrolled in this programme"
        raise ConflictError(msg)
    if on > program.starts_on:
        msg = f"enrolment closed when the programme started on {program.starts_on}"
        raise RuleViolationError(msg)
    if program.free_places == 0:
        msg = f"the programme is full ({program.capacity} places)"
        raise RuleViolationError(msg)
    return [TrainingEnrolled(program_id=program.program_id, cadre_id=cadre_id)]


def withdraw(program: Program, cadre_id: UUID, reason: WithdrawalReason, note: str = "") -> list[Event]:
    """End an enrolment without completion; nothing when there is none to end."""
    if cadre_id not in program.enrolled:
        return []
    return [EnrolmentWithdrawn(program_id=program.program_id, cadre_id=cadre_id, reason=reason, note=note)]


def complete(
    program: Program, cadre_id: UUID, *, completed_on: date, hours: int, score: int | None, passed: bool
) -> list[Event]:
    """Record a completion: the cadre was enrolled, the programme has run, hours within its hours."""
    if cadre_id in program.completed:
        msg = "the cadre's completion is already recorded"
        raise ConflictError(msg)
    if cadre_id not in program.enrolled:
        msg = "the cadre is not enrolled in this programme"
        raise RuleViolationError(msg)
    if completed_on < program.starts_on:
        msg = f"a completion on {completed_on} precedes the programme's start on {program.starts_on}"
        raise RuleViolationError(msg)
    if hours > program.hours:
        msg = f"{hours} hours credited, more than the programme's {program.hours}"
        raise RuleViolationError(msg)
    return [
        TrainingCompleted(
            program_id=program.program_id,
            cadre_id=cadre_id,
            completed_on=completed_on,
            hours=hours,
            score=score,
            passed=passed,
        )
    ]


def record_attendance(
    program: Program,
    cadre_id: UUID,
    *,
    completed_on: date,
    hours: int,
    score: int | None,
    passed: bool,
    evidence: str,
    today: date,
) -> list[Event]:
    """Record after the fact that a cadre completed a programme that has started (enrolment closed then).

    Not for a programme still open to enrolment (enrol, then complete), nor for an enrolled cadre
    (record the completion); the day lies between the programme's start and today, the hours
    within its hours, and the programme had a place for the cadre.
    """
    if program.cancelled:
        msg = "the programme was cancelled"
        raise RuleViolationError(msg)
    if cadre_id in program.completed:
        msg = "the cadre's completion is already recorded"
        raise ConflictError(msg)
    if today <= program.starts_on:
        msg = f"the programme starts on {program.starts_on}: enrol the cadre, then record the completion"
        raise RuleViolationError(msg)
    if cadre_id in program.enrolled:
        msg = "the cadre is enrolled in this programme: record the completion"
        raise RuleViolationError(msg)
    if not program.starts_on <= completed_on <= today:
        msg = f"the day attended ({completed_on}) lies outside {program.starts_on} to today ({today})"
        raise RuleViolationError(msg)
    if hours > program.hours:
        msg = f"{hours} hours credited, more than the programme's {program.hours}"
        raise RuleViolationError(msg)
    if program.free_places == 0:
        msg = f"the programme had {program.capacity} places, all taken"
        raise RuleViolationError(msg)
    return [
        TrainingAttendanceRecorded(
            program_id=program.program_id,
            cadre_id=cadre_id,
            completed_on=completed_on,
            hours=hours,
            score=score,
            passed=passed,
            evidence=evidence,
        )
    ]


@dataclass(frozen=True)
class Posting:
    """One posting of a cadre."""

    posting_id: UUID
    kind: PostingKind
    starts_on: date
    planned_end_on: date
    ended_on: date | None = None
    outcome: PostingOutcome | None = None

    @property
    def last_day(self) -> date:
        """The last day the posting holds (planned while open)."""
        return self.ended_on or self.planned_end_on

    def months(self) -> int:
        """Whole months served (planned while open)."""
        end = self.last_day
        return max(0, (end.year - self.starts_on.year) * 12 + end.month - self.starts_on.month)


ReportStatus = Literal["reported", "confirmed", "rejected"]


@dataclass(frozen=True)
class Report:
    """Self-study a cadre reported: it counts only once an organizer confirmed it."""

    entry_id: UUID
    studied_on: date
    hours: int
    status: ReportStatus = "reported"


@dataclass(frozen=True)
class CadreTraining:
    """A cadre's practical training as its stream in training knows it."""

    cadre_id: UUID
    postings: tuple[Posting, ...] = ()
    self_study_entries: frozenset[UUID] = field(default_factory=frozenset)
    reports: tuple[Report, ...] = ()
    """Self-study the cadre reported, waiting for an organizer or decided."""
    version: int = 0

    @property
    def open_posting(self) -> Posting | None:
        """The posting held now, if any."""
        return next((p for p in self.postings if p.ended_on is None), None)

    @classmethod
    def replay(cls, cadre_id: UUID, events: Sequence[Event]) -> CadreTraining:
        """Fold a cadre's stream (an empty stream is a cadre with no practical training yet)."""
        state = CadreTraining(cadre_id)
        for version, event in enumerate(events, start=1):
            match event:
                case PostingAssigned():
                    posting = Posting(event.posting_id, event.kind, event.starts_on, event.planned_end_on)
                    state = replace(state, postings=(*state.postings, posting))
                case PostingCompleted():
                    postings = tuple(
                        replace(p, ended_on=event.ended_on, outcome=event.outcome)
                        if p.posting_id == event.posting_id
                        else p
                        for p in state.postings
                    )
                    state = replace(state, postings=postings)
                case SelfStudyLogged():
                    state = replace(state, self_study_entries=state.self_study_entries | {event.entry_id})
                case SelfStudyReported():
                    report = Report(event.entry_id, event.studied_on, event.hours)
                    state = replace(
                        state,
                        self_study_entries=state.self_study_entries | {event.entry_id},
                        reports=(*state.reports, report),
                    )
                case SelfStudyConfirmed() | SelfStudyRejected():
                    decided: ReportStatus = "confirmed" if isinstance(event, SelfStudyConfirmed) else "rejected"
                    reports = tuple(
                        replace(r, status=decided) if r.entry_id == event.entry_id else r for r in state.reports
                    )
                    state = replace(state, reports=reports)
            state = replace(state, version=version)
        return state


def assign_posting(state: CadreTraining, event: PostingAssigned) -> list[Event]:
    """One posting at a time, dates in order, no overlap with the cadre's other postings."""
    if any(p.posting_id == event.posting_id for p in state.postings):
        msg = f"posting {event.posting_id} is already assigned"
        raise ConflictError(msg)
    if event.planned_end_on <= event.starts_on:
        msg = f"the posting ends ({event.planned_end_on}) before it starts ({event.starts_on})"
        raise RuleViolationError(msg)
    current = state.open_posting
    if current is not None:
        msg = f"the cadre already holds posting {current.posting_id} until {current.planned_end_on}"
        raise RuleViolationError(msg, posting_id=str(current.posting_id))
    for other in state.postings:
        if event.starts_on <= other.last_day and other.starts_on <= event.planned_end_on:
            msg = f"the posting overlaps posting {other.posting_id} ({other.starts_on} to {other.last_day})"
            raise RuleViolationError(msg, posting_id=str(other.posting_id))
    return [event]


def end_posting(
    state: CadreTraining, posting_id: UUID, *, ended_on: date, outcome: PostingOutcome, summary: str
) -> list[Event]:
    """End the open posting `posting_id` on or after its first day."""
    posting = next((p for p in state.postings if p.posting_id == posting_id), None)
    if posting is None:
        msg = f"posting {posting_id} not found"
        raise RuleViolationError(msg)
    if posting.ended_on is not None:
        msg = f"posting {posting_id} already ended on {posting.ended_on}"
        raise ConflictError(msg)
    if ended_on < posting.starts_on:
        msg = f"the posting cannot end ({ended_on}) before it started ({posting.starts_on})"
        raise RuleViolationError(msg)
    return [
        PostingCompleted(
            posting_id=posting_id, cadre_id=state.cadre_id, ended_on=ended_on, outcome=outcome, summary=summary
        )
    ]


def report_self_study(state: CadreTraining, event: SelfStudyReported, today: date) -> list[Event]:
    """A cadre reports their own study: a day that has come, an entry not recorded before."""
    if event.entry_id in state.self_study_entries:
        msg = f"self-study entry {event.entry_id} is already recorded"
        raise ConflictError(msg)
    if event.studied_on > today:
        msg = "study cannot be reported for a day that has not come"
        raise RuleViolationError(msg)
    return [event]


def decide_report(state: CadreTraining, entry_id: UUID, *, confirm: bool, reason: str = "") -> list[Event]:
    """An organizer confirms a waiting report (its hours count from then on) or rejects it with a reason.

    Once decided, a report stays decided: deciding it again is refused (409).
    """
    report = next((r for r in state.reports if r.entry_id == entry_id), None)
    if report is None:
        msg = f"self-study report {entry_id} not found"
        raise NotFoundError(msg)
    if report.status != "reported":
        msg = f"self-study report {entry_id} is already {report.status}"
        raise ConflictError(msg)
    if confirm:
        return [
            SelfStudyConfirmed(
                entry_id=entry_id, cadre_id=state.cadre_id, studied_on=report.studied_on, hours=report.hours
            )
        ]
    if not reason.strip():
        msg = "a rejection says why"
        raise RuleViolationError(msg)
    return [SelfStudyRejected(entry_id=entry_id, cadre_id=state.cadre_id, reason=reason)]


def cut_short_on_retirement(state: CadreTraining, on: date) -> list[Event]:
    """The open posting ends when the cadre leaves the pool; nothing when none is open."""
    posting = state.open_posting
    if posting is None:
        return []
    return [
        PostingCompleted(
            posting_id=posting.posting_id,
            cadre_id=state.cadre_id,
            ended_on=max(on, posting.starts_on),
            outcome=PostingOutcome.CUT_SHORT,
            summary="the cadre left the reserve pool",
        )
    ]


@dataclass(frozen=True)
class Recommendation:
    """The posting kind to plan next, and why."""

    kind: PostingKind | None
    reason: str


def recommend(state: CadreTraining, *, registry_grassroots_months: int, long_grassroots_months: int) -> Recommendation:
    """The next posting kind from the cadre's history (DOMAIN.md, point 3).

    In order: no grass-roots time at all → downward; long grass-roots service and no
    time at a higher authority → upward; no cold-hot exchange yet → exchange; no
    urgent or dangerous task yet → urgent task.
    """
    served = [p for p in state.postings if p.outcome is not PostingOutcome.CUT_SHORT or p.months() > 0]
    kinds = {p.kind for p in served}
    grassroots = registry_grassroots_months + sum(p.months() for p in served if p.kind is PostingKind.DOWNWARD)
    if grassroots == 0:
        return Recommendation(
            PostingKind.DOWNWARD,
            "no grass-roots experience yet: a posting to a front-line town or village, to know the grass roots"
            " and build comprehensive coordination ability",
        )
    if grassroots >= long_grassroots_months and PostingKind.UPWARD not in kinds:
        return Recommendation(
            PostingKind.UPWARD,
            f"{grassroots} months at the grass roots and no posting at a higher authority: a posting up,"
            " to broaden the horizon and macro-management ability",
        )
    if PostingKind.COLD_HOT_EXCHANGE not in kinds:
        return Recommendation(
            PostingKind.COLD_HOT_EXCHANGE,
            "no exchange between a 'cold' and a 'hot' position yet: to enrich experience and sharpen the will",
        )
    if PostingKind.URGENT_TASK not in kinds:
        return Recommendation(
            PostingKind.URGENT_TASK,
            "no urgent or dangerous task yet: to gain experience of emergencies and complex situations",
        )
    return Recommendation(None, "every kind of practical training has been done: no posting is due")
