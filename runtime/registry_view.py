"""Every service's view of the registry: its org units, and who is in the reserve pool where.

Training, assessment, notify and audit each need the organization tree, and all but audit
the cadres of the pool, in their own database (services share no tables). They keep them
with this one projection, fed from `registry.events`, instead of a near-copy each:

- `units`: code, name, level, parent, path, the pool's target size, the responsible leader;
- `pool_cadres`: who was nominated where, name, birth date, position, grass-roots months, contact,
  mentor, whether still in the pool and, if not, why and since when; the stream version
  of the last event applied.

A batch is applied one event type at a time, one set-based statement per type, reading the
events' plain payloads (no model is validated on this path: the registry's store appended
them from validated models). That equals applying the events one by one: each type writes
its own columns, `version` only moves forward, and several events of one type for the same
cadre are first folded into one row, in their order (tested against one-by-one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final
from uuid import UUID

from contracts.envelope import Actor
from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Language,
    MentorAssigned,
    OrgUnitRegistered,
    ResponsibleLeaderDesignated,
)
from runtime import clock
from runtime.auth import require_scope, require_self_or_scope
from runtime.db import Conn, Pool, Reader, in_scope, in_scope_or_above, row_security
from runtime.errors import NotFoundError, RuleViolationError
from runtime.projection import Fold, Recorded, fold_changes, fold_last

UNITS_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS units (
        code              text PRIMARY KEY,
        name              text NOT NULL,
        level             text NOT NULL,
        parent_code       text,
        path              text COLLATE "C" NOT NULL,
        target_pool_size  int NOT NULL DEFAULT 0,
        leader_user       text,
        leader_name       text,
        leader_email      text,
        leader_language   text
    )
    """,
    "CREATE INDEX IF NOT EXISTS units_path ON units (path)",
    # Row-level security (runtime.db): an actor reads the units of its subtree and those above it.
    *row_security("units", in_scope_or_above("path")),
)
"""The org units (audit keeps only these)."""

SCHEMA: Final = (
    *UNITS_SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS pool_cadres (
        cadre_id           uuid PRIMARY KEY,
        org_code           text NOT NULL,
        org_path           text COLLATE "C" NOT NULL,
        full_name          text NOT NULL,
        position           text NOT NULL,
        grassroots_months  int NOT NULL,
        user_id            text,
        email              text,
        language           text NOT NULL,
        nominated_on       date NOT NULL,
        in_pool            boolean NOT NULL,
        retired_reason     text,
        retired_on         date,
        mentor_user        text,
        mentor_name        text,
        mentor_email       text,
        mentor_language    text,
        version            int NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS pool_cadres_subtree ON pool_cadres (org_path, cadre_id)",
    # Most registry events update a cadre's row: room on its page lets PostgreSQL keep the new
    # version there without touching the indexes (HOT updates; bench/, docs/performance.md).
    "ALTER TABLE pool_cadres SET (fillfactor = 60)",
    # A cadre's birth date: the age of a leadership team's members who came from the pool (selection).
    "ALTER TABLE pool_cadres ADD COLUMN IF NOT EXISTS birth_date date",
    *row_security("pool_cadres", in_scope("org_path")),
)
"""The units and the cadres of the pool."""

_ZH: Final = Language.ZH.value


def _unit(recorded: Recorded) -> tuple[Any, ...]:
    p = recorded.payload
    return (p["code"], p["name"], p["level"], p.get("parent_code"), p["path"], p.get("target_pool_size", 0))


def _leader(recorded: Recorded) -> tuple[Any, ...]:
    p, leader = recorded.payload, recorded.payload["leader"]
    return (p["org_code"], leader["user_id"], leader["name"], leader.get("email"), leader.get("language", _ZH))


def _nominated(recorded: Recorded) -> tuple[Any, ...]:
    env, p = recorded.envelope, recorded.payload
    return (
        p["cadre_id"],
        p["org_code"],
        env.org_path,
        p["full_name"],
        p["current_position"],
        p["grassroots_months"],
        p.get("user_id"),
        p.get("email"),
        p.get("language", _ZH),
        clock.date_of(env.occurred_at),
        env.stream_version,
        p["birth_date"],
    )


def _changed(recorded: Recorded) -> tuple[Any, ...]:
    p, changes = recorded.payload, recorded.payload["changes"]
    return (
        p["cadre_id"],
        changes.get("full_name"),
        changes.get("current_position"),
        changes.get("grassroots_months"),
        changes.get("user_id"),
        changes.get("email"),
        changes.get("language"),
        recorded.envelope.stream_version,
    )


def _mentor(recorded: Recorded) -> tuple[Any, ...]:
    p, mentor = recorded.payload, recorded.payload["mentor"]
    return (
        p["cadre_id"],
        mentor["user_id"],
        mentor["name"],
        mentor.get("email"),
        mentor.get("language", _ZH),
        recorded.envelope.stream_version,
    )


def _retired(recorded: Recorded) -> tuple[Any, ...]:
    p = recorded.payload
    return (p["cadre_id"], p["reason"], p["effective_on"], recorded.envelope.stream_version)


Rows = Callable[[Recorded], tuple[Any, ...]]

_UNIT_STATEMENTS: Final[dict[str, tuple[str, Rows, Fold]]] = {
    OrgUnitRegistered.event_type: (
        (
            "INSERT INTO units (code, name, level, parent_code, path, target_pool_size)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])"
            " ON CONFLICT (code) DO NOTHING"
        ),
        _unit,
        list,
    ),
    ResponsibleLeaderDesignated.event_type: (
        (
            "UPDATE units u SET leader_user = l.user_id, leader_name = l.name, leader_email = l.email,"
            " leader_language = l.language"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
            " AS l(code, user_id, name, email, language) WHERE u.code = l.code"
        ),
        _leader,
        fold_last,
    ),
}

_CADRE_STATEMENTS: Final[dict[str, tuple[str, Rows, Fold]]] = {
    CadreNominated.event_type: (
        (
            "INSERT INTO pool_cadres (cadre_id, org_code, org_path, full_name, position, grassroots_months, user_id,"
            " email, language, nominated_on, in_pool, version, birth_date)"
            " SELECT n.cadre_id, n.org_code, n.org_path, n.full_name, n.position, n.grassroots, n.user_id, n.email,"
            " n.language, n.nominated_on, true, n.version, n.birth_date::date"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],"
            " $8::text[], $9::text[], $10::date[], $11::int[], $12::text[])"
            " AS n(cadre_id, org_code, org_path, full_name, position, grassroots, user_id, email, language,"
            " nominated_on, version, birth_date)"
            " ON CONFLICT (cadre_id) DO NOTHING"
        ),
        _nominated,
        list,
    ),
    CadreProfileUpdated.event_type: (
        (
            "UPDATE pool_cadres c SET full_name = coalesce(u.full_name, c.full_name),"
            " position = coalesce(u.position, c.position),"
            " grassroots_months = coalesce(u.grassroots, c.grassroots_months),"
            " user_id = coalesce(u.user_id, c.user_id), email = coalesce(u.email, c.email),"
            " language = coalesce(u.language, c.language), version = greatest(c.version, u.version)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::int[])"
            " AS u(cadre_id, full_name, position, grassroots, user_id, email, language, version)"
            " WHERE c.cadre_id = u.cadre_id"
        ),
        _changed,
        fold_changes(tail=1),
    ),
    MentorAssigned.event_type: (
        (
            "UPDATE pool_cadres c SET mentor_user = m.user_id, mentor_name = m.name, mentor_email = m.email,"
            " mentor_language = m.language, version = greatest(c.version, m.version)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])"
            " AS m(cadre_id, user_id, name, email, language, version) WHERE c.cadre_id = m.cadre_id"
        ),
        _mentor,
        fold_last,
    ),
    CadreRetired.event_type: (
        (
            "UPDATE pool_cadres c SET in_pool = false, retired_reason = r.reason, retired_on = r.retired_on::date,"
            " version = greatest(c.version, r.version)"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[])"
            " AS r(cadre_id, reason, retired_on, version) WHERE c.cadre_id = r.cadre_id"
        ),
        _retired,
        fold_last,
    ),
}


