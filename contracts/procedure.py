"""Events of the procedures: the recorded road into the pool and onto a post.

A procedure is one stream (its id). It opens for a candidate, either into the pool
(`entry`, for a reserve kind) or onto a post (`appointment`, opened by a motion), and
moves step by step: democratic recommendation, organizational inspection, collective
decision, public notice (with objections), and its outcome; or it stops at any step
with the reason. The rules it is judged by (thresholds, quorum, notice period) are the
organization's, copied into the opening event so that a later change of the rules
never changes what a running or past procedure meant. Evidence travels as documents by
their SHA-256, never as the documents themselves.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, Field

from contracts import topics
from contracts.envelope import OrgCode, OrgPath, Sha256
from contracts.event import Event, Value
from contracts.registry import Education, Gender, Name, Statement, Text

TOPIC = topics.service_topic("selection")
"""The procedures are the selection service's: its topic."""

Count = Annotated[int, Field(ge=0, le=1_000_000)]


class ProcedureKind(StrEnum):
    """Where a procedure leads."""

    ENTRY = "entry"
    """Into the reserve pool; ends in the registry's `CadreNominated`."""
    APPOINTMENT = "appointment"
    """Onto a leadership post; ends in the appointment."""


class Step(StrEnum):
    """The steps of a procedure, in their order."""

    OPENED = "opened"
    RECOMMENDATION = "recommendation"
    INSPECTION = "inspection"
    DECISION = "decision"
    NOTICE = "notice"
    NOTICE_CLOSED = "notice_closed"
    CONCLUDED = "concluded"
    STOPPED = "stopped"


class Document(Value):
    """A document on the record, by its SHA-256 (the file itself stays where it is filed)."""

    title: Name
    sha256: Sha256


class Threshold(Value):
    """A share of a base: `more than` (inclusive false) or `at least` (inclusive true) numerator/denominator."""

    numerator: int = Field(ge=0, le=1000)
    denominator: int = Field(ge=1, le=1000)
    inclusive: bool = False


class ProcedureRules(Value):
    """The organization's settings a procedure is judged by (the defaults are the common rules)."""

    recommendation: Threshold = Threshold(numerator=1, denominator=2)
    """Votes for the candidate against the ballots cast: more than half by default."""
    quorum: Threshold = Threshold(numerator=2, denominator=3, inclusive=True)
    """Members present against all members of the committee: at least two thirds by default."""
    majority: Threshold = Threshold(numerator=1, denominator=2)
    """Votes in favour against *all* members of the committee: more than half by default."""
    notice_working_days: int = Field(default=5, ge=1, le=60)
    """The shortest public notice, in the organization's working days."""
    objection_due_days: int = Field(default=10, ge=1, le=365)
    """An objection unanswered for longer than this many days is overdue (the board shows it)."""


class Candidate(Value):
    """Who an entry procedure is for: what the nomination will record when the candidate is admitted."""

    full_name: Name
    gender: Gender
    birth_date: date
    education: Education
    current_position: Name
    years_of_service: int = Field(ge=0, le=60)
    grassroots_months: int = Field(ge=0, le=720)


class Motion(Value):
    """The motion an appointment procedure starts from: the post to fill, and why."""

    post_id: UUID
    post_title: Name
    reason: Text
    document: Document | None = None


class _SelectionEvent(Event):
    """An event of the procedures, on the selection service's topic."""

    topic: ClassVar[str] = TOPIC


class ProcedureRulesSet(_SelectionEvent):
    """A unit set the rules its procedures (and those of its subtree without their own) are judged by."""

    org_code: OrgCode
    rules: ProcedureRules


class CalendarAdjusted(_SelectionEvent):
    """A unit declared a day a working day or a day off, beside the public holidays (its subtree follows)."""

    org_code: OrgCode
    day: date
    working: bool
    reason: Text


class _ProcedureEvent(_SelectionEvent):
    """An event of one procedure: its stream, named by its id."""

    procedure_id: UUID


class ProcedureOpened(_ProcedureEvent):
    """A procedure opened for a candidate: into the pool (with the candidate) or onto a post (with the motion)."""

    kind: ProcedureKind
    org_code: OrgCode
    """The unit that runs the procedure (the candidate's unit, or the post's)."""
    candidate_id: UUID
    """The cadre: an existing one for an appointment; the id the nomination will take for an entry."""
    candidate_name: Name
    reserve_kind: Name | None = None
    """For an entry: the kind of reserve (e.g. county deputy)."""
    candidate: Candidate | None = None
    """For an entry: what the nomination will record."""
    motion: Motion | None = None
    """For an appointment: the post and the reason."""
    reason: Text = ""
    rules: ProcedureRules


