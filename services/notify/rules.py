"""Who hears about what: the notification rules, as pure functions of an event.

`plan` turns one recorded event into intents (tell this kind of recipient this
template, now or at a time) and cancellations (a reminder that no longer applies).
Recipients are named by role (the cadre, the cadre's mentor, a unit's responsible
leader) and resolved to a person and an address only when the notification is
sent, from notify's own projection of the registry.

The rules, their recipients and their timing are listed in docs/notify.md.

Scheduled reminders are cancelled when what they announce stops being true: a
withdrawn enrolment or cancelled programme, a posting that ended, a newer
check-in, a cadre who left the pool, an objection concluded, a procedure stopped
or concluded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

from contracts.assessment import CheckInRecorded, EvaluationRecorded, ExitRecommended, ReminderIssued
from contracts.notify import Channel
from contracts.procedure import (
    NoticeClosed,
    NoticePublished,
    ObjectionConcluded,
    ObjectionRaised,
    ProcedureConcluded,
    ProcedureStopped,
)
from contracts.registry import CadreNominated, CadreRetired, MentorAssigned
from contracts.training import (
    EnrolmentWithdrawn,
    PostingAssigned,
    PostingCompleted,
    TrainingEnrolled,
    TrainingProgramCancelled,
)
from runtime.clock import ORGANIZATION_ZONE
from runtime.projection import Recorded

RULES: Final = (
    "nomination",
    "mentor_assigned",
    "enrolment",
    "enrolment_reminder",
    "posting_assigned",
    "posting_end_reminder",
    "evaluation",
    "reminder",
    "exit_recommended",
    "retirement",
    "check_in_overdue",
    "procedure_notice_ended",
    "procedure_objection",
    "procedure_objection_overdue",
)

PLANNED: Final = frozenset(
    {
        CadreNominated.event_type,
        MentorAssigned.event_type,
        TrainingEnrolled.event_type,
        EnrolmentWithdrawn.event_type,
        TrainingProgramCancelled.event_type,
        PostingAssigned.event_type,
        PostingCompleted.event_type,
        EvaluationRecorded.event_type,
        ReminderIssued.event_type,
        ExitRecommended.event_type,
        CadreRetired.event_type,
        CheckInRecorded.event_type,
        NoticePublished.event_type,
        ObjectionRaised.event_type,
        ObjectionConcluded.event_type,
        NoticeClosed.event_type,
        ProcedureConcluded.event_type,
        ProcedureStopped.event_type,
    }
)
"""The event types some rule plans from or cancels on."""

_NAMESPACE: Final = uuid.UUID("5b0f4a52-3d0e-4f55-9a55-7c1c2a1e0b6d")


class RecipientKind(StrEnum):
    """The role a recipient is named by until the notification is sent."""

    CADRE = "cadre"
    """The cadre (key: cadre id)."""
    MENTOR = "mentor"
    """The cadre's current mentor (key: cadre id)."""
    LEADER = "leader"
    """A unit's responsible leader (key: org unit code)."""
    ORGANIZER = "organizer"
    """An organizer (key: user id): of a procedure, those at the nearest unit at or above it that has any."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient by role."""

    kind: RecipientKind
    key: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The configurable part of the rules (see `NotifySettings`)."""

    enrolment_reminder_lead: timedelta = timedelta(days=3)
    posting_end_reminder_lead: timedelta = timedelta(days=14)
    check_in_every_days: int = 90
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(ORGANIZATION_ZONE))
    disabled: frozenset[str] = frozenset()
    stale_after: timedelta = timedelta(days=1)
    """A past-due reminder of an event recorded longer ago than this is history being replayed: not sent."""

    def starts(self, day: date) -> datetime:
        """The moment `day` begins in the organization's time zone."""
        return datetime.combine(day, time(0), self.timezone)


@dataclass(frozen=True, slots=True)
class Intent:
    """Tell `recipient` about the event with `template`, at `due_at` (None: now)."""

    rule: str
    template: str
    recipient: Recipient
    context: dict[str, Any]
    due_at: datetime | None = None
    subject_ref: str | None = None
    """What a scheduled reminder is about (`enrolment:<program>:<cadre>`, ...), so it can be cancelled."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel pending reminders whose `subject_ref` starts with `prefix` (or every one of `cadre_id`)."""

    prefix: str | None = None
    cadre_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the planner knows from its projection when the event arrives (for the messages' wording)."""

    cadre_name: str = ""
    cadre_position: str = ""
    unit_name: str = ""
    mentor_name: str = ""
    program_title: str = ""
    program_starts_on: date | None = None
    program_ends_on: date | None = None
    program_location: str = ""
    procedure: ProcedureFacts | None = None
    """Of a procedure's event: the procedure as it opened, and who organizes it."""


@dataclass(frozen=True, slots=True)
class ProcedureFacts:
    """What notify keeps of a procedure (from its opening) and who is told about it."""

    kind: str
    candidate_name: str
    objection_due_days: int
    organizers: tuple[str, ...]
    """User ids of the organizers at the nearest unit at or above the procedure's unit that has any."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one event asks of notify."""

    intents: list[Intent] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)