class RegistryView:
    """Keeps `units` and `pool_cadres` (or, with `cadres=False`, `units` alone) from the registry's events."""

    name = "pool"
    """The consumer's name where the view is a subscription of its own."""

    def __init__(self, *, cadres: bool = True) -> None:
        self._statements = {**_UNIT_STATEMENTS, **(_CADRE_STATEMENTS if cadres else {})}
        self.tables: tuple[str, ...] = ("units", "pool_cadres") if cadres else ("units",)
        """The tables only this view writes: it can be rebuilt (runtime.rebuild)."""

    def handles(self, event_type: str) -> bool:
        """The registry events that change a unit or a cadre of the pool."""
        return event_type in self._statements

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Apply the events (others are passed over): units before their cadres, each type in one round trip."""
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for recorded in events:
            event_type = recorded.envelope.event_type
            if event_type in self._statements:
                rows.setdefault(event_type, []).append(self._statements[event_type][1](recorded))
        for event_type, (statement, _, fold) in self._statements.items():
            batch = rows.get(event_type)
            if batch:
                await conn.execute(statement, *zip(*fold(batch), strict=True))


async def known_cadre(pool: Reader, actor: Actor, cadre_id: UUID, *, own: bool = False) -> Any:
    """A cadre of the actor's subtree (else 404), in the pool or not.

    With `own`, a cadre acting for themselves reaches their own record too (`require_self_or_scope`).
    """
    row = await pool.fetchrow("SELECT * FROM pool_cadres WHERE cadre_id = $1", cadre_id)
    if row is None:
        msg = f"cadre {cadre_id} not found"
        raise NotFoundError(msg)
    if own:
        require_self_or_scope(actor, cadre_id, row["org_path"], f"cadre {cadre_id}")
    else:
        require_scope(actor, row["org_path"], f"cadre {cadre_id}")
    return row


async def pool_cadre(pool: Pool, actor: Actor, cadre_id: UUID, *, left: str = "", own: bool = False) -> Any:
    """A cadre of the actor's subtree (else 404, see `known_cadre`) still in the pool (else 422, ending in `left`)."""
    row = await known_cadre(pool, actor, cadre_id, own=own)
    if not row["in_pool"]:
        msg = f"cadre {cadre_id} has left the reserve pool{left}"
        raise RuleViolationError(msg)
    return row