class TallyLine(Value):
    """The votes one candidate received."""

    candidate_name: Name
    candidate_id: UUID | None = None
    votes: Count


class MeetingVote(Value):
    """The recommendation meeting's ballot: who could vote, who came, and what the ballots said."""

    held_on: date
    eligible: Count
    present: Count
    ballots_cast: Count
    valid_ballots: Count
    invalid_ballots: Count
    seats: int = Field(default=1, ge=1, le=100)
    """How many candidates a ballot may name."""
    tally: tuple[TallyLine, ...] = Field(min_length=1, max_length=200)


class Talks(Value):
    """The individual talks of the recommendation: how many were talked to, how many named the candidate."""

    interviewed: Count
    in_favour: Count


class RecommendationRecorded(_ProcedureEvent):
    """The democratic recommendation: the meeting's tally and the talks, and whether the candidate goes on."""

    meeting: MeetingVote
    talks: Talks
    passed: bool
    """The candidate's votes met the recommendation threshold (a procedure that did not pass stops)."""
    documents: tuple[Document, ...] = ()


class InspectionConclusion(StrEnum):
    """What the inspection team concluded."""

    FIT = "fit"
    UNFIT = "unfit"


class Inspection(BaseModel):
    """The organizational inspection: the team, the interviews, the report, the clean-record letter.

    What the command to record it takes, and what the event records with the procedure's id.
    """

    team: tuple[Name, ...] = Field(min_length=1, max_length=20)
    interviewed: int = Field(ge=1, le=10_000)
    report: Document
    conclusion: InspectionConclusion
    summary: Text = ""
    clean_record: Document
    """The discipline inspection body's letter on the candidate's record."""


class InspectionRecorded(Inspection, _ProcedureEvent):
    """The organizational inspection: the team, the interviews, the report, the clean-record letter."""


class DecisionRecorded(_ProcedureEvent):
    """The committee's collective decision: members present against all members, and the votes."""

    held_on: date
    members: int = Field(ge=1, le=1000)
    present: Count
    votes_for: Count
    votes_against: Count
    abstentions: Count
    passed: bool
    """More than the majority of all members voted in favour (a decision against stops the procedure)."""
    minutes: Document


class NoticePublished(_ProcedureEvent):
    """The public notice was published for a period of working days on the unit's calendar."""

    starts_on: date
    working_days: int = Field(ge=1, le=60)
    ends_on: date
    """The last working day of the period (the period ends when that day ends, in the organization's zone)."""
    where: Text = ""
    document: Document | None = None


class ObjectionRaised(_ProcedureEvent):
    """Someone objected during the notice period."""

    objection_id: UUID
    received_on: date
    summary: Text
    document: Document | None = None


class ObjectionConcluded(_ProcedureEvent):
    """An objection was looked into: substantiated (the procedure stops) or not."""

    objection_id: UUID
    substantiated: bool
    finding: Text
    document: Document | None = None


class NoticeClosed(_ProcedureEvent):
    """The notice period ended with every objection concluded and none substantiated."""

    closed_on: date


class ProcedureConcluded(_ProcedureEvent):
    """The outcome: the candidate admitted into the pool, or appointed to the post, by a document."""

    kind: ProcedureKind
    candidate_id: UUID
    document_number: Name
    document_date: date
    post_id: UUID | None = None
    """For an appointment: the post filled."""
    org_code: OrgCode | None = None
    """The unit that ran the procedure: for an entry, the unit whose pool the candidate enters."""
    candidate: Candidate | None = None
    """For an entry: the candidate's record, as the nomination records it (the registry reads this event alone)."""
    reserve_kind: Name | None = None
    """For an entry: the kind of reserve."""
    unit_path: OrgPath | None = None
    """The unit's org path: the deployment that owns it applies the outcome (a level above runs a procedure for a
    unit below it and sends the outcome down as a directive, ADR 0039). None in outcomes recorded before."""


class ProcedureStopped(_ProcedureEvent):
    """The procedure stopped at a step, with the reason (a vote not passed, an objection upheld, a withdrawal)."""

    at_step: Step
    reason: Statement
