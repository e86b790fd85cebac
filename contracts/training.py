"""Events of training: organized programmes, self-study, and practical postings."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from contracts import topics
from contracts.envelope import NOT_BLANK_LINE, OrgCode, Sha256
from contracts.event import Event
from contracts.registry import Name, Text

Topic = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK_LINE)]
Hours = Annotated[int, Field(ge=1, le=2000)]
"""Class hours, the unit training records are kept in."""


class ProgramFormat(StrEnum):
    """How a programme is delivered."""

    IN_PERSON = "in_person"
    ONLINE = "online"
    BLENDED = "blended"


class _TrainingEvent(Event):
    """An event of the training service, on its topic."""

    topic: ClassVar[str] = topics.TRAINING


class _ProgramEvent(_TrainingEvent):
    """An event of one programme: its stream, named by its id."""

    program_id: UUID


class ProgramPlan(BaseModel):
    """A programme as scheduled: what the command to schedule it takes, and what the event records."""

    title: Name
    organizer_code: OrgCode
    starts_on: date
    ends_on: date
    hours: Hours
    capacity: int = Field(ge=1, le=10_000)
    curriculum: list[Topic] = Field(min_length=1, max_length=50)
    format: ProgramFormat = ProgramFormat.IN_PERSON
    location: Text = ""


class TrainingProgramScheduled(ProgramPlan, _ProgramEvent):
    """An organized training programme was scheduled (organized training is the main form)."""


class TrainingProgramCancelled(_ProgramEvent):
    """A programme will not take place; its enrolments are withdrawn."""

    reason: Text


class TrainingEnrolled(_ProgramEvent):
    """A cadre was enrolled in a programme."""

    cadre_id: UUID


class WithdrawalReason(StrEnum):
    """Why an enrolment ended without completion."""

    WITHDREW = "withdrew"
    CADRE_RETIRED = "cadre_retired"
    PROGRAM_CANCELLED = "program_cancelled"


class EnrolmentWithdrawn(_ProgramEvent):
    """An enrolment ended without completion."""

    cadre_id: UUID
    reason: WithdrawalReason
    note: Text = ""


class _Completion(_ProgramEvent):
    """A cadre's completion of a programme: the hours credited and the score."""

    cadre_id: UUID
    completed_on: date
    hours: Hours
    score: int | None = Field(default=None, ge=0, le=100)
    passed: bool = True


class TrainingCompleted(_Completion):
    """A cadre completed a programme, with the hours credited and the score."""


class TrainingAttendanceRecorded(_Completion):
    """A cadre's completion of a programme that already ran, recorded after the fact.

    For records kept before the platform (an import of past training, a sign-in sheet found
    late): no enrolment preceded it, so nobody is told of an enrolment, and `evidence` says
    what the record rests on. It counts like a `TrainingCompleted`.
    """

    evidence: Text
    """What shows the cadre attended: a certificate number, the class register."""


class SelfStudyKind(StrEnum):
    """Forms of autonomous learning (the supplement to organized training)."""

    READING = "reading"
    ONLINE_COURSE = "online_course"
    LECTURE = "lecture"
    RESEARCH = "research"


class _SelfStudy(_TrainingEvent):
    """An entry of autonomous study: what a cadre studied, when, for how many hours."""

    entry_id: UUID
    cadre_id: UUID
    kind: SelfStudyKind
    topic_studied: Topic
    studied_on: date
    hours: Hours


class SelfStudyLogged(_SelfStudy):
    """A cadre logged autonomous study."""

    evidence: Text
    """What shows the study happened: a certificate number, notes, a link."""


class SelfStudyReported(_SelfStudy):
    """A cadre reported their own autonomous study, with evidence (ADR 0028).

    It counts toward no hours until an organizer of the cadre's subtree confirms it
    (`SelfStudyConfirmed`); an organizer may reject it instead (`SelfStudyRejected`).
    """

    evidence_name: Name
    """The evidence document's file name (a certificate, notes) as the cadre gave it."""
    evidence_sha256: Sha256
    """The SHA-256 of the evidence document: the record says which document it rests on."""


class SelfStudyConfirmed(_TrainingEvent):
    """An organizer confirmed a reported self-study: from now on its hours count.

    It repeats the day and the hours, so that every reader counts it without the report.
    """

    entry_id: UUID
    cadre_id: UUID
    studied_on: date
    hours: Hours


class SelfStudyRejected(_TrainingEvent):
    """An organizer rejected a reported self-study, saying why: it never counts."""

    entry_id: UUID
    cadre_id: UUID
    reason: Text


class PostingKind(StrEnum):
    """The kinds of practical training through postings."""

    UPWARD = "upward"
    """Long grass-roots service → a higher authority (horizon, macro-management)."""
    DOWNWARD = "downward"
    """No grass-roots experience → a front-line town or village (coordination)."""
    COLD_HOT_EXCHANGE = "cold_hot_exchange"
    """Between quiet, remote, hard ("cold") and central, high-profile ("hot") positions."""
    URGENT_TASK = "urgent_task"
    """Urgent, difficult or dangerous tasks: emergencies, disaster relief."""


class PostingAssigned(_TrainingEvent):
    """A cadre was posted for practical training."""

    posting_id: UUID
    cadre_id: UUID
    kind: PostingKind
    host_org_code: OrgCode
    host_unit_name: Name
    position: Name
    starts_on: date
    planned_end_on: date
    purpose: Text = ""


class PostingOutcome(StrEnum):
    """How a posting ended."""

    COMPLETED = "completed"
    CUT_SHORT = "cut_short"


class PostingCompleted(_TrainingEvent):
    """A posting ended, as planned or cut short."""

    posting_id: UUID
    cadre_id: UUID
    ended_on: date
    outcome: PostingOutcome
    summary: Text = ""
    """The host unit's account of the posting, or why it was cut short."""
