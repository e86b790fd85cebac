"""The registry's query tables, kept in the same transaction as its own events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from contracts.envelope import canonical_json
from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    MentorAssigned,
    OrgUnitRegistered,
    PersonalDataErased,
    PersonalDataKeyGranted,
    PersonalDataRecorded,
    ResponsibleLeaderDesignated,
)
from runtime.db import Conn, in_scope, row_security
from runtime.projection import Recorded

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
    "CREATE INDEX IF NOT EXISTS cadres_erased ON cadres (cadre_id) WHERE personal_erased_at IS NOT NULL",
    # Who reads what (row-level security, runtime.db): an actor its subtree.
    *row_security("org_units", in_scope("path")),
    *row_security("cadres", in_scope("org_path")),
    *row_security("cadre_counts", in_scope("org_path")),
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


def _fold_last(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per key (first column): the latest."""
    return list({row[0]: row for row in rows}.values())


def _fold_changes(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per key: later non-null values over earlier ones (version and time are last)."""
    folded: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        before = folded.get(row[0])
        if before is None:
            folded[row[0]] = row
        else:
            middle = tuple(new if new is not None else old for old, new in zip(before[1:-2], row[1:-2], strict=True))
            folded[row[0]] = (row[0], *middle, row[-2], row[-1])
    return list(folded.values())


Fold = Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]]

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
            " status, nominated_at, version, updated_at)"
            " SELECT n.cadre_id, n.org_code, n.org_path, n.full_name, n.gender, n.birth_date, n.precision,"
            " n.education, n.position, n.years, n.grassroots, n.user_id, n.email, n.language, n.reason,"
            " 'in_pool', n.nominated_at, n.version, n.updated_at"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], $7::text[],"
            " $8::text[], $9::text[], $10::int[], $11::int[], $12::text[], $13::text[], $14::text[], $15::text[],"
            " $16::timestamptz[], $17::int[], $18::timestamptz[])"
            " AS n(cadre_id, org_code, org_path, full_name, gender, birth_date, precision, education, position,"
            " years, grassroots, user_id, email, language, reason, nominated_at, version, updated_at)"
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
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[],"
            " $8::text[], $9::text[], $10::int[], $11::timestamptz[])"
            " AS u(cadre_id, full_name, position, education, years, grassroots, user_id, email, language, version,"
            " updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_changes,
    ),
    MentorAssigned.event_type: (
        (
            "UPDATE cadres c SET mentor_user_id = u.user_id, mentor_name = u.name, mentor_email = u.email,"
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[])"
            " AS u(cadre_id, user_id, name, email, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_last,
    ),
    CadreRetired.event_type: (
        (
            "UPDATE cadres c SET status = 'retired', retired_reason = u.reason, retired_on = u.retired_on,"
            " appointed_to = u.appointed_to, version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::date[], $4::text[], $5::int[], $6::timestamptz[])"
            " AS u(cadre_id, reason, retired_on, appointed_to, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_last,
    ),
    PersonalDataRecorded.event_type: (
        (
            "UPDATE cadres c SET personal_sealed = u.sealed, version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[])"
            " AS u(cadre_id, sealed, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_last,
    ),
    PersonalDataKeyGranted.event_type: (
        (
            "UPDATE cadres c SET version = greatest(c.version, u.version),"
            " updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::int[], $3::timestamptz[])"
            " AS u(cadre_id, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_last,
    ),
    PersonalDataErased.event_type: (
        (
            "UPDATE cadres c SET personal_sealed = NULL, personal_erased_at = u.erased_at,"
            " version = greatest(c.version, u.version), updated_at = greatest(c.updated_at, u.updated_at)"
            " FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::timestamptz[])"
            " AS u(cadre_id, erased_at, version, updated_at) WHERE c.cadre_id = u.cadre_id"
        ),
        _fold_last,
    ),
}


def _row(recorded: Recorded) -> tuple[Any, ...]:  # noqa: PLR0911 - a case per event type
    """The statement arguments of one event."""
    env, event = recorded.envelope, recorded.event
    match event:
        case OrgUnitRegistered():
            return (
                event.code,
                event.name,
                event.level.value,
                event.parent_code,
                event.path,
                event.target_pool_size,
                env.occurred_at,
                env.stream_version,
            )
        case ResponsibleLeaderDesignated():
            leader = event.leader
            return (
                event.org_code,
                leader.user_id,
                leader.name,
                leader.email,
                leader.language.value,
                env.stream_version,
            )
        case CadreNominated():
            return (
                event.cadre_id,
                event.org_code,
                env.org_path,
                event.full_name,
                event.gender.value,
                event.birth_date,
                event.birth_date_precision,
                event.education.value,
                event.current_position,
                event.years_of_service,
                event.grassroots_months,
                event.user_id,
                event.email,
                event.language.value,
                event.reason,
                env.occurred_at,
                env.stream_version,
                env.recorded_at,
            )
        case CadreProfileUpdated():
            changes = event.changes
            return (
                event.cadre_id,
                changes.full_name,
                changes.current_position,
                changes.education.value if changes.education else None,
                changes.years_of_service,
                changes.grassroots_months,
                changes.user_id,
                changes.email,
                changes.language.value if changes.language else None,
                env.stream_version,
                env.recorded_at,
            )
        case MentorAssigned():
            mentor = event.mentor
            return (event.cadre_id, mentor.user_id, mentor.name, mentor.email, env.stream_version, env.recorded_at)
        case CadreRetired():
            return (
                event.cadre_id,
                event.reason.value,
                event.effective_on,
                event.appointed_to,
                env.stream_version,
                env.recorded_at,
            )
        case PersonalDataRecorded():
            sealed = canonical_json(event.sealed.model_dump(mode="json")).decode()
            return (event.cadre_id, sealed, env.stream_version, env.recorded_at)
        case PersonalDataKeyGranted():
            return (event.cadre_id, env.stream_version, env.recorded_at)
        case PersonalDataErased():
            return (event.cadre_id, env.recorded_at, env.stream_version, env.recorded_at)
        case _:
            msg = f"the registry projection does not read {env.event_type}"
            raise ValueError(msg)