def notification_id(source_event_id: uuid.UUID, rule: str, recipient: Recipient, channel: Channel) -> uuid.UUID:
    """The id of a notification: the same event, rule, recipient and channel always name the same one."""
    return uuid.uuid5(_NAMESPACE, f"{source_event_id}/{rule}/{recipient.kind}:{recipient.key}/{channel}")


def unit_of(org_path: str) -> str:
    """The code of the unit at the end of an org path (`cn.qs.bh` → `bh`)."""
    return org_path.rsplit(".", 1)[-1]


def plan(recorded: Recorded, facts: Facts, policy: Policy, now: datetime) -> Plan:  # noqa: C901, PLR0912, PLR0915
    """The notifications `recorded` calls for under `policy`, and the reminders it cancels."""
    env, event = recorded.envelope, recorded.event
    leader = Recipient(RecipientKind.LEADER, unit_of(env.org_path))
    result = Plan()
    base: dict[str, Any] = {"cadre_name": facts.cadre_name, "unit_name": facts.unit_name}

    def now_to(rule: str, template: str, recipients: Sequence[Recipient], **context: Any) -> None:
        for recipient in recipients:
            result.intents.append(Intent(rule, template, recipient, {**base, **context}))

    def later(
        rule: str, template: str, recipients: Sequence[Recipient], at: datetime, ref: str, **context: Any
    ) -> None:
        if at < now and env.recorded_at < now - policy.stale_after:
            return
        for recipient in recipients:
            result.intents.append(Intent(rule, template, recipient, {**base, **context}, max(at, now), ref))

    if isinstance(event, CadreNominated):
        base["cadre_name"] = event.full_name
        now_to(
            "nomination",
            "cadre_nominated",
            [Recipient(RecipientKind.LEADER, event.org_code)],
            position=event.current_position,
            reason=event.reason,
        )
    elif isinstance(event, MentorAssigned):
        cadre, mentor = _cadre(event.cadre_id), Recipient(RecipientKind.MENTOR, str(event.cadre_id))
        now_to("mentor_assigned", "mentor_assigned_mentor", [mentor], mentor_name=event.mentor.name)
        now_to("mentor_assigned", "mentor_assigned_cadre", [cadre], mentor_name=event.mentor.name)
    elif isinstance(event, TrainingEnrolled):
        context = {
            "program_title": facts.program_title,
            "starts_on": facts.program_starts_on,
            "ends_on": facts.program_ends_on,
            "location": facts.program_location,
        }
        cadre = _cadre(event.cadre_id)
        now_to("enrolment", "enrolled", [cadre], **context)
        if facts.program_starts_on is not None:
            start = policy.starts(facts.program_starts_on)
            if start > now:
                ref = f"enrolment:{event.program_id}:{event.cadre_id}"
                at = start - policy.enrolment_reminder_lead
                later("enrolment_reminder", "programme_starts_soon", [cadre], at, ref, **context)
    elif isinstance(event, EnrolmentWithdrawn):
        result.cancels.append(Cancel(prefix=f"enrolment:{event.program_id}:{event.cadre_id}"))
    elif isinstance(event, TrainingProgramCancelled):
        result.cancels.append(Cancel(prefix=f"enrolment:{event.program_id}:"))
    elif isinstance(event, PostingAssigned):
        context = {
            "host_unit_name": event.host_unit_name,
            "position": event.position,
            "kind": event.kind.value,
            "starts_on": event.starts_on,
            "planned_end_on": event.planned_end_on,
            "purpose": event.purpose,
        }
        both = [_cadre(event.cadre_id), Recipient(RecipientKind.LEADER, event.host_org_code)]
        now_to("posting_assigned", "posting_assigned_cadre", both[:1], **context)
        now_to("posting_assigned", "posting_assigned_host", both[1:], **context)
        end = policy.starts(event.planned_end_on)
        if end > now:
            at = end - policy.posting_end_reminder_lead
            later("posting_end_reminder", "posting_ends_soon", both, at, f"posting:{event.posting_id}", **context)
    elif isinstance(event, PostingCompleted):
        result.cancels.append(Cancel(prefix=f"posting:{event.posting_id}"))
    elif isinstance(event, EvaluationRecorded):
        now_to(
            "evaluation",
            "evaluation_recorded",
            [_cadre(event.cadre_id)],
            grade=event.grade.value,
            evaluator_name=event.evaluator_name,
            comments=event.comments,
        )
    elif isinstance(event, ReminderIssued):
        recipients = [_cadre(event.cadre_id), Recipient(RecipientKind.MENTOR, str(event.cadre_id)), leader]
        now_to(
            "reminder",
            "reminder_issued",
            recipients,
            concern=event.concern,
            severity=event.severity.value,
            follow_up_on=event.follow_up_on,
        )
    elif isinstance(event, ExitRecommended):
        now_to("exit_recommended", "exit_recommended", [leader], exit_rule=event.rule.value, summary=event.summary)
    elif isinstance(event, CadreRetired):
        result.cancels.append(Cancel(cadre_id=event.cadre_id))
        recipients = [_cadre(event.cadre_id), Recipient(RecipientKind.MENTOR, str(event.cadre_id))]
        now_to(
            "retirement",
            "cadre_retired",
            recipients,
            reason=event.reason.value,
            effective_on=event.effective_on,
            note=event.note,
        )
    elif isinstance(event, CheckInRecorded):
        ref = f"checkin:{event.cadre_id}"
        result.cancels.append(Cancel(prefix=ref))
        due_on = event.held_on + timedelta(days=policy.check_in_every_days)
        recipients = [Recipient(RecipientKind.MENTOR, str(event.cadre_id)), leader]
        at = policy.starts(due_on)
        later("check_in_overdue", "check_in_overdue", recipients, at, ref, last_check_in=event.held_on, due_on=due_on)
    else:
        _procedure(recorded, facts, policy, now, result)
    result.intents[:] = [intent for intent in result.intents if intent.rule not in policy.disabled]
    return result


