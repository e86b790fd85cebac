"""Selection's tables.

Its own teams folded inline: quotas (with their history, for counts as of a date), posts,
tenures (one row per incumbent's time in a post), successors and the history of their
readiness, appointments out of the pool, potential ratings. Beside them the runtime's view
of the registry (`runtime.registry_view`: units, and who is in the pool since when), and a
view of assessment for the 9-box (`PerformanceView`: cycles and grades, ADR 0033).
Every table is read through row-level security by the unit's path (ADR 0018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from contracts.assessment import AssessmentCycleOpened, EvaluationRecorded
from contracts.selection import (
    CadreAppointed,
    IncumbentAppointed,
    IncumbentLeft,
    PostChanged,
    PostCreated,
    PostQuotaSet,
    PotentialRated,
    ReadinessReviewed,
    SuccessorNamed,
    SuccessorWithdrawn,
)
from runtime import clock, registry_view, summaries
from runtime.db import Conn, in_scope, in_scope_or_above, row_security
from runtime.projection import Recorded, Typed

SCHEMA: Final = (
    *registry_view.SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS quotas (
        event_id         uuid PRIMARY KEY,
        org_code         text NOT NULL,
        org_path         text COLLATE "C" NOT NULL,
        kind             text NOT NULL,
        approved         int NOT NULL,
        document_number  text NOT NULL,
        set_on           date NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS quotas_subtree ON quotas (org_path, kind, set_on)",
    """
    CREATE TABLE IF NOT EXISTS posts (
        post_id     uuid PRIMARY KEY,
        org_code    text NOT NULL,
        org_path    text COLLATE "C" NOT NULL,
        kind        text NOT NULL,
        title       text NOT NULL,
        rank        text NOT NULL,
        created_on  date NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS posts_subtree ON posts (org_path, kind)",
    """
    CREATE TABLE IF NOT EXISTS tenures (
        event_id            uuid PRIMARY KEY,
        post_id             uuid NOT NULL,
        org_path            text COLLATE "C" NOT NULL,
        kind                text NOT NULL,
        holder_name         text NOT NULL,
        cadre_id            uuid,
        from_pool           boolean NOT NULL,
        starts_on           date NOT NULL,
        ends_by             date,
        left_on             date,
        left_reason         text,
        over_quota_document text,
        over_quota_reason   text
    )
    """,
    # The appointment procedure that decided a tenure (none: recorded by one decision, without a procedure).
    "ALTER TABLE tenures ADD COLUMN IF NOT EXISTS procedure_id uuid",
    # The holder's birth date as recorded with the incumbent (a pool cadre's is the registry's: pool_cadres).
    "ALTER TABLE tenures ADD COLUMN IF NOT EXISTS birth_date date",
    "CREATE INDEX IF NOT EXISTS tenures_post ON tenures (post_id, starts_on)",
    "CREATE INDEX IF NOT EXISTS tenures_subtree ON tenures (org_path, starts_on)",
    "CREATE INDEX IF NOT EXISTS tenures_cadre ON tenures (cadre_id)",
    """
    CREATE TABLE IF NOT EXISTS successors (
        post_id      uuid NOT NULL,
        cadre_id     uuid NOT NULL,
        org_path     text COLLATE "C" NOT NULL,
        full_name    text NOT NULL,
        readiness    text NOT NULL,
        named_on     date NOT NULL,
        reviewed_on  date NOT NULL,
        active       boolean NOT NULL,
        PRIMARY KEY (post_id, cadre_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS successors_subtree ON successors (org_path) WHERE active",
    """
    CREATE TABLE IF NOT EXISTS readiness_history (
        event_id    uuid PRIMARY KEY,
        post_id     uuid NOT NULL,
        cadre_id    uuid NOT NULL,
        org_path    text COLLATE "C" NOT NULL,
        readiness   text,
        reason      text NOT NULL,
        actor       text NOT NULL,
        recorded_on date NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS readiness_history_cadre ON readiness_history (cadre_id, post_id)",
    """
    CREATE TABLE IF NOT EXISTS appointments (
        event_id         uuid PRIMARY KEY,
        post_id          uuid NOT NULL,
        cadre_id         uuid NOT NULL,
        org_code         text NOT NULL,
        org_path         text COLLATE "C" NOT NULL,
        kind             text NOT NULL,
        post_title       text NOT NULL,
        full_name        text NOT NULL,
        appointed_on     date NOT NULL,
        document_number  text NOT NULL,
        over_quota       boolean NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS appointments_subtree ON appointments (org_path, appointed_on)",
    "CREATE INDEX IF NOT EXISTS appointments_cadre ON appointments (cadre_id)",
    """
    CREATE TABLE IF NOT EXISTS potentials (
        event_id   uuid PRIMARY KEY,
        cadre_id   uuid NOT NULL,
        org_path   text COLLATE "C" NOT NULL,
        potential  text NOT NULL,
        cycle      text NOT NULL,
        reason     text NOT NULL,
        rater      text NOT NULL,
        rated_on   date NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS potentials_cadre ON potentials (cadre_id, rated_on)",
    # Who reads what (row-level security, runtime.db): an actor the teams of its subtree.
    *row_security("quotas", in_scope("org_path")),
    *row_security("posts", in_scope("org_path")),
    *row_security("tenures", in_scope("org_path")),
    *row_security("successors", in_scope("org_path")),
    *row_security("readiness_history", in_scope("org_path")),
    *row_security("appointments", in_scope("org_path")),
    *row_security("potentials", in_scope("org_path")),
    # The teams' ages and strength counted per unit and day, counted again for the units whose posts changed.
    *summaries.SCHEMA,
    *summaries.watched("posts"),
    *summaries.watched("tenures"),
    *summaries.watched("successors"),
    *summaries.watched("pool_cadres", "SELECT t.org_path FROM tenures t JOIN %1$s r ON r.cadre_id = t.cadre_id"),
    # Performance for the 9-box, from assessment's topic (ADR 0033): cycles and each cadre's grade in them.
    """
    CREATE TABLE IF NOT EXISTS review_cycles (
        cycle_id   uuid PRIMARY KEY,
        org_code   text NOT NULL,
        org_path   text COLLATE "C" NOT NULL,
        name       text NOT NULL,
        starts_on  date NOT NULL,
        ends_on    date NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS review_grades (
        evaluation_id  uuid PRIMARY KEY,
        cycle_id       uuid NOT NULL,
        cadre_id       uuid NOT NULL,
        org_path       text COLLATE "C" NOT NULL,
        grade          text NOT NULL,
        superseded     boolean NOT NULL DEFAULT false
    )
    """,
    "CREATE INDEX IF NOT EXISTS review_grades_cycle ON review_grades (cycle_id, org_path) WHERE NOT superseded",
    "CREATE INDEX IF NOT EXISTS potentials_cycle ON potentials (cycle, org_path)",
    # A cycle opened above the actor's unit covers it: it reads the cycles of its subtree and those above it.
    *row_security("review_cycles", in_scope_or_above("org_path")),
    *row_security("review_grades", in_scope("org_path")),
)


class SelectionProjection(Typed):
    """Selection's own events, folded into its tables."""

    name = "selection"

    events = (
        PostQuotaSet,
        PostCreated,
        PostChanged,
        IncumbentAppointed,
        IncumbentLeft,
        SuccessorNamed,
        ReadinessReviewed,
        SuccessorWithdrawn,
        CadreAppointed,
        PotentialRated,
    )

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events in order (commands append few events at a time)."""
        for recorded in events:
            await _apply(conn, recorded)


async def _apply(conn: Conn, recorded: Recorded) -> None:
    env, event = recorded.envelope, recorded.event
    day = clock.date_of(env.occurred_at)
    match event:
        case PostQuotaSet():
            await conn.execute(
                "INSERT INTO quotas (event_id, org_code, org_path, kind, approved, document_number, set_on)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
                env.event_id, event.org_code, env.org_path, event.kind.value, event.approved,
                event.document_number, day,
            )  # fmt: skip
        case PostCreated():
            await conn.execute(
                "INSERT INTO posts (post_id, org_code, org_path, kind, title, rank, created_on)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (post_id) DO NOTHING",
                event.post_id, event.org_code, env.org_path, event.kind.value, event.title, event.rank, day,
            )  # fmt: skip
        case PostChanged():
            await conn.execute(
                "UPDATE posts SET title = $2, rank = $3 WHERE post_id = $1", event.post_id, event.title, event.rank
            )
        case IncumbentAppointed() | CadreAppointed():
            await _tenure(conn, recorded)
        case IncumbentLeft():
            await conn.execute(
                "UPDATE tenures SET left_on = $2, left_reason = $3 WHERE post_id = $1 AND left_on IS NULL",
                event.post_id, event.left_on, event.reason.value,
            )  # fmt: skip
        case SuccessorNamed() | ReadinessReviewed():
            name = event.full_name if isinstance(event, SuccessorNamed) else ""
            await conn.execute(
                "INSERT INTO successors (post_id, cadre_id, org_path, full_name, readiness, named_on, reviewed_on,"
                " active) VALUES ($1, $2, $3, $4, $5, $6, $6, true) ON CONFLICT (post_id, cadre_id) DO UPDATE SET"
                " readiness = excluded.readiness, reviewed_on = excluded.reviewed_on, active = true,"
                " full_name = CASE WHEN excluded.full_name = '' THEN successors.full_name ELSE excluded.full_name END",
                event.post_id, event.cadre_id, env.org_path, name, event.readiness.value, day,
            )  # fmt: skip
            await _history(conn, recorded, event.readiness.value, event.reason)
        case SuccessorWithdrawn():
            await conn.execute(
                "UPDATE successors SET active = false, reviewed_on = $3 WHERE post_id = $1 AND cadre_id = $2",
                event.post_id, event.cadre_id, day,
            )  # fmt: skip
            await _history(conn, recorded, None, event.reason)
        case PotentialRated():
            await conn.execute(
                "INSERT INTO potentials (event_id, cadre_id, org_path, potential, cycle, reason, rater, rated_on)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
                env.event_id, event.cadre_id, env.org_path, event.potential.value, event.cycle, event.reason,
                env.actor.user, day,
            )  # fmt: skip
        case _:
            msg = f"the selection projection does not read {env.event_type}"
            raise ValueError(msg)


async def _tenure(conn: Conn, recorded: Recorded) -> None:
    env, event = recorded.envelope, recorded.event
    assert isinstance(event, IncumbentAppointed | CadreAppointed)
    appointed = isinstance(event, CadreAppointed)
    name = event.full_name if isinstance(event, CadreAppointed) else event.holder_name
    starts = event.appointed_on if isinstance(event, CadreAppointed) else event.starts_on
    decision = event.over_quota
    await conn.execute(
        "INSERT INTO tenures (event_id, post_id, org_path, kind, holder_name, cadre_id, from_pool, starts_on, ends_by,"
        " over_quota_document, over_quota_reason, procedure_id, birth_date)"
        " SELECT $1, $2, $3, p.kind, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM posts p WHERE p.post_id = $2"
        " ON CONFLICT (event_id) DO NOTHING",
        env.event_id, event.post_id, env.org_path, name, event.cadre_id, appointed, starts, event.ends_by,
        decision.document_number if decision else None, decision.reason if decision else None,
        event.procedure_id if isinstance(event, CadreAppointed) else None,
        None if isinstance(event, CadreAppointed) else event.birth_date,
    )  # fmt: skip
    if isinstance(event, CadreAppointed):
        await conn.execute(
            "INSERT INTO appointments (event_id, post_id, cadre_id, org_code, org_path, kind, post_title, full_name,"
            " appointed_on, document_number, over_quota) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (event_id) DO NOTHING",
            env.event_id, event.post_id, event.cadre_id, event.org_code, env.org_path, event.kind.value,
            event.post_title, event.full_name, event.appointed_on, event.document_number, decision is not None,
        )  # fmt: skip
        await conn.execute(
            "UPDATE successors SET active = false WHERE post_id = $1 AND cadre_id = $2", event.post_id, event.cadre_id
        )


async def _history(conn: Conn, recorded: Recorded, readiness: str | None, reason: str) -> None:
    env = recorded.envelope
    event = recorded.event
    assert isinstance(event, SuccessorNamed | ReadinessReviewed | SuccessorWithdrawn)
    await conn.execute(
        "INSERT INTO readiness_history (event_id, post_id, cadre_id, org_path, readiness, reason, actor, recorded_on)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
        env.event_id, event.post_id, event.cadre_id, env.org_path, readiness, reason, env.actor.user,
        clock.date_of(env.occurred_at),
    )  # fmt: skip


class PerformanceView(Typed):
    """Selection's view of assessment for the 9-box: cycles, and each cadre's grade in them (ADR 0033).

    Idempotent on its own (a repeat inserts nothing, marks nothing twice) besides the
    subscriber's watermark: an evaluation delivered again changes no box.
    """

    name = "performance"
    tables = ("review_cycles", "review_grades")
    """The tables only this projection writes: it can be rebuilt (runtime.rebuild)."""

    events = (AssessmentCycleOpened, EvaluationRecorded)

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Keep cycles and grades; a correction marks the evaluation it supersedes."""
        for recorded in events:
            env, event = recorded.envelope, recorded.event
            if isinstance(event, AssessmentCycleOpened):
                await conn.execute(
                    "INSERT INTO review_cycles (cycle_id, org_code, org_path, name, starts_on, ends_on)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cycle_id) DO NOTHING",
                    event.cycle_id, event.org_code, env.org_path, event.name, event.starts_on, event.ends_on,
                )  # fmt: skip
            elif isinstance(event, EvaluationRecorded):
                await conn.execute(
                    "INSERT INTO review_grades (evaluation_id, cycle_id, cadre_id, org_path, grade)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (evaluation_id) DO NOTHING",
                    event.evaluation_id, event.cycle_id, event.cadre_id, env.org_path, event.grade.value,
                )  # fmt: skip
                if event.supersedes is not None:
                    await conn.execute(
                        "UPDATE review_grades SET superseded = true WHERE evaluation_id = $1", event.supersedes
                    )
