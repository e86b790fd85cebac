"""Assessment's tables.

Its own cycles, evaluations, check-ins, reminders and exit recommendations (folded
inline), the runtime's view of the registry (`runtime.registry_view`: units with their
pool targets; cadres, and the case closing when one leaves the pool), and its view of
training (hours, postings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from contracts.assessment import (
    AssessmentCycleClosed,
    AssessmentCycleOpened,
    CheckInRecorded,
    EvaluationRecorded,
    ExitRecommendationRejected,
    ExitRecommended,
    ReminderIssued,
    ReminderResolved,
)
from contracts.training import (
    PostingCompleted,
    PostingOutcome,
    SelfStudyConfirmed,
    SelfStudyLogged,
    TrainingAttendanceRecorded,
    TrainingCompleted,
)
from runtime import registry_view
from runtime.db import Conn, in_scope, in_scope_or_above, row_security
from runtime.projection import Recorded, Typed

SCHEMA: Final = (
    *registry_view.SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS training_hours (
        cadre_id    uuid NOT NULL,
        year        int NOT NULL,
        organized   int NOT NULL DEFAULT 0,
        self_study  int NOT NULL DEFAULT 0,
        PRIMARY KEY (cadre_id, year)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS postings_served (
        cadre_id  uuid PRIMARY KEY,
        served    int NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS cycles (
        cycle_id   uuid PRIMARY KEY,
        org_code   text NOT NULL,
        org_path   text COLLATE "C" NOT NULL,
        period     text NOT NULL,
        name       text NOT NULL,
        starts_on  date NOT NULL,
        ends_on    date NOT NULL,
        closed_on  date,
        version    int NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS evaluations (
        evaluation_id        uuid PRIMARY KEY,
        cycle_id             uuid NOT NULL,
        cadre_id             uuid NOT NULL,
        org_path             text COLLATE "C" NOT NULL,
        grade                text NOT NULL,
        political_integrity  int NOT NULL,
        ability              int NOT NULL,
        diligence            int NOT NULL,
        performance          int NOT NULL,
        probity              int NOT NULL,
        evaluator_id         text NOT NULL,
        evaluator_name       text NOT NULL,
        comments             text NOT NULL,
        evidence             text[] NOT NULL,
        supersedes           uuid,
        superseded_by        uuid,
        recorded_at          timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS evaluations_cadre ON evaluations (cadre_id)",
    "CREATE INDEX IF NOT EXISTS evaluations_cycle ON evaluations (cycle_id) WHERE superseded_by IS NULL",
    """
    CREATE TABLE IF NOT EXISTS check_ins (
        check_in_id  uuid PRIMARY KEY,
        cadre_id     uuid NOT NULL,
        org_path     text COLLATE "C" NOT NULL,
        held_on      date NOT NULL,
        held_by      text NOT NULL,
        thinking     text NOT NULL,
        work         text NOT NULL,
        life         text NOT NULL,
        follow_up    text NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS check_ins_cadre ON check_ins (cadre_id, held_on)",
    """
    CREATE TABLE IF NOT EXISTS reminders (
        reminder_id   uuid PRIMARY KEY,
        cadre_id      uuid NOT NULL,
        org_path      text COLLATE "C" NOT NULL,
        concern       text NOT NULL,
        severity      text NOT NULL,
        follow_up_on  date NOT NULL,
        rule          text,
        issued_at     timestamptz NOT NULL,
        resolved_on   date,
        resolution    text
    )
    """,
    "CREATE INDEX IF NOT EXISTS reminders_open ON reminders (org_path) WHERE resolved_on IS NULL",
    """
    CREATE TABLE IF NOT EXISTS exit_recommendations (
        recommendation_id  uuid PRIMARY KEY,
        cadre_id           uuid NOT NULL,
        org_path           text COLLATE "C" NOT NULL,
        rule               text NOT NULL,
        evidence           uuid[] NOT NULL,
        summary            text NOT NULL,
        recommended_at     timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS exit_recommendations_cadre ON exit_recommendations (cadre_id)",
    "ALTER TABLE exit_recommendations ADD COLUMN IF NOT EXISTS rejection text",
    # The cadre's org path on the tables keyed by cadre alone: row-level security reads it.
    'ALTER TABLE training_hours ADD COLUMN IF NOT EXISTS org_path text COLLATE "C"',
    'ALTER TABLE postings_served ADD COLUMN IF NOT EXISTS org_path text COLLATE "C"',
    *(
        f"UPDATE {table} t SET org_path = c.org_path FROM pool_cadres c"  # noqa: S608 - our table names
        " WHERE t.org_path IS NULL AND c.cadre_id = t.cadre_id"
        for table in ("training_hours", "postings_served")
    ),
    *row_security("training_hours", in_scope("org_path")),
    *row_security("postings_served", in_scope("org_path")),
    *row_security("cycles", in_scope_or_above("org_path")),
    *row_security("evaluations", in_scope("org_path")),
    *row_security("check_ins", in_scope("org_path")),
    *row_security("reminders", in_scope("org_path")),
    *row_security("exit_recommendations", in_scope("org_path")),
)


class AssessmentProjection(Typed):
    """Assessment's own events, folded into its tables."""

    name = "assessment"

    events = (
        AssessmentCycleOpened,
        AssessmentCycleClosed,
        EvaluationRecorded,
        CheckInRecorded,
        ReminderIssued,
        ReminderResolved,
        ExitRecommended,
        ExitRecommendationRejected,
    )

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events in order (commands append few at a time)."""
        for recorded in events:
            for sql, args in _statements(recorded):
                await conn.execute(sql, *args)


def _statements(recorded: Recorded) -> list[tuple[str, tuple[Any, ...]]]:  # noqa: PLR0911 - a case per type
    env, event = recorded.envelope, recorded.event
    match event:
        case AssessmentCycleOpened():
            return [
                (
                    (
                        "INSERT INTO cycles (cycle_id, org_code, org_path, period, name, starts_on, ends_on, version)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ),
                    (
                        event.cycle_id,
                        event.org_code,
                        env.org_path,
                        event.period.value,
                        event.name,
                        event.starts_on,
                        event.ends_on,
                        env.stream_version,
                    ),
                )
            ]
        case AssessmentCycleClosed():
            return [
                (
                    "UPDATE cycles SET closed_on = $2, version = $3 WHERE cycle_id = $1",
                    (event.cycle_id, event.closed_on, env.stream_version),
                )
            ]
        case EvaluationRecorded():
            scores = event.scores
            insert = (
                (
                    "INSERT INTO evaluations (evaluation_id, cycle_id, cadre_id, org_path, grade, political_integrity,"
                    " ability, diligence, performance, probity, evaluator_id, evaluator_name, comments, evidence,"
                    " supersedes, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16)"
                ),
                (
                    event.evaluation_id,
                    event.cycle_id,
                    event.cadre_id,
                    env.org_path,
                    event.grade.value,
                    scores.political_integrity,
                    scores.ability,
                    scores.diligence,
                    scores.performance,
                    scores.probity,
                    event.evaluator_id,
                    event.evaluator_name,
                    event.comments,
                    list(event.evidence),
                    event.supersedes,
                    env.recorded_at,
                ),
            )
            if event.supersedes is None:
                return [insert]
            supersede = (
                "UPDATE evaluations SET superseded_by = $2 WHERE evaluation_id = $1",
                (event.supersedes, event.evaluation_id),
            )
            return [insert, supersede]
        case CheckInRecorded():
            return [
                (
                    (
                        "INSERT INTO check_ins (check_in_id, cadre_id, org_path, held_on, held_by, thinking, work,"
                        " life, follow_up) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ),
                    (
                        event.check_in_id,
                        event.cadre_id,
                        env.org_path,
                        event.held_on,
                        event.held_by,
                        event.thinking,
                        event.work,
                        event.life,
                        event.follow_up,
                    ),
                )
            ]
        case ReminderIssued():
            return [
                (
                    (
                        "INSERT INTO reminders (reminder_id, cadre_id, org_path, concern, severity, follow_up_on, rule,"
                        " issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ),
                    (
                        event.reminder_id,
                        event.cadre_id,
                        env.org_path,
                        event.concern,
                        event.severity.value,
                        event.follow_up_on,
                        event.rule.value if event.rule else None,
                        env.occurred_at,
                    ),
                )
            ]
        case ReminderResolved():
            return [
                (
                    "UPDATE reminders SET resolved_on = $2, resolution = $3 WHERE reminder_id = $1",
                    (event.reminder_id, event.resolved_on, event.resolution),
                )
            ]
        case ExitRecommended():
            return [
                (
                    (
                        "INSERT INTO exit_recommendations (recommendation_id, cadre_id, org_path, rule, evidence,"
                        " summary, recommended_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ),
                    (
                        event.recommendation_id,
                        event.cadre_id,
                        env.org_path,
                        event.rule.value,
                        list(event.evidence),
                        event.summary,
                        env.occurred_at,
                    ),
                )
            ]
        case ExitRecommendationRejected():
            return [
                (
                    "UPDATE exit_recommendations SET rejection = $2 WHERE recommendation_id = $1",
                    (event.recommendation_id, event.reason),
                )
            ]
        case _:
            msg = f"the assessment projection does not read {env.event_type}"
            raise ValueError(msg)


class TrainingView(Typed):
    """Assessment's view of training: hours per year by kind, and postings served."""

    name = "training"
    tables = ("training_hours", "postings_served")
    """The tables only this projection writes: it can be rebuilt (runtime.rebuild)."""

    events = (
        TrainingCompleted,
        TrainingAttendanceRecorded,
        SelfStudyLogged,
        SelfStudyConfirmed,
        PostingCompleted,
    )
    """Completions, self-study (logged, or reported and confirmed), ended postings."""

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Add up hours and served postings (each event counted once: the inbox sees to that)."""
        for recorded in events:
            event = recorded.event
            match event:
                case TrainingCompleted() | TrainingAttendanceRecorded():
                    await conn.execute(
                        "INSERT INTO training_hours (cadre_id, year, organized, org_path) VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT (cadre_id, year) DO UPDATE SET organized = training_hours.organized + $3",
                        event.cadre_id,
                        event.completed_on.year,
                        event.hours,
                        recorded.envelope.org_path,
                    )
                case SelfStudyLogged() | SelfStudyConfirmed():  # a cadre's report counts once confirmed
                    await conn.execute(
                        "INSERT INTO training_hours (cadre_id, year, self_study, org_path) VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT (cadre_id, year) DO UPDATE SET self_study = training_hours.self_study + $3",
                        event.cadre_id,
                        event.studied_on.year,
                        event.hours,
                        recorded.envelope.org_path,
                    )
                case PostingCompleted() if event.outcome is PostingOutcome.COMPLETED:
                    await conn.execute(
                        "INSERT INTO postings_served (cadre_id, served, org_path) VALUES ($1, 1, $2)"
                        " ON CONFLICT (cadre_id) DO UPDATE SET served = postings_served.served + 1",
                        event.cadre_id,
                        recorded.envelope.org_path,
                    )
