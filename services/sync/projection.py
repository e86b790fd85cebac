"""The sync service's own tables: directives (issued here or received) and the deployments linked below.

Folded from the service's own events (inline) and, through `sync.received`, from the sync
events of the deployments it is linked with: a directive issued above appears here as
`issued` and, at the deployment it targets, is applied or refused once; the outcome comes
back up the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from contracts.sync import DeploymentLinked, DirectiveApplied, DirectiveIssued, DirectiveRefused
from runtime.db import Conn, in_scope_or_above, row_security, system_only
from runtime.projection import Recorded, Typed

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS directives (
        directive_id   uuid PRIMARY KEY,
        issued_by      text NOT NULL,
        target         text NOT NULL,
        cadre_id       uuid NOT NULL,
        kind           text NOT NULL,
        body           jsonb NOT NULL,
        note           text NOT NULL,
        actor_user     text NOT NULL,
        actor_path     text NOT NULL,
        correlation_id uuid NOT NULL,
        issued_at      timestamptz NOT NULL,
        status         text NOT NULL CHECK (status IN ('issued', 'applied', 'refused')),
        outcome        jsonb,
        decided_at     timestamptz
    )
    """,
    "CREATE INDEX IF NOT EXISTS directives_open ON directives (target, issued_at) WHERE status = 'issued'",
    """
    CREATE TABLE IF NOT EXISTS links (
        deployment  text PRIMARY KEY,
        root        text NOT NULL,
        public_key  text NOT NULL,
        parent      text NOT NULL,
        linked_at   timestamptz NOT NULL
    )
    """,
    # Who reads what (row-level security, runtime.db): directives issued in an actor's subtree or above it (those
    # from above concern this deployment's cadres); the links are the service's own machinery.
    *row_security("directives", in_scope_or_above("actor_path")),
    *system_only("links"),
)


class SyncProjection(Typed):
    """Directives and links, from this deployment's sync events and those it received."""

    name = "sync"

    events = (DirectiveIssued, DirectiveApplied, DirectiveRefused, DeploymentLinked)
    """Directives, their outcomes, and links."""

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Fold in order (an outcome always comes after its directive in the chain that carries both)."""
        for recorded in events:
            env, event = recorded.envelope, recorded.event
            if isinstance(event, DirectiveIssued):
                await conn.execute(
                    "INSERT INTO directives (directive_id, issued_by, target, cadre_id, kind, body, note, actor_user,"
                    " actor_path, correlation_id, issued_at, status)"
                    " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, 'issued')"
                    " ON CONFLICT (directive_id) DO NOTHING",
                    event.directive_id,
                    env.deployment,
                    event.target_deployment,
                    event.cadre_id,
                    event.kind.value,
                    orjson.dumps(event.body).decode(),
                    event.note,
                    env.actor.user,
                    env.actor.org_path,
                    env.correlation_id,
                    env.recorded_at,
                )
            elif isinstance(event, DirectiveApplied | DirectiveRefused):
                status = "applied" if isinstance(event, DirectiveApplied) else "refused"
                await conn.execute(
                    "UPDATE directives SET status = $2, outcome = $3::jsonb, decided_at = $4"
                    " WHERE directive_id = $1 AND status = 'issued'",
                    event.directive_id,
                    status,
                    orjson.dumps(event.model_dump(mode="json")).decode(),
                    env.recorded_at,
                )
            elif isinstance(event, DeploymentLinked):
                await conn.execute(
                    "INSERT INTO links (deployment, root, public_key, parent, linked_at) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (deployment) DO UPDATE SET root = EXCLUDED.root, public_key = EXCLUDED.public_key,"
                    " parent = EXCLUDED.parent, linked_at = EXCLUDED.linked_at",
                    event.deployment,
                    event.root,
                    event.public_key,
                    event.parent,
                    env.recorded_at,
                )
