"""The procedures' tables: the board (each procedure at its step, since when), objections, the units' settings.

Folded inline from the procedures' own events; row-level security keeps every row in the
reader's subtree (the rules and the calendar adjustments of the units above are read
too: they apply below).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from contracts.procedure import (
    CalendarAdjusted,
    DecisionRecorded,
    InspectionRecorded,
    NoticeClosed,
    NoticePublished,
    ObjectionConcluded,
    ObjectionRaised,
    ProcedureConcluded,
    ProcedureOpened,
    ProcedureRulesSet,
    ProcedureStopped,
    RecommendationRecorded,
    Step,
)
from runtime.db import Conn, in_scope, in_scope_or_above, row_security
from runtime.projection import Recorded, Typed

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS procedures (
        procedure_id        uuid PRIMARY KEY,
        kind                text NOT NULL,
        org_code            text NOT NULL,
        org_path            text COLLATE "C" NOT NULL,
        candidate_id        uuid NOT NULL,
        candidate_name      text NOT NULL,
        reserve_kind        text,
        post_id             uuid,
        post_title          text,
        step                text NOT NULL,
        step_since          timestamptz NOT NULL,
        opened_at           timestamptz NOT NULL,
        notice_starts_on    date,
        notice_ends_on      date,
        objection_due_days  int NOT NULL,
        stopped_at          text,
        stop_reason         text,
        document_number     text,
        document_date       date,
        version             int NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS procedures_subtree ON procedures (org_path, step)",
    "CREATE INDEX IF NOT EXISTS procedures_candidate ON procedures (candidate_id)",
    """
    CREATE TABLE IF NOT EXISTS procedure_objections (
        objection_id   uuid PRIMARY KEY,
        procedure_id   uuid NOT NULL,
        org_path       text COLLATE "C" NOT NULL,
        received_on    date NOT NULL,
        summary        text NOT NULL,
        substantiated  boolean,
        finding        text
    )
    """,
    (
        "CREATE INDEX IF NOT EXISTS procedure_objections_open ON procedure_objections (procedure_id)"
        " WHERE substantiated IS NULL"
    ),
    """
    CREATE TABLE IF NOT EXISTS procedure_rules (
        org_path  text COLLATE "C" PRIMARY KEY,
        org_code  text NOT NULL,
        rules     jsonb NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS calendar_adjustments (
        org_path  text COLLATE "C" NOT NULL,
        day       date NOT NULL,
        working   boolean NOT NULL,
        reason    text NOT NULL,
        PRIMARY KEY (org_path, day)
    )
    """,
    *row_security("procedures", in_scope("org_path")),
    *row_security("procedure_objections", in_scope("org_path")),
    *row_security("procedure_rules", in_scope_or_above("org_path")),
    *row_security("calendar_adjustments", in_scope_or_above("org_path")),
)

_STEP_OF: Final = {
    RecommendationRecorded.event_type: Step.RECOMMENDATION,
    InspectionRecorded.event_type: Step.INSPECTION,
    DecisionRecorded.event_type: Step.DECISION,
    NoticeClosed.event_type: Step.NOTICE_CLOSED,
}


class ProcedureBoard(Typed):
    """The procedures' events, folded into the board and the units' settings."""

    name = "procedures"

    events = (
        ProcedureRulesSet,
        CalendarAdjusted,
        ProcedureOpened,
        RecommendationRecorded,
        InspectionRecorded,
        DecisionRecorded,
        NoticePublished,
        ObjectionRaised,
        ObjectionConcluded,
        NoticeClosed,
        ProcedureConcluded,
        ProcedureStopped,
    )

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events in order."""
        for recorded in events:
            for sql, args in _statements(recorded):
                await conn.execute(sql, *args)


_MOVE: Final = "UPDATE procedures SET step = $2, step_since = $3, version = $4 WHERE procedure_id = $1"
_VERSION: Final = "UPDATE procedures SET version = $2 WHERE procedure_id = $1"


def _statements(recorded: Recorded) -> list[tuple[str, tuple[Any, ...]]]:  # noqa: PLR0911 - a case per type
    env, event = recorded.envelope, recorded.event
    at, version = env.occurred_at, env.stream_version
    match event:
        case ProcedureRulesSet():
            return [
                (
                    (
                        "INSERT INTO procedure_rules (org_path, org_code, rules) VALUES ($1, $2, $3::jsonb)"
                        " ON CONFLICT (org_path) DO UPDATE SET rules = excluded.rules"
                    ),
                    (env.org_path, event.org_code, event.rules.model_dump_json()),
                )
            ]
        case CalendarAdjusted():
            return [
                (
                    (
                        "INSERT INTO calendar_adjustments (org_path, day, working, reason) VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT (org_path, day) DO UPDATE"
                        " SET working = excluded.working, reason = excluded.reason"
                    ),
                    (env.org_path, event.day, event.working, event.reason),
                )
            ]
        case ProcedureOpened():
            motion = event.motion
            return [
                (
                    (
                        "INSERT INTO procedures (procedure_id, kind, org_code, org_path, candidate_id, candidate_name,"
                        " reserve_kind, post_id, post_title, step, step_since, opened_at, objection_due_days, version)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)"
                    ),
                    (
                        event.procedure_id,
                        event.kind.value,
                        event.org_code,
                        env.org_path,
                        event.candidate_id,
                        event.candidate_name,
                        event.reserve_kind,
                        None if motion is None else motion.post_id,
                        None if motion is None else motion.post_title,
                        Step.OPENED.value,
                        at,
                        event.rules.objection_due_days,
                        version,
                    ),
                )
            ]
        case RecommendationRecorded() | InspectionRecorded() | DecisionRecorded() | NoticeClosed():
            return [(_MOVE, (event.procedure_id, _STEP_OF[env.event_type].value, at, version))]
        case NoticePublished():
            return [
                (
                    (
                        "UPDATE procedures SET step = $2, step_since = $3, version = $4, notice_starts_on = $5,"
                        " notice_ends_on = $6 WHERE procedure_id = $1"
                    ),
                    (event.procedure_id, Step.NOTICE.value, at, version, event.starts_on, event.ends_on),
                )
            ]
        case ObjectionRaised():
            return [
                (
                    (
                        "INSERT INTO procedure_objections (objection_id, procedure_id, org_path, received_on, summary)"
                        " VALUES ($1, $2, $3, $4, $5)"
                    ),
                    (event.objection_id, event.procedure_id, env.org_path, event.received_on, event.summary),
                ),
                (_VERSION, (event.procedure_id, version)),
            ]
        case ObjectionConcluded():
            return [
                (
                    "UPDATE procedure_objections SET substantiated = $2, finding = $3 WHERE objection_id = $1",
                    (event.objection_id, event.substantiated, event.finding),
                ),
                (_VERSION, (event.procedure_id, version)),
            ]
        case ProcedureConcluded():
            return [
                (
                    (
                        "UPDATE procedures SET step = $2, step_since = $3, version = $4, document_number = $5,"
                        " document_date = $6 WHERE procedure_id = $1"
                    ),
                    (
                        event.procedure_id,
                        Step.CONCLUDED.value,
                        at,
                        version,
                        event.document_number,
                        event.document_date,
                    ),
                )
            ]
        case ProcedureStopped():
            return [
                (
                    (
                        "UPDATE procedures SET step = $2, step_since = $3, version = $4, stopped_at = $5,"
                        " stop_reason = $6"
                        " WHERE procedure_id = $1"
                    ),
                    (event.procedure_id, Step.STOPPED.value, at, version, event.at_step.value, event.reason),
                )
            ]
    return []
