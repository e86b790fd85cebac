"""The event store: one append-only, hash-chained `events` table per service.

Appends go through one writer task per process that commits many commands in
one transaction (group commit): each command keeps its own optimistic
concurrency check (expected stream version), and all of them share one fsync.
Writers in other processes are serialized by the row lock on `chain_head`, which
also makes `position` gapless and ordered by commit, so the table itself is the
outbox: the relay publishes rows in `position` order from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID

import orjson

from contracts.envelope import (
    GENESIS_HASH,
    Envelope,
    Role,
    canonical_json,
    in_subtree,
    seal,
    uuid7,
    uuid7s,
)
from contracts.event import Event
from runtime import clock, logs, metrics, ownership
from runtime.chain import ChainBreak, ChainWalk, append_fields, json_time, link_fields
from runtime.context import CommandContext
from runtime.db import Conn, Pool, busy, in_scope, row_security, system_only, unreachable
from runtime.errors import CommandError, ConcurrencyError, NotFoundError, OwnedElsewhereError, RuleViolationError
from runtime.projection import Projection, Recorded
from runtime.topology import Topology

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS events (
        position        bigint PRIMARY KEY,
        event_id        uuid NOT NULL UNIQUE,
        event_type      text NOT NULL,
        schema_version  int NOT NULL,
        stream_id       text NOT NULL,
        stream_version  int NOT NULL CHECK (stream_version > 0),
        cadre_id        uuid,
        org_path        text NOT NULL,
        occurred_at     timestamptz NOT NULL,
        recorded_at     timestamptz NOT NULL,
        correlation_id  uuid NOT NULL,
        body            text NOT NULL,
        hash            text NOT NULL,
        UNIQUE (stream_id, stream_version)
    )
    """,
    "CREATE INDEX IF NOT EXISTS events_cadre ON events (cadre_id, position) WHERE cadre_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_org_path ON events (org_path text_pattern_ops, position)",
    "CREATE INDEX IF NOT EXISTS events_recorded_at ON events (recorded_at)",
    """
    CREATE TABLE IF NOT EXISTS chain_head (
        id        int PRIMARY KEY CHECK (id = 1),
        position  bigint NOT NULL,
        hash      text NOT NULL
    )
    """,
    f"INSERT INTO chain_head VALUES (1, 0, '{GENESIS_HASH}') ON CONFLICT DO NOTHING",  # noqa: S608 - constant
    # The last event's recorded_at: recorded_at never goes backwards along the chain, even when
    # writers on several hosts read slightly different clocks.
    "ALTER TABLE chain_head ADD COLUMN IF NOT EXISTS recorded_at timestamptz",
    # Event rows are never changed or removed: refuse it in the database itself.
    """
    CREATE OR REPLACE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'events_append_only') THEN
            CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
                FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
            CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
                FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();
        END IF;
    END $$
    """,
    # Row-level security (runtime.db): an actor reads the events of its subtree; the rest is the store's machinery.
    *row_security("events", in_scope("org_path")),
    *system_only("chain_head"),
    *ownership.SCHEMA,
)

NOTIFY_CHANNEL: Final = "events_appended"

EVENT_COLUMNS: Final = (  # in the order of the rows the store writes
    "position",
    "event_id",
    "event_type",
    "schema_version",
    "stream_id",
    "stream_version",
    "cadre_id",
    "org_path",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "body",
    "hash",
)

_MAX_CLOCK_SKEW: Final = timedelta(minutes=5)


class StreamLinks(NamedTuple):
    """A stream's events, the `prev_hash` of the row after each (by position), and the chain's head."""

    envelopes: list[Envelope]
    successors: dict[int, str]
    head: tuple[int, str]


