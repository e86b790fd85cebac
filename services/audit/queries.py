"""What an audit reviewer may ask, each answer from the archived events, each question put on record."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from contracts.audit import AuditQueryMade, LateEntryDeclared
from contracts.envelope import GENESIS_HASH, Actor, Envelope, Role, uuid7
from runtime import bundle, clock
from runtime.auth import require_role, subtree_root
from runtime.context import CommandContext
from runtime.db import Pool, Reader, in_subtree_sql
from runtime.errors import CommandError, NotFoundError
from runtime.projection import Recorded
from runtime.store import EventStore
from services.audit import replay


class LateEntryView(BaseModel):
    """Why an event was entered beyond the backdating window, and on which permission (`LateEntryDeclared`)."""

    reason: str
    permission: str
    window_days: int
    declared_by: str


class TimelineEntry(BaseModel):
    """One event in a cadre's life, from whichever service recorded it."""

    event_id: UUID
    event_type: str
    service: str
    deployment: str
    """The deployment (level) that recorded it: this one, or one below it (multi-level sync)."""
    position: int
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    actor_role: str
    org_path: str
    org_level: str | None
    payload: dict[str, Any]
    hash: str
    entered_late: bool
    """Recorded on a later day than it happened (the organization's days)."""
    late_entry: LateEntryView | None
    """Beyond the backdating window: the declaration recorded with it."""


class EventDetail(BaseModel):
    """One archived event whole, where it sits in its service's chain, and whether its hashes hold."""

    envelope: dict[str, Any]
    hash_matches: bool
    """The hash recomputed over the event's own fields equals the hash it carries."""
    previous_position: int | None
    previous_hash: str | None
    links_to_previous: bool | None
    """`prev_hash` equals the hash of the service's event before it (None: that one is not archived here)."""
    next_position: int | None


class QueryView(BaseModel):
    """One audit question on record."""

    event_id: UUID
    actor_user: str
    actor_role: str
    org_path: str
    query: str
    parameters: dict[str, Any]
    results: int
    recorded_at: datetime


