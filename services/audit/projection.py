"""The audit service's archive: every event of every other service, exactly as it was published.

`Archive` reads the registry's, training's, assessment's and notify's topics and keeps each
envelope whole (its canonical JSON, hash included), so that timelines, the pool at any past
moment and signed exports are computed from the events themselves, never from any
service's current rows. `AuditLog` folds the audit service's own `AuditQueryMade` events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from contracts.audit import AuditQueryMade
from contracts.envelope import canonical_json
from runtime import registry_view
from runtime.db import Conn, in_scope, row_security
from runtime.projection import Recorded, Typed
from runtime.registry_view import RegistryView

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS archive (
        event_id        uuid PRIMARY KEY,
        source          text NOT NULL,
        deployment      text NOT NULL,
        position        bigint NOT NULL,
        stream_id       text NOT NULL,
        stream_version  int NOT NULL,
        event_type      text NOT NULL,
        cadre_id        uuid,
        org_path        text COLLATE "C" NOT NULL,
        occurred_at     timestamptz NOT NULL,
        recorded_at     timestamptz NOT NULL,
        actor_user      text NOT NULL,
        actor_role      text NOT NULL,
        body            text NOT NULL,
        hash            text NOT NULL,
        UNIQUE (source, deployment, position)
    )
    """,
    "CREATE INDEX IF NOT EXISTS archive_cadre ON archive (cadre_id, recorded_at, source, position)",
    "CREATE INDEX IF NOT EXISTS archive_subtree ON archive (org_path, recorded_at)",
    "CREATE INDEX IF NOT EXISTS archive_time ON archive (recorded_at, source, position)",
    *registry_view.UNITS_SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS audit_queries (
        event_id     uuid PRIMARY KEY,
        actor_user   text NOT NULL,
        actor_role   text NOT NULL,
        org_path     text COLLATE "C" NOT NULL,
        query        text NOT NULL,
        parameters   text NOT NULL,
        results      int NOT NULL,
        recorded_at  timestamptz NOT NULL
    )
    """,
    # Who reads what (row-level security, runtime.db): an actor its subtree.
    *row_security("archive", in_scope("org_path")),
    *row_security("audit_queries", in_scope("org_path")),
)


_UNITS: Final = RegistryView(cadres=False)
"""The org units (their levels), from the runtime's view of the registry."""


class Archive:
    """Keeps every envelope of the services it reads, whole and in canonical JSON."""

    name = "archive"
    tables = ("archive", "units")
    """The tables only this projection writes: it can be rebuilt (runtime.rebuild)."""

    def handles(self, event_type: str) -> bool:
        """Everything."""
        del event_type
        return True

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """One row per event (a repeat changes nothing); units also name the org levels."""
        rows = []
        for recorded in events:
            env = recorded.envelope
            fields = env.model_dump(mode="json")
            rows.append(
                (env.event_id, env.source, env.deployment, env.position, env.stream_id, env.stream_version,
                 env.event_type, env.cadre_id, env.org_path, env.occurred_at, env.recorded_at, env.actor.user,
                 env.actor.role.value, canonical_json(fields).decode(), env.hash)
            )  # fmt: skip
        await conn.executemany(
            "INSERT INTO archive (event_id, source, deployment, position, stream_id, stream_version, event_type,"
            " cadre_id, org_path, occurred_at, recorded_at, actor_user, actor_role, body, hash)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING",
            rows,
        )
        await _UNITS.apply(conn, events)


class AuditLog(Typed):
    """The audit service's own events: the questions asked of it."""

    name = "audit-log"

    events = (AuditQueryMade,)
    """The questions (checkpoints are in the event table already)."""

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """One row per query."""
        rows = []
        for recorded in events:
            env, event = recorded.envelope, recorded.event
            assert isinstance(event, AuditQueryMade)
            rows.append(
                (env.event_id, env.actor.user, env.actor.role.value, env.org_path, event.query,
                 canonical_json(event.parameters).decode(), event.results, env.recorded_at)
            )  # fmt: skip
        await conn.executemany(
            "INSERT INTO audit_queries (event_id, actor_user, actor_role, org_path, query, parameters, results,"
            " recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            rows,
        )
