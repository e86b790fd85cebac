"""Every event type the platform knows, in one place, and how to read a stored one."""

from __future__ import annotations

from typing import Any

from contracts import assessment, audit, notify, procedure, registry, selection, sync, training
from contracts.event import Event
from contracts.upcasters import reaches, upcast

CURRENT: tuple[type[Event], ...] = (
    registry.OrgUnitRegistered,
    registry.ResponsibleLeaderDesignated,
    registry.CadreNominated,
    registry.CadreProfileUpdated,
    registry.MentorAssigned,
    registry.CadreRetired,
    registry.ImportRunReversed,
    registry.PersonalDataRecorded,
    registry.PersonalDataErased,
    registry.PersonalDataKeyGranted,
    registry.PersonalDataKeyAccepted,
    registry.AccessGranted,
    registry.AccessRevoked,
    training.TrainingProgramScheduled,
    training.TrainingProgramCancelled,
    training.TrainingEnrolled,
    training.EnrolmentWithdrawn,
    training.TrainingCompleted,
    training.TrainingAttendanceRecorded,
    training.SelfStudyLogged,
    training.SelfStudyReported,
    training.SelfStudyConfirmed,
    training.SelfStudyRejected,
    training.PostingAssigned,
    training.PostingCompleted,
    assessment.AssessmentCycleOpened,
    assessment.AssessmentCycleClosed,
    assessment.EvaluationRecorded,
    assessment.CheckInRecorded,
    assessment.ReminderIssued,
    assessment.ReminderResolved,
    assessment.ExitRecommended,
    assessment.ExitRecommendationRejected,
    notify.NotificationSent,
    notify.NotificationFailed,
    notify.NotificationRead,
    notify.NotificationPreferencesSet,
    audit.ChainCheckpointed,
    audit.AuditQueryMade,
    audit.LateEntryDeclared,
    sync.StreamHandedOver,
    sync.DeploymentLinked,
    sync.DirectiveIssued,
    sync.DirectiveApplied,
    sync.DirectiveRefused,
    selection.PostQuotaSet,
    selection.PostCreated,
    selection.PostChanged,
    selection.IncumbentAppointed,
    selection.IncumbentLeft,
    selection.SuccessorNamed,
    selection.ReadinessReviewed,
    selection.SuccessorWithdrawn,
    selection.CadreAppointed,
    selection.PotentialRated,
    procedure.ProcedureRulesSet,
    procedure.CalendarAdjusted,
    procedure.ProcedureOpened,
    procedure.RecommendationRecorded,
    procedure.InspectionRecorded,
    procedure.DecisionRecorded,
    procedure.NoticePublished,
    procedure.ObjectionRaised,
    procedure.ObjectionConcluded,
    procedure.NoticeClosed,
    procedure.ProcedureConcluded,
    procedure.ProcedureStopped,
)
"""The current version of every event type."""

HISTORIC: tuple[type[Event], ...] = (registry.CadreNominatedV1,)
"""Earlier versions still found in stores and topics (read through upcasters)."""

_BY_TYPE: dict[str, type[Event]] = {model.event_type: model for model in CURRENT}
_VERSIONS: dict[str, int] = {model.event_type: model.schema_version for model in CURRENT}


class UnknownEventError(ValueError):
    """An event type (or a version of it) that this build cannot read."""


def model_for(event_type: str) -> type[Event]:
    """The current model of `event_type`."""
    try:
        return _BY_TYPE[event_type]
    except KeyError:
        msg = f"unknown event type {event_type!r}"
        raise UnknownEventError(msg) from None


def check_readable(event_type: str, schema_version: int) -> None:
    """Raise `UnknownEventError` unless a payload of this type and version upcasts to the current model."""
    if _VERSIONS.get(event_type) == schema_version:  # the usual case, first
        return
    model = model_for(event_type)
    if reaches(event_type, schema_version) != model.schema_version:
        msg = f"{event_type} v{schema_version} cannot be read as v{model.schema_version}"
        raise UnknownEventError(msg)


def decode(event_type: str, schema_version: int, payload: dict[str, Any]) -> Event:
    """Upcast a stored payload to the current version and validate it."""
    model = model_for(event_type)
    version, current = upcast(event_type, schema_version, payload)
    if version != model.schema_version:
        msg = f"{event_type} v{schema_version} cannot be read as v{model.schema_version}"
        raise UnknownEventError(msg)
    return model.model_validate(current)
