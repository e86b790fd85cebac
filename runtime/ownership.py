"""Who writes a stream (multi-level sync, ADR 0010): the deployment whose subtree holds it, unless handed over.

A `StreamHandedOver` names a stream's new writer explicitly; the store records that in
`stream_owners` in the append's own transaction, and refuses an append to a stream another
deployment writes. What other deployments recorded of a stream handed over here is kept in
`received_events` (runtime.received), and the stream goes on from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from contracts.envelope import Envelope
from contracts.event import Event
from contracts.sync import StreamHandedOver
from runtime.db import Conn, system_only
from runtime.topology import Topology

SCHEMA: Final = (
    # Streams whose owner was named explicitly (StreamHandedOver, ADR 0010); others are owned by the tree.
    """
    CREATE TABLE IF NOT EXISTS stream_owners (
        stream_id   text PRIMARY KEY,
        owner       text NOT NULL,
        version     int NOT NULL,
        changed_at  timestamptz NOT NULL
    )
    """,
    # This service's kind of events recorded by other deployments, as received and verified (ADR 0010):
    # the history of streams handed over to this deployment continues from them.
    """
    CREATE TABLE IF NOT EXISTS received_events (
        deployment      text NOT NULL,
        source          text NOT NULL,
        position        bigint NOT NULL,
        event_id        uuid NOT NULL UNIQUE,
        stream_id       text NOT NULL,
        stream_version  int NOT NULL,
        cadre_id        uuid,
        body            text NOT NULL,
        PRIMARY KEY (deployment, source, position)
    )
    """,
    "CREATE INDEX IF NOT EXISTS received_events_stream ON received_events (stream_id, stream_version)",
    *system_only("stream_owners", "received_events"),
)


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream's current version here, and the deployment named its writer (None: the tree decides)."""

    version: int
    owner: str | None


async def streams(conn: Conn, stream_ids: set[str]) -> dict[str, StreamState]:
    """Each stream's current version here and its explicitly named owner, if any."""
    rows = await conn.fetch(
        "SELECT s.stream_id, (SELECT max(stream_version) FROM events e WHERE e.stream_id = s.stream_id) AS version,"
        " o.owner, o.version AS owned_from FROM unnest($1::text[]) AS s(stream_id)"
        " LEFT JOIN stream_owners o USING (stream_id)",
        list(stream_ids),
    )
    return {
        row["stream_id"]: StreamState(
            # A stream handed over to this deployment goes on from the version it was handed over at.
            version=max(row["version"] or 0, row["owned_from"] or 0),
            owner=row["owner"],
        )
        for row in rows
    }


def other_writer(state: StreamState | None, deployment: str, topology: Topology, org_path: str) -> str | None:
    """The deployment that writes a stream at `org_path` when it is not `deployment` (None: this one)."""
    if state is not None and state.owner is not None:
        return None if state.owner == deployment else state.owner
    return topology.owner_of(org_path)


async def record_handovers(
    conn: Conn, appended: Sequence[tuple[Sequence[Envelope], Sequence[Event]]], now: datetime
) -> None:
    """A `StreamHandedOver` among the appended events names the stream's new writer (in the same transaction)."""
    rows = [
        (envelope.stream_id, event.to_deployment, envelope.stream_version, now)
        for envelopes, events in appended
        for envelope, event in zip(envelopes, events, strict=True)
        if isinstance(event, StreamHandedOver)
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO stream_owners (stream_id, owner, version, changed_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner, version = EXCLUDED.version,"
            " changed_at = EXCLUDED.changed_at",
            rows,
        )