class AuditQueries:
    """Read-only questions over a subtree; every answer first records `AuditQueryMade`."""

    def __init__(self, pool: Reader, store: EventStore, signing_key: Ed25519PrivateKey, *, chain: Pool) -> None:
        self._pool = pool
        self._store = store
        self._key = signing_key
        self._chain = chain
        """The system's view, for the hashes an event's chain links to (its neighbours may lie in other subtrees)."""

    @staticmethod
    def _may_audit(actor: Actor) -> None:
        require_role(actor, Role.AUDITOR, Role.ORGANIZER)

    async def _record(self, ctx: CommandContext, query: str, parameters: dict[str, Any], results: int) -> None:
        event = AuditQueryMade(query=query, parameters=parameters, results=results, as_of=parameters.get("at"))
        await self._store.append(f"audit-query-{uuid7()}", 0, [event], ctx=ctx, org_path=ctx.actor.org_path)

    async def timeline(self, ctx: CommandContext, cadre_id: UUID) -> list[TimelineEntry]:
        """Everything that happened to a cadre, in every service, in the order it was recorded."""
        self._may_audit(ctx.actor)
        rows = await self._pool.fetch(
            "SELECT a.*, u.level FROM archive a LEFT JOIN units u ON u.path = a.org_path"
            " WHERE a.cadre_id = $1 ORDER BY a.recorded_at, a.source, a.position",
            cadre_id,
        )
        nominated = next((r for r in rows if r["event_type"] == "CadreNominated"), None)
        if nominated is None or not ctx.actor.covers(nominated["org_path"]):
            msg = "cadre not found"
            raise NotFoundError(msg)
        declared = [
            (r["source"], orjson.loads(r["body"])) for r in rows if r["event_type"] == LateEntryDeclared.event_type
        ]

        def declaration(r: Any) -> LateEntryView | None:
            for source, envelope in declared:
                p = envelope["payload"]
                same_stream = source == r["source"] and p["stream_id"] == r["stream_id"]
                if same_stream and p["first_version"] <= r["stream_version"] <= p["last_version"]:
                    return LateEntryView(
                        reason=p["reason"],
                        permission=p["permission"],
                        window_days=p["window_days"],
                        declared_by=envelope["actor"]["user"],
                    )
            return None

        entries = [
            TimelineEntry(
                event_id=r["event_id"],
                event_type=r["event_type"],
                service=r["source"],
                deployment=r["deployment"],
                position=r["position"],
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                actor=r["actor_user"],
                actor_role=r["actor_role"],
                org_path=r["org_path"],
                org_level=r["level"],
                payload=orjson.loads(r["body"])["payload"],
                hash=r["hash"],
                entered_late=clock.date_of(r["occurred_at"]) < clock.date_of(r["recorded_at"]),
                late_entry=declaration(r),
            )
            for r in rows
        ]
        await self._record(ctx, "timeline", {"cadre_id": str(cadre_id)}, len(entries))
        return entries

    async def _pool_at(self, root: str, at: datetime) -> list[replay.PoolEntry]:
        rows = await self._pool.fetch(
            f"SELECT body FROM archive WHERE {in_subtree_sql('org_path', '$1')}"  # noqa: S608 - fixed fragment
            " AND event_type = ANY($2::text[]) AND recorded_at <= $3 ORDER BY recorded_at, source, position",
            root,
            sorted(replay.RELEVANT),
            at,
        )
        events = (Recorded.from_envelope(Envelope.model_validate(orjson.loads(r["body"]))) for r in rows)
        return replay.pool_at(events, root)

    async def pool(self, ctx: CommandContext, under: str | None, at: datetime | None) -> list[replay.PoolEntry]:
        """The pool of a subtree as it stood at `at` (default: now), replayed from the events."""
        self._may_audit(ctx.actor)
        root = await subtree_root(self._pool, ctx.actor, under)
        moment = at or clock.now()
        entries = await self._pool_at(root, moment)
        await self._record(ctx, "pool", {"under": root, "at": moment.isoformat()}, len(entries))
        return entries

    async def changes(
        self, ctx: CommandContext, under: str | None, since: datetime, until: datetime
    ) -> replay.PoolDiff:
        """How the pool of a subtree changed between two moments."""
        self._may_audit(ctx.actor)
        if until < since:
            msg = "`until` lies before `since`"
            raise CommandError(msg)
        root = await subtree_root(self._pool, ctx.actor, under)
        result = replay.diff(await self._pool_at(root, since), await self._pool_at(root, until))
        parameters = {"under": root, "since": since.isoformat(), "until": until.isoformat()}
        await self._record(ctx, "pool-changes", parameters, len(result.joined) + len(result.left) + len(result.changed))
        return result

    async def queries(self, actor: Actor, limit: int) -> list[QueryView]:
        """The audit questions asked inside the actor's subtree, newest first."""
        self._may_audit(actor)
        rows = await self._pool.fetch(
            f"SELECT * FROM audit_queries WHERE {in_subtree_sql('org_path', '$1')}"  # noqa: S608 - fixed fragment
            " ORDER BY recorded_at DESC LIMIT $2",
            actor.org_path,
            limit,
        )
        return [QueryView.model_validate({**dict(r), "parameters": orjson.loads(r["parameters"])}) for r in rows]

    async def export(self, ctx: CommandContext, under: str | None, since: datetime, until: datetime) -> bytes:
        """A signed bundle (runtime.bundle: events.jsonl and a signed manifest) of a subtree's events in a period."""
        self._may_audit(ctx.actor)
        if until < since:
            msg = "`until` lies before `since`"
            raise CommandError(msg)
        root = await subtree_root(self._pool, ctx.actor, under)
        rows = await self._pool.fetch(
            f"SELECT source, position, body FROM archive WHERE {in_subtree_sql('org_path', '$1')}"  # noqa: S608
            " AND recorded_at >= $2 AND recorded_at <= $3 ORDER BY recorded_at, source, position",
            root,
            since,
            until,
        )
        events = b"".join(row["body"].encode() + b"\n" for row in rows)
        sources: dict[str, dict[str, int]] = {}
        for row in rows:
            seen = sources.setdefault(row["source"], {"count": 0, "first_position": row["position"]})
            seen["count"] += 1
            seen["last_position"] = row["position"]
        public = self._key.public_key()
        manifest = {
            "format": bundle.AUDIT_FORMAT,
            "created_at": clock.now().isoformat(),
            "created_by": ctx.actor.user,
            "subtree": root,
            "from": since.astimezone(UTC).isoformat(),
            "to": until.astimezone(UTC).isoformat(),
            "events": len(rows),
            "sources": sources,
            "public_key": base64.b64encode(bundle.public_bytes(public)).decode(),
        }
        packed = bundle.pack(manifest, {"events.jsonl": events}, self._key)
        await self._record(ctx, "export", {k: manifest[k] for k in ("subtree", "from", "to")}, len(rows))
        return packed

    async def event(self, ctx: CommandContext, event_id: UUID) -> EventDetail:
        """An event with its chain position and the check of both its hashes (its subtree only)."""
        self._may_audit(ctx.actor)
        row = await self._pool.fetchrow("SELECT * FROM archive WHERE event_id = $1", event_id)
        if row is None or not ctx.actor.covers(row["org_path"]):
            msg = "event not found"
            raise NotFoundError(msg)
        envelope = Envelope.model_validate(orjson.loads(row["body"]))
        around = {
            r["position"]: r["hash"]
            for r in await self._chain.fetch(
                "SELECT position, hash FROM archive"
                " WHERE source = $1 AND deployment = $2 AND position = ANY($3::bigint[])",
                row["source"],
                row["deployment"],
                [row["position"] - 1, row["position"] + 1],
            )
        }
        previous = around.get(row["position"] - 1)
        first = row["position"] == 1
        detail = EventDetail(
            envelope=envelope.model_dump(mode="json"),
            hash_matches=envelope.computed_hash() == envelope.hash == row["hash"],
            previous_position=None if first else row["position"] - 1,
            previous_hash=previous,
            links_to_previous=(envelope.prev_hash == GENESIS_HASH)
            if first
            else (None if previous is None else envelope.prev_hash == previous),
            next_position=row["position"] + 1 if row["position"] + 1 in around else None,
        )
        await self._record(ctx, "event", {"event_id": str(event_id)}, 1)
        return detail