@dataclass(slots=True)
class _Append:
    """One command's events, prepared as far as they can be before the writer takes them.

    What does not depend on the chain (each payload's canonical JSON, the fields the events
    share) is prepared by the caller's task when it appends, so that it happens while the
    writer waits for the previous group's commit; the writer only adds what does (event ids,
    positions, versions, the time recorded, the links of the chain).
    """

    stream_id: str
    expected_version: int
    events: Sequence[Event]
    ctx: CommandContext
    org_path: str
    cadre_id: UUID | None
    common: dict[str, Any]
    """The envelope fields shared by every event of this append, as JSON values."""
    payloads: list[dict[str, Any]]
    """Each event's payload as JSON values (what the envelope carries)."""
    fragments: list[orjson.Fragment]
    """Each payload's canonical JSON, serialized once: the body and the hash embed these bytes."""
    done: asyncio.Future[list[Envelope]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @classmethod
    def prepare(
        cls,
        store: EventStore,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        ctx: CommandContext,
        org_path: str,
        cadre_id: UUID | None,
    ) -> _Append:
        """Serialize what can be serialized before the chain is known."""
        payloads = [event.model_dump(mode="json") for event in events]
        common = append_fields(
            source=store.source,
            deployment=store.deployment,
            stream_id=stream_id,
            ctx=ctx,
            org_path=org_path,
            cadre_id=cadre_id,
        )
        fragments = [orjson.Fragment(canonical_json(payload)) for payload in payloads]
        return cls(stream_id, expected_version, events, ctx, org_path, cadre_id, common, payloads, fragments)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    def succeed(self, envelopes: list[Envelope]) -> None:
        if not self.done.done():
            self.done.set_result(envelopes)


class _Recorded(NamedTuple):
    """The time a group of events is recorded at, and its JSON text (formatted once per group)."""

    at: datetime
    json: str

    @classmethod
    def at_time(cls, at: datetime) -> _Recorded:
        return cls(at, json_time(at))


@dataclass(slots=True)
class _ChainTip:
    position: int
    hash: str


class EventStore:
    """Appends and reads one service's events."""

    def __init__(
        self,
        pool: Pool,
        *,
        source: str,
        deployment: str,
        inline: Projection | None = None,
        batch_size: int = 500,
        topology: Topology | None = None,
    ) -> None:
        self._pool = pool
        self.source = source
        self.deployment = deployment
        self.topology = topology or Topology(deployment=deployment)
        self._inline = inline
        self._batch_size = batch_size
        self._queue: asyncio.Queue[_Append | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        ctx: CommandContext,
        org_path: str,
        cadre_id: UUID | None = None,
    ) -> list[Envelope]:
        """Append `events` to a stream that is at `expected_version` (0: a new stream).

        Raises `ConcurrencyError` when the stream has moved on, `OwnedElsewhereError` when another
        deployment writes the stream (ADR 0010); nothing is written then.
        """
        if not events:
            return []
        if ctx.occurred_at is not None and ctx.occurred_at > clock.now() + _MAX_CLOCK_SKEW:
            msg = "occurred_at lies in the future"
            raise RuleViolationError(msg)
        request = _Append.prepare(
            self, stream_id, expected_version, events, ctx=ctx, org_path=org_path, cadre_id=cadre_id
        )
        if ctx.dry_run:
            return await self._dry_run(request)
        self._ensure_writer()
        self._queue.put_nowait(request)
        return await request.done

    async def _dry_run(self, request: _Append) -> list[Envelope]:
        """What `request` would record now (no position, no chain link), after the same version check."""
        async with self._pool.acquire() as conn:
            streams = await ownership.streams(conn, {request.stream_id})
        state = streams.get(request.stream_id)
        owner = ownership.other_writer(state, self.deployment, self.topology, request.org_path)
        if owner is not None:
            raise OwnedElsewhereError(request.stream_id, owner)
        current = state.version if state is not None else 0
        if current != request.expected_version:
            async with self._pool.acquire() as conn:
                hidden = await _hidden_outside_scope(
                    conn, [(request, ConcurrencyError(request.stream_id, request.expected_version, current))]
                )
            raise hidden[0][1]
        recorded_at = _Recorded.at_time(clock.now())
        ids = uuid7s(len(request.events))
        return [
            self._record(
                request, n, event_id=ids[n], stream_version=current + n + 1, position=0, prev_hash="", now=recorded_at
            )[0]
            for n in range(len(request.events))
        ]

    async def close(self) -> None:
        """Stop the writer after the appends already queued."""
        if self._writer is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name=f"{self.source}-event-writer")

    async def _write_forever(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._batch_size and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit_isolating_failures(batch)
            if stop:
                return

    async def _commit_isolating_failures(self, batch: list[_Append]) -> None:
        try:
            await self._commit(batch)
        except Exception as error:
            if len(batch) == 1 or unreachable(error) or busy(error):
                # One command, or the database out of reach (each alone would fail the same way,
                # on a connection in whatever state the loss left it): every caller gets the error.
                log.exception("append failed", stream_id=batch[0].stream_id, commands=len(batch))
                for request in batch:
                    if not request.done.done():
                        request.fail(error)
                return
            # One bad command must not sink the others: retry each on its own.
            for request in batch:
                if request.done.done():
                    continue
                try:
                    await self._commit([request])
                except Exception as single_error:  # noqa: BLE001 - handed to the caller
                    request.fail(single_error)

    async def _commit(self, batch: list[_Append]) -> None:
        accepted: list[tuple[_Append, list[Envelope]]] = []
        # Refusals are told only after the commit: a caller that retries at once must see the winner.
        conflicts: list[tuple[_Append, CommandError]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            chain, now = await self._lock_chain(conn)
            streams = await ownership.streams(conn, {r.stream_id for r in batch})
            versions = {stream_id: state.version for stream_id, state in streams.items()}
            plan: list[tuple[_Append, int]] = []
            for request in batch:
                owner = ownership.other_writer(
                    streams.get(request.stream_id), self.deployment, self.topology, request.org_path
                )
                if owner is not None:
                    request.fail(OwnedElsewhereError(request.stream_id, owner))
                    continue
                current = versions.get(request.stream_id, 0)
                if current != request.expected_version:
                    conflicts.append((request, ConcurrencyError(request.stream_id, request.expected_version, current)))
                    continue
                plan.extend(self._declaration(request, current))
                plan.append((request, current))
                versions[request.stream_id] = current + len(request.events)
            conflicts = await _hidden_outside_scope(conn, conflicts)
            if not plan:
                for request, error in conflicts:
                    request.fail(error)
                return

            recorded_at = _Recorded.at_time(now)
            ids = iter(uuid7s(sum(len(request.events) for request, _ in plan)))
            rows = [
                row
                for request, current in plan
                for row in self._records(request, current, accepted, now=recorded_at, chain=chain, ids=ids)
            ]
            await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
            await ownership.record_handovers(conn, [(envelopes, r.events) for r, envelopes in accepted], now)
            if self._inline is not None:
                recorded = [
                    Recorded(envelope=e, event=event)
                    for request, envelopes in accepted
                    for e, event in zip(envelopes, request.events, strict=True)
                    if self._inline.handles(e.event_type)
                ]
                if recorded:
                    await self._inline.apply(conn, recorded)
            # The head moves and the relay is told (at commit) in one round trip.
            await conn.execute(
                "UPDATE chain_head SET position = $1, hash = $2, recorded_at = $3 WHERE id = 1"
                " RETURNING pg_notify($4, position::text)",
                chain.position,
                chain.hash,
                now,
                NOTIFY_CHANNEL,
            )
        metrics.EVENTS_APPENDED.labels(self.source).inc(len(rows))
        metrics.APPEND_BATCH.labels(self.source).observe(len(batch))
        for request, envelopes in accepted:
            request.succeed(envelopes)
        for request, error in conflicts:
            request.fail(error)

    @staticmethod
    async def _lock_chain(conn: Conn) -> tuple[_ChainTip, datetime]:
        """Lock the chain's head; its tip, and the time its next events are recorded at."""
        head = await conn.fetchrow("SELECT position, hash, recorded_at FROM chain_head WHERE id = 1 FOR UPDATE")
        if head is None:
            msg = "chain_head row missing: schema not set up"
            raise RuntimeError(msg)
        # Read under the lock, never before the last event's: recorded_at follows the order of positions.
        now = clock.now()
        if head["recorded_at"] is not None:
            now = max(now, head["recorded_at"])
        return _ChainTip(position=head["position"], hash=head["hash"]), now

    def _records(
        self,
        request: _Append,
        current: int,
        accepted: list[tuple[_Append, list[Envelope]]],
        *,
        now: _Recorded,
        chain: _ChainTip,
        ids: Iterator[UUID],
    ) -> list[tuple[Any, ...]]:
        """The rows of one accepted request, chained onto `chain` (which moves to their end)."""
        envelopes = []
        rows = []
        for n in range(len(request.events)):
            chain.position += 1
            envelope, row = self._record(
                request,
                n,
                event_id=next(ids),
                stream_version=current + n + 1,
                position=chain.position,
                prev_hash=chain.hash,
                now=now,
            )
            chain.hash = envelope.hash
            envelopes.append(envelope)
            rows.append(row)
        accepted.append((request, envelopes))
        return rows

    def _record(
        self,
        request: _Append,
        n: int,
        *,
        event_id: UUID,
        stream_version: int,
        position: int,
        prev_hash: str,
        now: _Recorded,
    ) -> tuple[Envelope, tuple[Any, ...]]:
        """The envelope and the row of the `n`-th event of `request`: serialized and hashed once."""
        event = request.events[n]
        event_key = str(event_id)
        common = request.common
        digest, body = seal(
            link_fields(
                common,
                event,
                recorded_at=now.json,
                event_id=event_id,
                stream_version=stream_version,
                position=position,
                payload=request.fragments[n],
                prev_hash=prev_hash,
            )
        )
        occurred_at = request.ctx.occurred
        envelope = Envelope.trusted(
            event_id=event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            source=self.source,
            deployment=self.deployment,
            stream_id=request.stream_id,
            stream_version=stream_version,
            position=position,
            cadre_id=request.cadre_id,
            org_path=request.org_path,
            occurred_at=occurred_at.astimezone(UTC),
            recorded_at=now.at,
            actor=request.ctx.actor,
            correlation_id=request.ctx.correlation_id,
            causation_id=request.ctx.causation_id,
            payload=request.payloads[n],
            prev_hash=prev_hash,
            hash=digest,
        )
        row = (
            position,
            event_key,  # asyncpg encodes a uuid column's text in C, a UUID object through Python
            event.event_type,
            event.schema_version,
            request.stream_id,
            stream_version,
            common["cadre_id"],
            request.org_path,
            occurred_at,
            now.at,
            common["correlation_id"],
            body.decode(),
            digest,
        )
        return envelope, row

    def _declaration(self, request: _Append, current: int) -> list[tuple[_Append, int]]:
        """The `LateEntryDeclared` a late request is recorded with (a stream of its own, just before it), if any."""
        declared = request.ctx.late_declaration(request.stream_id, current + 1, current + len(request.events))
        if declared is None:
            return []
        event, ctx = declared
        declaration = _Append.prepare(
            self, f"late-entry-{uuid7()}", 0, [event], ctx=ctx, org_path=request.org_path, cadre_id=request.cadre_id
        )
        return [(declaration, 0)]

    async def read_stream(self, stream_id: str) -> list[Recorded]:
        """Every event of one stream, oldest first, upcast to the current versions.

        A stream handed over to this deployment begins with what its earlier owner recorded
        (received and verified) and goes on with this deployment's own events.
        """
        rows = await self._pool.fetch(
            "SELECT body FROM (SELECT stream_version, body FROM received_events WHERE stream_id = $1"
            " UNION ALL SELECT stream_version, body FROM events WHERE stream_id = $1) s ORDER BY stream_version",
            stream_id,
        )
        return [Recorded.from_envelope(Envelope.from_bytes(row["body"])) for row in rows]

    async def read_stream_links(self, stream_id: str) -> StreamLinks:
        """This service's own events of one stream with their links in its chain, read in one snapshot.

        What proving a stream's file needs (the `prev_hash` of the row after each event, and the
        chain's head): read apart, an append committed between the reads looks like a broken link.
        """
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch("SELECT body FROM events WHERE stream_id = $1 ORDER BY stream_version", stream_id)
            envelopes = [Envelope.from_bytes(row["body"]) for row in rows]
            following = await conn.fetch(
                "SELECT position, body::jsonb ->> 'prev_hash' AS prev FROM events WHERE position = ANY($1::bigint[])",
                [e.position + 1 for e in envelopes],
            )
            head = await conn.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
        return StreamLinks(
            envelopes,
            {int(r["position"]): str(r["prev"]) for r in following},
            (0, "") if head is None else (int(head["position"]), str(head["hash"])),
        )

    async def read_cadre(self, cadre_id: UUID) -> list[Envelope]:
        """Every event this service recorded about one cadre, in order."""
        rows = await self._pool.fetch("SELECT body FROM events WHERE cadre_id = $1 ORDER BY position", cadre_id)
        return [Envelope.from_bytes(row["body"]) for row in rows]

    async def read_after(self, position: int, limit: int = 1000) -> list[Envelope]:
        """The events after `position`, in position order, at most `limit` (this service's own)."""
        rows = await self._pool.fetch(
            "SELECT body FROM events WHERE position > $1 ORDER BY position LIMIT $2", position, limit
        )
        return [Envelope.from_bytes(row["body"]) for row in rows]

    async def head(self) -> int:
        """The position of the last committed event (0 when empty)."""
        value = await self._pool.fetchval("SELECT position FROM chain_head WHERE id = 1")
        return int(value or 0)

    async def verify_chain(self, *, after: int = 0, batch: int = 5000) -> ChainBreak | None:
        """Walk the chain from `after`; return the first broken link, or None when intact.

        Checks that positions have no gap, each row's hash covers its body, each
        `prev_hash` is the hash of the row before, the indexed columns agree with
        the body, and the chain head names the last row.
        """
        # One snapshot for every read: on a live service an append committed between the last row read
        # and the head read would otherwise look like a head that names no row.
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            walk = ChainWalk(after)
            if after:
                walk.prev_hash = await conn.fetchval("SELECT hash FROM events WHERE position = $1", after)
            while True:
                rows = await conn.fetch(
                    "SELECT position, stream_id, stream_version, event_id, body, hash FROM events"
                    " WHERE position >= $1 ORDER BY position LIMIT $2",
                    walk.expected,
                    batch,
                )
                for row in rows:
                    if found := walk.step(row):
                        return found
                if len(rows) < batch:
                    break
            head = await conn.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
        if head is None or head["position"] != walk.expected - 1 or head["hash"] != walk.prev_hash:
            return ChainBreak(position=walk.expected, problem="chain head does not name the last event")
        return None


async def _hidden_outside_scope(
    conn: Conn, conflicts: list[tuple[_Append, CommandError]]
) -> list[tuple[_Append, CommandError]]:
    """Conflicts over streams outside their actor's subtree, told as "not found": no version, no existence leaks.

    A command that names an id of its own choosing (a nomination's cadre id, a directive's id) meets
    a stream another subtree wrote: it is answered exactly as a missing one would be elsewhere (404).
    """
    foreign = [(r, e) for r, e in conflicts if r.ctx.actor.role is not Role.SYSTEM]
    if not foreign:
        return conflicts
    rows = await conn.fetch(
        "SELECT DISTINCT ON (stream_id) stream_id, org_path FROM events WHERE stream_id = ANY($1::text[])"
        " ORDER BY stream_id, stream_version DESC",
        list({r.stream_id for r, _ in foreign}),
    )
    paths = {row["stream_id"]: row["org_path"] for row in rows}
    told: list[tuple[_Append, CommandError]] = []
    for request, error in conflicts:
        path = paths.get(request.stream_id)
        if request.ctx.actor.role is not Role.SYSTEM and path is not None and not _sees(request, path):
            error = NotFoundError(f"{request.stream_id.split('-', 1)[0]} not found")  # noqa: PLW2901 - told instead
        told.append((request, error))
    return told


def _sees(request: _Append, path: str) -> bool:
    """Whether the request's actor may know of a stream last recorded at `path`.

    Its subtree's streams; and the streams of the units above it that are no cadre's own (a
    programme, a cycle: it reads those, and enrols or evaluates its cadres in them).
    """
    actor = request.ctx.actor
    if actor.covers(path):
        return True
    cadres_own = request.cadre_id is not None and str(request.cadre_id) in request.stream_id
    return not cadres_own and in_subtree(actor.org_path, path)
