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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID

import orjson
from pydantic import TypeAdapter

from contracts.audit import LateEntryDeclared
from contracts.envelope import (
    GENESIS_HASH,
    Actor,
    Envelope,
    Role,
    canonical_json,
    chain_hash,
    in_subtree,
    seal,
    uuid7,
    uuid7s,
)
from contracts.event import Event
from contracts.sync import StreamHandedOver
from runtime import clock, logs, metrics
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
    # Row-level security (runtime.db): an actor reads the events of its subtree; the rest is the store's machinery.
    *row_security("events", in_scope("org_path")),
    *system_only("chain_head", "stream_owners", "received_events"),
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

_DATETIME: Final = TypeAdapter(datetime)
_MAX_CLOCK_SKEW: Final = timedelta(minutes=5)


def _json_time(value: datetime) -> str:
    # The same text pydantic writes for this datetime, so hashes recompute from models too.
    text: str = _DATETIME.dump_python(value.astimezone(UTC), mode="json")
    return text


@dataclass(frozen=True, slots=True)
class LateEntry:
    """Why a command's events are entered beyond the backdating window, and on which permission (runtime.http)."""

    reason: str
    permission: str
    window_days: int


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked for a change, and which conversation it belongs to."""

    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None = None
    occurred_at: datetime | None = None
    """When it happened in the world, if earlier than now (records entered late)."""
    decided_at: datetime = field(default_factory=clock.now)
    """When the command was decided: its events happened then unless `occurred_at` says otherwise."""
    dry_run: bool = False
    """Decide and check, write nothing (a batch's dry run): `append` answers what it would record."""
    late_entry: LateEntry | None = None
    """Set when `occurred_at` lies beyond the backdating window: the store records a `LateEntryDeclared` too."""

    @property
    def occurred(self) -> datetime:
        """When the command's events happened."""
        return self.occurred_at or self.decided_at

    @property
    def day(self) -> date:
        """The organization's date on which the command's events happened: the rules' "today"."""
        return clock.date_of(self.occurred)

    @classmethod
    def reacting_to(cls, envelope: Envelope, service: str) -> CommandContext:
        """The context of a command a service issues by itself in reaction to `envelope`.

        The actor is the service (role `system`) acting at the event's org unit; the
        correlation id carries over and the causation id names the event.
        """
        return cls(
            actor=Actor(user=f"system:{service}", org_path=envelope.org_path, role=Role.SYSTEM),
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )


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
        common = {
            "source": store.source,
            "deployment": store.deployment,
            "stream_id": stream_id,
            "cadre_id": str(cadre_id) if cadre_id else None,
            "org_path": org_path,
            "occurred_at": _json_time(ctx.occurred),
            "actor": ctx.actor.model_dump(mode="json"),
            "correlation_id": str(ctx.correlation_id),
            "causation_id": str(ctx.causation_id) if ctx.causation_id else None,
        }
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
        return cls(at, _json_time(at))


@dataclass(frozen=True, slots=True)
class _StreamState:
    version: int
    owner: str | None


@dataclass(slots=True)
class _ChainTip:
    position: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place where the hash chain does not hold."""

    position: int
    problem: str


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
            streams = await self._streams(conn, {request.stream_id})
        state = streams.get(request.stream_id)
        owner = self._owner(request, state)
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
            streams = await self._streams(conn, {r.stream_id for r in batch})
            versions = {stream_id: state.version for stream_id, state in streams.items()}
            plan: list[tuple[_Append, int]] = []
            for request in batch:
                owner = self._owner(request, streams.get(request.stream_id))
                if owner is not None:
                    request.fail(OwnedElsewhereError(request.stream_id, owner))
                    continue
                current = versions.get(request.stream_id, 0)
                if current != request.expected_version:
                    conflicts.append((request, ConcurrencyError(request.stream_id, request.expected_version, current)))
                    continue
                plan.extend(_declaration(self, request, current))
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
            await self._record_handovers(conn, accepted, now)
            if self._inline is not None:
                recorded = [
                    Recorded(envelope=e, event=event)
                    for request, envelopes in accepted
                    for e, event in zip(envelopes, request.events, strict=True)
                    if self._inline.handles(e.event_type)
                ]
                if recorded:
                    await self._inline.apply(conn, recorded)
            await conn.execute(
                "UPDATE chain_head SET position = $1, hash = $2, recorded_at = $3 WHERE id = 1",
                chain.position,
                chain.hash,
                now,
            )
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(chain.position))
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

    @staticmethod
    async def _streams(conn: Conn, stream_ids: set[str]) -> dict[str, _StreamState]:
        """Each stream's current version here and its explicitly named owner, if any."""
        rows = await conn.fetch(
            "SELECT s.stream_id, (SELECT max(stream_version) FROM events e WHERE e.stream_id = s.stream_id) AS version,"
            " o.owner, o.version AS owned_from FROM unnest($1::text[]) AS s(stream_id)"
            " LEFT JOIN stream_owners o USING (stream_id)",
            list(stream_ids),
        )
        return {
            row["stream_id"]: _StreamState(
                # A stream handed over to this deployment goes on from the version it was handed over at.
                version=max(row["version"] or 0, row["owned_from"] or 0),
                owner=row["owner"],
            )
            for row in rows
        }

    def _owner(self, request: _Append, state: _StreamState | None) -> str | None:
        """The deployment that writes `request`'s stream when it is not this one (None: this one)."""
        if state is not None and state.owner is not None:
            return None if state.owner == self.deployment else state.owner
        return self.topology.owner_of(request.org_path)

    async def _record_handovers(
        self, conn: Conn, accepted: list[tuple[_Append, list[Envelope]]], now: datetime
    ) -> None:
        """A `StreamHandedOver` among the appended events names the stream's new writer (in the same transaction)."""
        rows = [
            (envelope.stream_id, event.to_deployment, envelope.stream_version, now)
            for request, envelopes in accepted
            for envelope, event in zip(envelopes, request.events, strict=True)
            if isinstance(event, StreamHandedOver)
        ]
        if rows:
            await conn.executemany(
                "INSERT INTO stream_owners (stream_id, owner, version, changed_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner, version = EXCLUDED.version,"
                " changed_at = EXCLUDED.changed_at",
                rows,
            )

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
            {
                **common,
                "recorded_at": now.json,
                "event_id": event_key,
                "event_type": event.event_type,
                "schema_version": event.schema_version,
                "stream_version": stream_version,
                "position": position,
                "payload": request.fragments[n],
                "prev_hash": prev_hash,
            }
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

    async def read_cadre(self, cadre_id: UUID) -> list[Envelope]:
        """Every event this service recorded about one cadre, in order."""
        rows = await self._pool.fetch("SELECT body FROM events WHERE cadre_id = $1 ORDER BY position", cadre_id)
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
        async with self._pool.acquire() as conn:
            prev_hash = GENESIS_HASH
            if after:
                prev_hash = await conn.fetchval("SELECT hash FROM events WHERE position = $1", after)
            expected = after + 1
            while True:
                rows = await conn.fetch(
                    "SELECT position, stream_id, stream_version, event_id, body, hash FROM events"
                    " WHERE position >= $1 ORDER BY position LIMIT $2",
                    expected,
                    batch,
                )
                for row in rows:
                    problem = _check_row(row, expected, prev_hash)
                    if problem:
                        return ChainBreak(position=expected, problem=problem)
                    prev_hash = row["hash"]
                    expected += 1
                if len(rows) < batch:
                    break
            head = await conn.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
        if head is None or head["position"] != expected - 1 or head["hash"] != prev_hash:
            return ChainBreak(position=expected, problem="chain head does not name the last event")
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


def _declaration(store: EventStore, request: _Append, current: int) -> list[tuple[_Append, int]]:
    """The `LateEntryDeclared` a late request is recorded with (a stream of its own, just before it), if any."""
    late, occurred_at = request.ctx.late_entry, request.ctx.occurred_at
    if late is None or occurred_at is None:
        return []
    event = LateEntryDeclared(
        stream_id=request.stream_id,
        first_version=current + 1,
        last_version=current + len(request.events),
        occurred_at=occurred_at,
        window_days=late.window_days,
        permission=late.permission,
        reason=late.reason,
    )
    ctx = replace(request.ctx, occurred_at=None, late_entry=None)
    declaration = _Append.prepare(
        store, f"late-entry-{uuid7()}", 0, [event], ctx=ctx, org_path=request.org_path, cadre_id=request.cadre_id
    )
    return [(declaration, 0)]


def _check_row(row: Any, expected_position: int, prev_hash: str) -> str | None:
    if row["position"] != expected_position:
        return f"missing event: found position {row['position']}"
    fields = orjson.loads(row["body"])
    claimed = fields.pop("hash", None)
    if claimed != row["hash"]:
        return "hash column differs from the body"
    if chain_hash(fields) != claimed:
        return "body does not match its hash"
    if fields.get("prev_hash") != prev_hash:
        return "prev_hash does not name the event before"
    same = (
        fields.get("position") == row["position"]
        and fields.get("stream_id") == row["stream_id"]
        and fields.get("stream_version") == row["stream_version"]
        and fields.get("event_id") == str(row["event_id"])
    )
    return None if same else "indexed columns differ from the body"
