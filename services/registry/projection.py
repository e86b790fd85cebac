"""The registry's query tables, kept in the same transaction as its own events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from contracts.assessment import AssessmentCycleOpened, EvaluationRecorded
from contracts.envelope import canonical_json
from contracts.registry import (
    CATEGORY_FIELDS,
    Basis,
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Language,
    MentorAssigned,
    OrgUnitRegistered,
    PersonalDataErased,
    PersonalDataKeyGranted,
    PersonalDataRecorded,
    ResponsibleLeaderDesignated,
)
from contracts.training import PostingAssigned, PostingCompleted
from runtime import summaries
from runtime.db import Conn, in_scope, row_security
from runtime.projection import Fold, Recorded, Typed, fold_changes, fold_last

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS org_units (
        code              text PRIMARY KEY,
        name              text NOT NULL,
        level             text NOT NULL,
        parent_code       text,
        path              text COLLATE "C" NOT NULL UNIQUE,
        target_pool_size  int NOT NULL,
        leader_user_id    text,
        leader_name       text,
        leader_email      text,
        leader_language   text,
        registered_at     timestamptz NOT NULL,
        version           int NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS cadres (
        cadre_id              uuid PRIMARY KEY,
        org_code              text NOT NULL REFERENCES org_units (code),
        org_path              text COLLATE "C" NOT NULL,
        full_name             text NOT NULL,
        gender                text NOT NULL,
        birth_date            date NOT NULL,
        birth_date_precision  text NOT NULL,
        education             text NOT NULL,
        current_position      text NOT NULL,
        years_of_service      int NOT NULL,
        grassroots_months     int NOT NULL,
        user_id               text,
        email                 text,
        language              text NOT NULL,
        reason                text NOT NULL,
        status                text NOT NULL,
        nominated_at          timestamptz NOT NULL,
        mentor_user_id        text,
        mentor_name           text,
        mentor_email          text,
        retired_reason        text,
        retired_on            date,
        appointed_to          text,
        version               int NOT NULL,
        updated_at            timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS cadres_subtree ON cadres (org_path, cadre_id)",
    """
    CREATE TABLE IF NOT EXISTS cadre_counts (
        org_path  text COLLATE "C" PRIMARY KEY,
        in_pool   int NOT NULL,
        retired   int NOT NULL
    )
    """,
    # A deployment's root unit names a parent that lives in the deployment above (ADR 0010): the tree's
    # shape is kept by the commands' rules, not by a key to a row that may be elsewhere.
    "ALTER TABLE org_units DROP CONSTRAINT IF EXISTS org_units_parent_code_fkey",
    # Personal data: the latest sealed file only (ciphertext); opened on read with the cadre's key.
    "ALTER TABLE cadres ADD COLUMN IF NOT EXISTS personal_sealed text",
    "ALTER TABLE cadres ADD COLUMN IF NOT EXISTS personal_erased_at timestamptz",
    # What a nomination stands on (contracts.registry.Basis), and the procedure that admitted the cadre.
    "ALTER TABLE cadres ADD COLUMN IF NOT EXISTS basis text NOT NULL DEFAULT 'without_procedure'",
    "ALTER TABLE cadres ADD COLUMN IF NOT EXISTS procedure_id uuid",
    "CREATE INDEX IF NOT EXISTS cadres_erased ON cadres (cadre_id) WHERE personal_erased_at IS NOT NULL",
    # What the appointment form shows from other services: annual grades (assessment), postings (training).
    """
    CREATE TABLE IF NOT EXISTS form_cycles (
        cycle_id  uuid PRIMARY KEY,
        period    text NOT NULL,
        ends_on   date NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS form_grades (
        evaluation_id  uuid PRIMARY KEY,
        cadre_id       uuid NOT NULL,
        cycle_id       uuid NOT NULL,
        grade          text NOT NULL,
        superseded     boolean NOT NULL DEFAULT false
    )
    """,
    "CREATE INDEX IF NOT EXISTS form_grades_cadre ON form_grades (cadre_id)",
    """
    CREATE TABLE IF NOT EXISTS form_postings (
        posting_id  uuid PRIMARY KEY,
        cadre_id    uuid NOT NULL,
        kind        text NOT NULL,
        host_unit   text NOT NULL,
        position    text NOT NULL,
        starts_on   date NOT NULL,
        ended_on    date
    )
    """,
    "CREATE INDEX IF NOT EXISTS form_postings_cadre ON form_postings (cadre_id)",
    # Most events update a cadre's row in place: room on its page lets PostgreSQL keep the new version
    # there without touching the indexes (a HOT update: about a third less of the database's work per
    # event in bench/). Pages written from now on keep it.
    "ALTER TABLE cadres SET (fillfactor = 60)",
    # The categories the structure statistics count (contracts.registry.Categories; null: not recorded).
    *(
        f"ALTER TABLE cadres ADD COLUMN IF NOT EXISTS {column} {kind}"
        for column, kind in (
            ("ethnicity", "text"),
            ("party", "text"),
            ("party_joined_year", "int"),
            ("full_time_education", "text"),
            ("in_service_education", "text"),
            ("rank", "text"),
            ("reserve_kind", "text"),
        )
    ),
    # Who reads what (row-level security, runtime.db): an actor its subtree.
    *row_security("org_units", in_scope("path")),
    *row_security("cadres", in_scope("org_path")),
    *row_security("cadre_counts", in_scope("org_path")),
    # Today's pool counted per unit for the statistics, counted again for the units whose cadres changed.
    *summaries.SCHEMA,
    *summaries.watched("cadres"),
    # What the appointment form shows from other services: a cadre's rows for those who read the cadre.
    *row_security("form_cycles", "(true)"),
    *row_security("form_grades", "(cadre_id IN (SELECT cadre_id FROM cadres))"),
    *row_security("form_postings", "(cadre_id IN (SELECT cadre_id FROM cadres))"),
)
"""`cadre_counts` keeps each unit's cadres by status, so a province's counts sum a few hundred rows
instead of counting a million (the pool screen's status tabs)."""


class RegistryProjection:
    """Org units and cadres as of the last committed event.

    A batch is applied one event type at a time, one set-based statement per type.
    That equals applying the events one by one: each type writes its own columns,
    `version` and `updated_at` only move forward, and several events of one type for
    the same cadre are first folded into one row, in their order.
    """

    name = "registry"

    def handles(self, event_type: str) -> bool:
        """Every registry event."""
        return event_type in _STATEMENTS

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events: units before their cadres, each type in one round trip."""
        rows: dict[str, list[tuple[Any, ...]]] = {event_type: [] for event_type in _STATEMENTS}
        for recorded in events:
            rows[recorded.envelope.event_type].append(_row(recorded))
        for event_type, (statement, fold) in _STATEMENTS.items():
            batch = rows[event_type]
            if not batch:
                continue
            if fold is None:
                await conn.executemany(statement, batch)
            else:
                await conn.execute(statement, *zip(*fold(batch), strict=True))
        await _count(conn, events)


async def _count(conn: Conn, events: Sequence[Recorded]) -> None:
    """Move each unit's counts by the batch's nominations and retirements, in one statement."""
    deltas: dict[str, list[int]] = {}
    for recorded in events:
        kind = recorded.envelope.event_type
        if kind == CadreNominated.event_type:
            deltas.setdefault(recorded.envelope.org_path, [0, 0])[0] += 1
        elif kind == CadreRetired.event_type:
            delta = deltas.setdefault(recorded.envelope.org_path, [0, 0])
            delta[0] -= 1
            delta[1] += 1
    if deltas:
        paths = list(deltas)
        await conn.execute(
            "INSERT INTO cadre_counts AS c (org_path, in_pool, retired)"
            " SELECT * FROM unnest($1::text[], $2::int[], $3::int[])"
            " ON CONFLICT (org_path) DO UPDATE SET in_pool = c.in_pool + excluded.in_pool,"
            " retired = c.retired + excluded.retired",
            paths,
            [deltas[p][0] for p in paths],
            [deltas[p][1] for p in paths],
        )


_STATEMENTS: Final[dict[str, tuple[str, Fold | None]]] = {
    OrgUnitRegistered.event_type: (
        (
            "INSERT INTO org_units (code, name, level, parent_code, path, target_pool_size, registered_at, version)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        None,  # parents before children: row by row, in order
    ),
    ResponsibleLeaderDesignated.event_type: (
        (
            "UPDATE org_units SET leader_user_id = $2, leader_name = $3, leader_email = $4, leader_language = $5,"
            " version = greatest(version, $6) WHERE code = $1"
        ),
        None,
    ),
    CadreNominated.event_type: (
        (
            "INSERT INTO cadres (cadre_id, org_code, org_path, full_name, gender, birth_date, birth_date_precision,"
            " education, current_position, years_of_service, grassroots_months, user_id, email, language, reason,"
            " status, nominated_at, version, updated_at, basis, procedure_id, ethnicity, party, party_joined_year,"
            " full_time_education, in_service_education, rank, reserve_kind)"
            " SELECT n.cadre_id, n.org_code, n.org_path, n.full_name, n.gender, n.birth_date::date, n.precision,"
            " n.education, n.position, n.years, n.grassroots, n.user_id, n.email, n.language, n.reason,"
            " 'in_pool', n.nominated_at, n.version, n.updated_at, n.basis, n.procedure_id, n.ethnicity, n.party,"
            " n.party_joined_year, n.full_time_education, n.in_service_education, n.rank, n.reserve_kind"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
            " $8::text[], $9::text[], $10::int[], $11::int[], $12::text[], $13::text[], $14::text[], $15::text[],"
            " $16::timestamptz[], $17::int[], $18::timestamptz[], $19::text[], $20::uuid[], $21::text[],"
            " $22::text[], $23::int[], $24::text[], $25::text[], $26::text[], $27::text[])"
            " AS n(cadre_id, org_code, org_path, full_name, gender, birth_date, precision, education, position,"
            " years, grassroots, user_id, email, language, reason, nominated_at, version, updated_at, basis,"
            " procedure_id, ethnicity, party, party_joined_year, full_time_education, in_service_education, rank,"
            " reserve_kind)"
        ),
        list,  # one nomination per cadre: nothing to fold
    ),
    CadreProfileUpdated.event_type: (
        (
            "UPDATE cadres c SET full_name = coalesce(u.full_name, c.full_name),"
            " current_position = coalesce(u.position, c.current_position),"
            " education = coalesce(u.education, c.education), years_of_service = coalesce(u.years, c.years_of_service),"
            " grassroots_months = coalesce(u.grassroots, c.grassroots_months),"
            " user_id = coalesce(u.user_id, c.user_id),"
            " email = coalesce(u.email, c.email), language = coalesce(u.language, c.language),"
            " ethnicity = coalesce(u.ethnicity, c.ethnicity), party = coalesce(u.party, c.party),"
            " party_joined_year = coalesce(u.party_joined_year, c.party_joined_year),"
            " full_time_education = coalesce(u.full_time_education, c.full_time_education),"
            " in_service_education = coalesce(u.in_service_education, c.in_service_education),"
            " rank = coalesce(u.rank, c.rank), reserve_kind = coalesce(u.reserve_kind, c.reserve_kind),"
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[],"
            " $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::text[], $15::text[],"
            " $16::text[], $17::int[], $18::timestamptz[])"
            " AS u(cadre_id, full_name, position, education, years, grassroots, user_id, email, language, ethnicity,"
            " party, party_joined_year, full_time_education, in_service_education, rank, reserve_kind, version,"
            " updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_changes(tail=2),
    ),
    MentorAssigned.event_type: (
        (
            "UPDATE cadres c SET mentor_user_id = u.user_id, mentor_name = u.name, mentor_email = u.email,"
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[])"
            " AS u(cadre_id, user_id, name, email, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_last,
    ),
    CadreRetired.event_type: (
        (
            "UPDATE cadres c SET status = 'retired', retired_reason = u.reason, retired_on = u.retired_on::date,"
            " appointed_to = u.appointed_to, version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[])"
            " AS u(cadre_id, reason, retired_on, appointed_to, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_last,
    ),
    PersonalDataRecorded.event_type: (
        (
            "UPDATE cadres c SET personal_sealed = u.sealed, version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[])"
            " AS u(cadre_id, sealed, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_last,
    ),
    PersonalDataKeyGranted.event_type: (
        (
            "UPDATE cadres c SET version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::int[], $3::timestamptz[])"
            " AS u(cadre_id, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_last,
    ),
    PersonalDataErased.event_type: (
        (
            "UPDATE cadres c SET personal_sealed = NULL, personal_erased_at = u.erased_at,"
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::timestamptz[])"
            " AS u(cadre_id, erased_at, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        fold_last,
    ),
}


def _row(recorded: Recorded) -> tuple[Any, ...]:  # noqa: PLR0911 - a case per event type
    """The statement arguments of one event, read from its plain payload (ids, dates and enums as text)."""
    env, event = recorded.envelope, recorded.payload
    match env.event_type:
        case OrgUnitRegistered.event_type:
            return (
                event["code"],
                event["name"],
                event["level"],
                event["parent_code"],
                event["path"],
                event.get("target_pool_size", 0),
                env.occurred_at,
                env.stream_version,
            )
        case ResponsibleLeaderDesignated.event_type:
            leader = event["leader"]
            return (
                event["org_code"],
                leader["user_id"],
                leader["name"],
                leader.get("email"),
                leader.get("language", Language.ZH.value),
                env.stream_version,
            )
        case CadreNominated.event_type:
            return (
                event["cadre_id"],
                event["org_code"],
                env.org_path,
                event["full_name"],
                event["gender"],
                event["birth_date"],
                event.get("birth_date_precision", "day"),
                event["education"],
                event["current_position"],
                event["years_of_service"],
                event["grassroots_months"],
                event.get("user_id"),
                event.get("email"),
                event.get("language", Language.ZH.value),
                event["reason"],
                env.occurred_at,
                env.stream_version,
                env.recorded_at,
                Basis.of(event.get("procedure_id"), imported=event.get("imported", False)).value,
                event.get("procedure_id"),
                *(event.get(field) for field in CATEGORY_FIELDS),
            )
        case CadreProfileUpdated.event_type:
            changes = event["changes"]
            return (
                event["cadre_id"],
                changes.get("full_name"),
                changes.get("current_position"),
                changes.get("education"),
                changes.get("years_of_service"),
                changes.get("grassroots_months"),
                changes.get("user_id"),
                changes.get("email"),
                changes.get("language"),
                *(changes.get(field) for field in CATEGORY_FIELDS),
                env.stream_version,
                env.recorded_at,
            )
        case MentorAssigned.event_type:
            mentor = event["mentor"]
            return (
                event["cadre_id"],
                mentor["user_id"],
                mentor["name"],
                mentor.get("email"),
                env.stream_version,
                env.recorded_at,
            )
        case CadreRetired.event_type:
            return (
                event["cadre_id"],
                event["reason"],
                event["effective_on"],
                event.get("appointed_to"),
                env.stream_version,
                env.recorded_at,
            )
        case PersonalDataRecorded.event_type:
            return (event["cadre_id"], canonical_json(event["sealed"]).decode(), env.stream_version, env.recorded_at)
        case PersonalDataKeyGranted.event_type:
            return (event["cadre_id"], env.stream_version, env.recorded_at)
        case PersonalDataErased.event_type:
            return (event["cadre_id"], env.recorded_at, env.stream_version, env.recorded_at)
        case _:
            msg = f"the registry projection does not read {env.event_type}"
            raise ValueError(msg)


class GradesView(Typed):
    """The registry's view of assessment for the appointment form: cycles and each cadre's grades."""

    name = "form-grades"
    tables = ("form_cycles", "form_grades")
    """The tables only this projection writes: it can be rebuilt (runtime.rebuild)."""

    events = (AssessmentCycleOpened, EvaluationRecorded)

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Keep cycles and grades; a correction marks the evaluation it supersedes."""
        for recorded in events:
            event = recorded.event
            if isinstance(event, AssessmentCycleOpened):
                await conn.execute(
                    "INSERT INTO form_cycles (cycle_id, period, ends_on) VALUES ($1, $2, $3)"
                    " ON CONFLICT (cycle_id) DO NOTHING",
                    event.cycle_id,
                    event.period.value,
                    event.ends_on,
                )
            elif isinstance(event, EvaluationRecorded):
                await conn.execute(
                    "INSERT INTO form_grades (evaluation_id, cadre_id, cycle_id, grade) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (evaluation_id) DO NOTHING",
                    event.evaluation_id,
                    event.cadre_id,
                    event.cycle_id,
                    event.grade.value,
                )
                if event.supersedes is not None:
                    await conn.execute(
                        "UPDATE form_grades SET superseded = true WHERE evaluation_id = $1", event.supersedes
                    )


class PostingsView(Typed):
    """The registry's view of training for the appointment form's résumé: each cadre's postings."""

    name = "form-postings"
    tables = ("form_postings",)
    """The tables only this projection writes: it can be rebuilt (runtime.rebuild)."""

    events = (PostingAssigned, PostingCompleted)

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Keep each posting and when it ended."""
        for recorded in events:
            event = recorded.event
            if isinstance(event, PostingAssigned):
                await conn.execute(
                    "INSERT INTO form_postings (posting_id, cadre_id, kind, host_unit, position, starts_on)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (posting_id) DO NOTHING",
                    event.posting_id,
                    event.cadre_id,
                    event.kind.value,
                    event.host_unit_name,
                    event.position,
                    event.starts_on,
                )
            elif isinstance(event, PostingCompleted):
                await conn.execute(
                    "UPDATE form_postings SET ended_on = $2 WHERE posting_id = $1", event.posting_id, event.ended_on
                )
