"""The registry's query tables, kept in the same transaction as its own events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    MentorAssigned,
    OrgUnitRegistered,
    ResponsibleLeaderDesignated,
)
from runtime.db import Conn
from runtime.projection import Recorded

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS org_units (
        code              text PRIMARY KEY,
        name              text NOT NULL,
        level             text NOT NULL,
        parent_code       text REFERENCES org_units (code),
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
)


class RegistryProjection:
    """Org units and cadres as of the last committed event.

    A batch is applied one event type at a time, one statement per type (rows in
    their original order). That equals applying the events one by one because
    each type writes its own columns, and `version`/`updated_at` only move forward.
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
        for event_type, statement in _STATEMENTS.items():
            if rows[event_type]:
                await conn.executemany(statement, rows[event_type])


_STATEMENTS: Final = {
    OrgUnitRegistered.event_type: (
        "INSERT INTO org_units (code, name, level, parent_code, path, target_pool_size, registered_at, version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    ResponsibleLeaderDesignated.event_type: (
        "UPDATE org_units SET leader_user_id = $2, leader_name = $3, leader_email = $4, leader_language = $5,"
        " version = greatest(version, $6) WHERE code = $1"
    ),
    CadreNominated.event_type: (
        "INSERT INTO cadres (cadre_id, org_code, org_path, full_name, gender, birth_date, birth_date_precision,"
        " education, current_position, years_of_service, grassroots_months, user_id, email, language, reason,"
        " status, nominated_at, version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " $13, $14, $15, 'in_pool', $16, $17, $18)"
    ),
    CadreProfileUpdated.event_type: (
        "UPDATE cadres SET full_name = coalesce($2, full_name), current_position = coalesce($3, current_position),"
        " education = coalesce($4, education), years_of_service = coalesce($5, years_of_service),"
        " grassroots_months = coalesce($6, grassroots_months), user_id = coalesce($7, user_id),"
        " email = coalesce($8, email), language = coalesce($9, language),"
        " version = greatest(version, $10), updated_at = greatest(updated_at, $11) WHERE cadre_id = $1"
    ),
    MentorAssigned.event_type: (
        "UPDATE cadres SET mentor_user_id = $2, mentor_name = $3, mentor_email = $4,"
        " version = greatest(version, $5), updated_at = greatest(updated_at, $6) WHERE cadre_id = $1"
    ),
    CadreRetired.event_type: (
        "UPDATE cadres SET status = 'retired', retired_reason = $2, retired_on = $3, appointed_to = $4,"
        " version = greatest(version, $5), updated_at = greatest(updated_at, $6) WHERE cadre_id = $1"
    ),
}


def _row(recorded: Recorded) -> tuple[Any, ...]:
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
        case _:
            msg = f"the registry projection does not read {env.event_type}"
            raise ValueError(msg)
