"""What a command handler needs of an event store (`EventLog`), and an in-memory one for fast unit tests.

`runtime.store.EventStore` is the real one (PostgreSQL, group commit). `InMemoryEventLog` keeps
the same promises within one process: an append names the version it expects and fails with
`ConcurrencyError` otherwise, writing nothing; positions are gapless; every event is sealed
into the same hash chain. One contract suite (tests/eventlog_contract.py) runs against both.
It knows one deployment only: no handed-over streams, no late-entry declarations, no
row-level security; tests of those use PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from contracts.envelope import GENESIS_HASH, Envelope, seal, uuid7s
from contracts.event import Event
from runtime import clock
from runtime.chain import ChainBreak, ChainWalk, append_fields, json_time, link_fields
from runtime.context import CommandContext
from runtime.errors import ConcurrencyError
from runtime.projection import Recorded


class EventLog(Protocol):
    """Appends to and reads one service's streams (see `runtime.store.EventStore`)."""

    @property
    def source(self) -> str:
        """The service whose events these are."""

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
        """Append `events` to a stream at `expected_version` (0: new); `ConcurrencyError` when it moved on."""

    async def read_stream(self, stream_id: str) -> list[Recorded]:
        """Every event of one stream, oldest first."""

    async def read_after(self, position: int, limit: int = 1000) -> list[Envelope]:
        """The events after `position`, in position order, at most `limit`."""

    async def head(self) -> int:
        """The position of the last event (0 when empty)."""

    async def verify_chain(self, *, after: int = 0, batch: int = 5000) -> ChainBreak | None:
        """The first broken link of the chain after `after`, or None."""


class InMemoryEventLog:
    """An `EventLog` in a list: the same versions, positions and hash chain, no database."""

    def __init__(self, *, source: str, deployment: str = "test") -> None:
        self.source = source
        self.deployment = deployment
        self._rows: list[dict[str, Any]] = []
        self._versions: dict[str, int] = {}
        self._lock = asyncio.Lock()

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
        """Append `events` to a stream at `expected_version` (0: new); `ConcurrencyError` when it moved on."""
        if not events:
            return []
        async with self._lock:
            current = self._versions.get(stream_id, 0)
            if current != expected_version:
                raise ConcurrencyError(stream_id, expected_version, current)
            envelopes, rows = self._seal(stream_id, current, events, ctx=ctx, org_path=org_path, cadre_id=cadre_id)
            if not ctx.dry_run:
                self._rows.extend(rows)
                self._versions[stream_id] = current + len(events)
            return envelopes

    def _seal(
        self,
        stream_id: str,
        current: int,
        events: Sequence[Event],
        *,
        ctx: CommandContext,
        org_path: str,
        cadre_id: UUID | None,
    ) -> tuple[list[Envelope], list[dict[str, Any]]]:
        position = len(self._rows)
        prev_hash = self._rows[-1]["hash"] if self._rows else GENESIS_HASH
        recorded_at = json_time(clock.now())
        common = append_fields(
            source=self.source,
            deployment=self.deployment,
            stream_id=stream_id,
            ctx=ctx,
            org_path=org_path,
            cadre_id=cadre_id,
        )
        envelopes, rows = [], []
        for n, (event, event_id) in enumerate(zip(events, uuid7s(len(events)), strict=True)):
            position += 1
            digest, body = seal(
                link_fields(
                    common,
                    event,
                    recorded_at=recorded_at,
                    event_id=event_id,
                    stream_version=current + n + 1,
                    position=position,
                    payload=event.model_dump(mode="json"),
                    prev_hash=prev_hash,
                )
            )
            prev_hash = digest
            envelopes.append(Envelope.from_bytes(body))
            rows.append(
                {
                    "position": position,
                    "stream_id": stream_id,
                    "stream_version": current + n + 1,
                    "event_id": event_id,
                    "cadre_id": cadre_id,
                    "body": body,
                    "hash": digest,
                }
            )
        return envelopes, rows

    async def read_stream(self, stream_id: str) -> list[Recorded]:
        """Every event of one stream, oldest first."""
        return [
            Recorded.from_envelope(Envelope.from_bytes(row["body"]))
            for row in self._rows
            if row["stream_id"] == stream_id
        ]

    async def read_cadre(self, cadre_id: UUID) -> list[Envelope]:
        """Every event recorded about one cadre, in order."""
        return [Envelope.from_bytes(row["body"]) for row in self._rows if row["cadre_id"] == cadre_id]

    async def read_after(self, position: int, limit: int = 1000) -> list[Envelope]:
        """The events after `position`, in position order, at most `limit`."""
        return [Envelope.from_bytes(row["body"]) for row in self._rows[position : position + limit]]

    async def head(self) -> int:
        """The position of the last event (0 when empty)."""
        return len(self._rows)

    async def verify_chain(self, *, after: int = 0, batch: int = 5000) -> ChainBreak | None:
        """The first broken link of the chain after `after`, or None (the same checks as PostgreSQL's)."""
        del batch  # everything is in memory
        walk = ChainWalk(after, self._rows[after - 1]["hash"] if after else GENESIS_HASH)
        return next((found for row in self._rows[after:] if (found := walk.step(row))), None)

    async def close(self) -> None:
        """Nothing to stop."""
