"""Training's tables.

Its own programmes, enrolments, self-study and postings (folded inline), and the
runtime's view of the registry (`runtime.registry_view`: org units and who is in the
pool, fed from registry.events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from contracts.training import (
    EnrolmentWithdrawn,
    PostingAssigned,
    PostingCompleted,
    SelfStudyConfirmed,
    SelfStudyLogged,
    SelfStudyRejected,
    SelfStudyReported,
    TrainingAttendanceRecorded,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingProgramCancelled,
    TrainingProgramScheduled,
)
from runtime import clock, registry_view
from runtime.db import Conn, in_scope, in_scope_or_above, row_security
from runtime.projection import Recorded, Typed

SCHEMA: Final = (
    *registry_view.SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS programs (
        program_id      uuid PRIMARY KEY,
        title           text NOT NULL,
        organizer_code  text NOT NULL,
        org_path        text COLLATE "C" NOT NULL,
        starts_on       date NOT NULL,
        ends_on         date NOT NULL,
        hours           int NOT NULL,
        capacity        int NOT NULL,
        taken           int NOT NULL DEFAULT 0,
        curriculum      text[] NOT NULL,
        format          text NOT NULL,
        location        text NOT NULL,
        cancelled       boolean NOT NULL DEFAULT false,
        version         int NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS programs_subtree ON programs (org_path, starts_on)",
    """
    CREATE TABLE IF NOT EXISTS enrolments (
        program_id    uuid NOT NULL,
        cadre_id      uuid NOT NULL,
        org_path      text COLLATE "C" NOT NULL,
        status        text NOT NULL CHECK (status IN ('enrolled', 'withdrawn', 'completed')),
        enrolled_at   timestamptz NOT NULL,
        ended_on      date,
        hours         int,
        score         int,
        passed        boolean,
        reason        text,
        PRIMARY KEY (program_id, cadre_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS enrolments_cadre ON enrolments (cadre_id) ",
    """
    CREATE TABLE IF NOT EXISTS self_study (
        entry_id    uuid PRIMARY KEY,
        cadre_id    uuid NOT NULL,
        org_path    text COLLATE "C" NOT NULL,
        kind        text NOT NULL,
        topic       text NOT NULL,
        studied_on  date NOT NULL,
        hours       int NOT NULL,
        evidence    text NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS self_study_cadre ON self_study (cadre_id, studied_on)",
    """
    CREATE TABLE IF NOT EXISTS self_study_reports (
        entry_id         uuid PRIMARY KEY,
        cadre_id         uuid NOT NULL,
        org_path         text COLLATE "C" NOT NULL,
        kind             text NOT NULL,
        topic            text NOT NULL,
        studied_on       date NOT NULL,
        hours            int NOT NULL,
        evidence_name    text NOT NULL,
        evidence_sha256  text NOT NULL,
        status           text NOT NULL CHECK (status IN ('reported', 'confirmed', 'rejected')),
        reported_at      timestamptz NOT NULL,
        decided_at       timestamptz,
        decided_by       text,
        reason           text
    )
    """,
    "CREATE INDEX IF NOT EXISTS self_study_reports_cadre ON self_study_reports (cadre_id, studied_on)",
    "CREATE INDEX IF NOT EXISTS self_study_reports_waiting ON self_study_reports (org_path) WHERE status = 'reported'",
    """
    CREATE TABLE IF NOT EXISTS postings (
        posting_id      uuid PRIMARY KEY,
        cadre_id        uuid NOT NULL,
        org_path        text COLLATE "C" NOT NULL,
        kind            text NOT NULL,
        host_org_code   text NOT NULL,
        host_unit_name  text NOT NULL,
        position        text NOT NULL,
        purpose         text NOT NULL,
        starts_on       date NOT NULL,
        planned_end_on  date NOT NULL,
        ended_on        date,
        outcome         text,
        summary         text
    )
    """,
    "CREATE INDEX IF NOT EXISTS postings_cadre ON postings (cadre_id, starts_on)",
    "CREATE INDEX IF NOT EXISTS postings_open ON postings (org_path) WHERE ended_on IS NULL",
    # Who reads what (row-level security, runtime.db): an actor its subtree, and the units and programmes above it.
    *row_security("programs", in_scope_or_above("org_path")),
    *row_security("enrolments", in_scope("org_path")),
    *row_security("self_study", in_scope("org_path")),
    *row_security("self_study_reports", in_scope("org_path")),
    *row_security("postings", in_scope("org_path")),
)


class TrainingProjection(Typed):
    """Training's own events, folded into its tables."""

    name = "training"

    events = (
        TrainingProgramScheduled,
        TrainingProgramCancelled,
        TrainingEnrolled,
        EnrolmentWithdrawn,
        TrainingCompleted,
        TrainingAttendanceRecorded,
        SelfStudyLogged,
        SelfStudyReported,
        SelfStudyConfirmed,
        SelfStudyRejected,
        PostingAssigned,
        PostingCompleted,
    )

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events in order (commands append few events at a time)."""
        for recorded in events:
            sql, args = _statement(recorded)
            await conn.execute(sql, *args)


def _statement(recorded: Recorded) -> tuple[str, tuple[Any, ...]]:  # noqa: PLR0911, PLR0912, C901 - a case per type
    env, event = recorded.envelope, recorded.event
    match event:
        case TrainingProgramScheduled():
            return (
                ("INSERT INTO programs (program_id, title, organizer_code, org_path, starts_on, ends_on, hours,"
                " capacity, curriculum, format, location, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                " $11, $12)"),
                (
                    event.program_id, event.title, event.organizer_code, env.org_path, event.starts_on,
                    event.ends_on, event.hours, event.capacity, list(event.curriculum), event.format.value,
                    event.location, env.stream_version,
                ),
            )  # fmt: skip
        case TrainingProgramCancelled():
            return (
                "UPDATE programs SET cancelled = true, version = $2 WHERE program_id = $1",
                (event.program_id, env.stream_version),
            )
        case TrainingEnrolled():
            return (
                (
                    "WITH taken AS (UPDATE programs SET taken = taken + 1, version = $4 WHERE program_id = $1)"
                    " INSERT INTO enrolments (program_id, cadre_id, org_path, status, enrolled_at)"
                    " VALUES ($1, $2, $3, 'enrolled', $5)"
                ),
                (event.program_id, event.cadre_id, env.org_path, env.stream_version, env.occurred_at),
            )
        case EnrolmentWithdrawn():
            return (
                (
                    "WITH taken AS (UPDATE programs SET taken = taken - 1, version = $3 WHERE program_id = $1)"
                    " UPDATE enrolments SET status = 'withdrawn', ended_on = $4, reason = $5"
                    " WHERE program_id = $1 AND cadre_id = $2"
                ),
                (
                    event.program_id,
                    event.cadre_id,
                    env.stream_version,
                    clock.date_of(env.occurred_at),
                    event.reason.value,
                ),
            )
        case TrainingCompleted():
            return (
                ("WITH v AS (UPDATE programs SET version = $3 WHERE program_id = $1)"
                " UPDATE enrolments SET status = 'completed', ended_on = $4, hours = $5, score = $6, passed = $7"
                " WHERE program_id = $1 AND cadre_id = $2"),
                (
                    event.program_id, event.cadre_id, env.stream_version, event.completed_on, event.hours,
                    event.score, event.passed,
                ),
            )  # fmt: skip
        case TrainingAttendanceRecorded():
            return (
                ("WITH taken AS (UPDATE programs SET taken = taken + 1, version = $4 WHERE program_id = $1)"
                " INSERT INTO enrolments (program_id, cadre_id, org_path, status, enrolled_at, ended_on, hours, score,"
                " passed) VALUES ($1, $2, $3, 'completed', $5, $6, $7, $8, $9)"),
                (
                    event.program_id, event.cadre_id, env.org_path, env.stream_version, env.occurred_at,
                    event.completed_on, event.hours, event.score, event.passed,
                ),
            )  # fmt: skip
        case SelfStudyLogged():
            return (
                ("INSERT INTO self_study (entry_id, cadre_id, org_path, kind, topic, studied_on, hours, evidence)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                (
                    event.entry_id, event.cadre_id, env.org_path, event.kind.value, event.topic_studied,
                    event.studied_on, event.hours, event.evidence,
                ),
            )  # fmt: skip
        case SelfStudyReported():
            return (
                ("INSERT INTO self_study_reports (entry_id, cadre_id, org_path, kind, topic, studied_on, hours,"
                " evidence_name, evidence_sha256, status, reported_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'reported', $10)"),
                (
                    event.entry_id, event.cadre_id, env.org_path, event.kind.value, event.topic_studied,
                    event.studied_on, event.hours, event.evidence_name, event.evidence_sha256, env.occurred_at,
                ),
            )  # fmt: skip
        case SelfStudyConfirmed():
            # From now on it counts: it joins the self-study every reading of hours adds up.
            return (
                (
                    "WITH r AS (UPDATE self_study_reports SET status = 'confirmed', decided_at = $2, decided_by = $3"
                    " WHERE entry_id = $1 RETURNING *)"
                    " INSERT INTO self_study (entry_id, cadre_id, org_path, kind, topic, studied_on, hours, evidence)"
                    " SELECT entry_id, cadre_id, org_path, kind, topic, studied_on, hours,"
                    " evidence_name || ' (SHA-256 ' || evidence_sha256 || ')' FROM r"
                ),
                (event.entry_id, env.occurred_at, env.actor.user),
            )
        case SelfStudyRejected():
            return (
                (
                    "UPDATE self_study_reports SET status = 'rejected', decided_at = $2, decided_by = $3, reason = $4"
                    " WHERE entry_id = $1"
                ),
                (event.entry_id, env.occurred_at, env.actor.user, event.reason),
            )
        case PostingAssigned():
            return (
                ("INSERT INTO postings (posting_id, cadre_id, org_path, kind, host_org_code, host_unit_name, position,"
                " purpose, starts_on, planned_end_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                (
                    event.posting_id, event.cadre_id, env.org_path, event.kind.value, event.host_org_code,
                    event.host_unit_name, event.position, event.purpose, event.starts_on, event.planned_end_on,
                ),
            )  # fmt: skip
        case PostingCompleted():
            return (
                "UPDATE postings SET ended_on = $2, outcome = $3, summary = $4 WHERE posting_id = $1",
                (event.posting_id, event.ended_on, event.outcome.value, event.summary),
            )
        case _:
            msg = f"the training projection does not read {env.event_type}"
            raise ValueError(msg)