def _procedure(recorded: Recorded, facts: Facts, policy: Policy, now: datetime, result: Plan) -> None:
    """A procedure's notice ending and its objections: the organizers are told; what stops being due is cancelled."""
    env, event = recorded.envelope, recorded.event
    procedure = facts.procedure
    if isinstance(event, ObjectionConcluded):
        result.cancels.append(Cancel(prefix=f"procedure:{event.procedure_id}:objection:{event.objection_id}"))
    elif isinstance(event, NoticeClosed):
        result.cancels.append(Cancel(prefix=f"procedure:{event.procedure_id}:notice"))
    elif isinstance(event, ProcedureConcluded | ProcedureStopped):
        result.cancels.append(Cancel(prefix=f"procedure:{event.procedure_id}:"))
    if procedure is None or not isinstance(event, NoticePublished | ObjectionRaised):
        return
    organizers = [Recipient(RecipientKind.ORGANIZER, user) for user in procedure.organizers]
    context: dict[str, Any] = {
        "cadre_name": procedure.candidate_name,
        "unit_name": facts.unit_name,
        "procedure_kind": procedure.kind,
        "procedure_id": event.procedure_id,
    }

    def add(rule: str, template: str, at: datetime | None, ref: str | None, **more: Any) -> None:
        if at is not None and at < now and env.recorded_at < now - policy.stale_after:
            return  # history being replayed, not news
        due = None if at is None else max(at, now)
        result.intents.extend(Intent(rule, template, r, {**context, **more}, due, ref) for r in organizers)

    if isinstance(event, NoticePublished):
        ends = policy.starts(event.ends_on + timedelta(days=1))
        ref = f"procedure:{event.procedure_id}:notice"
        add("procedure_notice_ended", "procedure_notice_ended", ends, ref, ends_on=event.ends_on)
    else:
        due_on = event.received_on + timedelta(days=procedure.objection_due_days)
        more = {"received_on": event.received_on, "due_on": due_on, "summary": event.summary}
        add("procedure_objection", "procedure_objection_raised", None, None, **more)
        ref = f"procedure:{event.procedure_id}:objection:{event.objection_id}"
        at = policy.starts(due_on + timedelta(days=1))
        add("procedure_objection_overdue", "procedure_objection_overdue", at, ref, **more)


def _cadre(cadre_id: uuid.UUID) -> Recipient:
    return Recipient(RecipientKind.CADRE, str(cadre_id))


def backoff(attempt: int, base: float, ceiling: float) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1, 2, ...): doubling from `base`, capped."""
    return timedelta(seconds=min(ceiling, base * 2 ** (attempt - 1)))
