"""Events of assessment: cycles, evaluations, check-ins, care and reminders, exits."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from contracts import topics
from contracts.envelope import OrgCode
from contracts.event import Event, Value
from contracts.registry import Name, Statement, Text, UserId


class CyclePeriod(StrEnum):
    """When an assessment cycle runs."""

    ANNUAL = "annual"
    MID_YEAR = "mid_year"
    AD_HOC = "ad_hoc"


class Grade(StrEnum):
    """The four-level scale, best first."""

    EXCELLENT = "excellent"
    COMPETENT = "competent"
    BASICALLY_COMPETENT = "basically_competent"
    INCOMPETENT = "incompetent"


class DimensionScores(Value):
    """Scores (0-100) by the dimensions commonly assessed."""

    political_integrity: int = Field(ge=0, le=100)
    ability: int = Field(ge=0, le=100)
    diligence: int = Field(ge=0, le=100)
    performance: int = Field(ge=0, le=100)
    probity: int = Field(ge=0, le=100)


class _AssessmentEvent(Event):
    """An event of the assessment service, on its topic."""

    topic: ClassVar[str] = topics.ASSESSMENT


class AssessmentCycleOpened(_AssessmentEvent):
    """An assessment cycle opened for an org subtree and a period."""

    cycle_id: UUID
    org_code: OrgCode
    """The root of the subtree whose cadres are due."""
    period: CyclePeriod
    name: Name
    starts_on: date
    ends_on: date


class AssessmentCycleClosed(_AssessmentEvent):
    """An assessment cycle closed; no evaluation is recorded in it afterwards."""

    cycle_id: UUID
    closed_on: date


class EvaluationRecorded(_AssessmentEvent):
    """A cadre was evaluated in a cycle. A correction is a new evaluation that supersedes one."""

    evaluation_id: UUID
    cycle_id: UUID
    cadre_id: UUID
    grade: Grade
    scores: DimensionScores
    evaluator_id: UserId
    evaluator_name: Name
    comments: Text = ""
    evidence: list[Text] = Field(default_factory=list, max_length=50)
    supersedes: UUID | None = None
    """The evaluation this one corrects (same cadre, same cycle)."""


class CheckInRecorded(_AssessmentEvent):
    """A regular conversation about a cadre's thinking, work and life."""

    check_in_id: UUID
    cadre_id: UUID
    held_on: date
    held_by: UserId
    thinking: Text = ""
    work: Text = ""
    life: Text = ""
    follow_up: Text = ""


class Severity(StrEnum):
    """How urgent a concern is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ReminderRule(StrEnum):
    """Rules that raise reminders by themselves (a manual reminder names none)."""

    FALLING_GRADE = "falling_grade"
    OVERDUE_CHECK_IN = "overdue_check_in"
    NO_TRAINING_HOURS = "no_training_hours"


class ReminderIssued(_AssessmentEvent):
    """Care and reminder: a problem showing signs or tendencies was pointed out early."""

    reminder_id: UUID
    cadre_id: UUID
    concern: Text
    severity: Severity
    follow_up_on: date
    rule: ReminderRule | None = None


class ReminderResolved(_AssessmentEvent):
    """A reminder was followed up and closed."""

    reminder_id: UUID
    cadre_id: UUID
    resolved_on: date
    resolution: Text


class ExitRule(StrEnum):
    """Rules of "survival of the fittest" that recommend an exit."""

    INCOMPETENT_GRADE = "incompetent_grade"
    TWO_BASICALLY_COMPETENT = "two_basically_competent_in_a_row"


class ExitRecommended(_AssessmentEvent):
    """Assessment recommends that a cadre leave the pool; the registry's organizer decides."""

    recommendation_id: UUID
    cadre_id: UUID
    rule: ExitRule
    evidence: list[UUID] = Field(min_length=1)
    """The evaluations that triggered the rule."""
    summary: Text = ""


class ExitRecommendationRejected(_AssessmentEvent):
    """The organizer decided against an exit recommendation: the cadre stays in the pool."""

    recommendation_id: UUID
    cadre_id: UUID
    reason: Statement
