"""Prove that a service's record was not altered: the chain, the versions, the topic, the signed checkpoints.

`verify_service` checks one service's event table and (optionally) its Kafka topic:

1. **chain**: every row's hash covers its body, each names the hash before it, positions
   have no gap, and the chain head names the last row (`EventStore.verify_chain`);
2. **versions**: every stream's versions run 1, 2, 3, ... without a gap;
3. **topic**: the topic holds the same events as the table (same ids, same hashes), nothing
   the table lacks, and each cadre's events in the table's order;
4. **checkpoints**: every `ChainCheckpointed` (from the table and from the topic) carries a
   valid Ed25519 signature of a trusted key, and the table still has the signed hash at the
   signed position: a chain rewritten and re-hashed end to end fails here.

Each finding names the position of the first row it concerns; the report's
`first_bad_position` is the earliest of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.audit import ChainCheckpointed
from contracts.envelope import Envelope
from runtime import checkpoint
from runtime.db import Conn, Pool
from runtime.kafka import read_range, topic_ends
from runtime.store import EventStore

MAX_FINDINGS_PER_CHECK = 20


@dataclass(frozen=True, order=True)
class Finding:
    """One broken link."""

    position: int
    check: str
    problem: str


@dataclass
class Report:
    """What `verify_service` found for one service."""

    service: str
    events: int = 0
    on_topic: int | None = None
    checkpoints_verified: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing found."""
        return not self.findings

    @property
    def first_bad_position(self) -> int | None:
        """The earliest position any check found broken."""
        return min((f.position for f in self.findings), default=None)

    def add(self, check: str, position: int, problem: str) -> None:
        """Record a finding (at most `MAX_FINDINGS_PER_CHECK` per check: the first ones)."""
        if sum(1 for f in self.findings if f.check == check) < MAX_FINDINGS_PER_CHECK:
            self.findings.append(Finding(position, check, problem))


async def read_whole_topic(bootstrap: str, topic: str, *, batch: int = 5000) -> list[Any]:
    """Every record on `topic` now (all partitions, beginning to end), without a consumer group."""
    ends = await topic_ends(bootstrap, [topic])
    return [record async for records in read_range(bootstrap, {}, ends, batch) for record in records]


_ROWS: Final = "SELECT position, event_id, event_type, cadre_id, stream_id, hash, body FROM events"


async def verify_service(
    *,
    service: str,
    pool: Pool,
    public_keys: Sequence[Ed25519PublicKey],
    bootstrap: str | None = None,
    topic: str | None = None,
) -> Report:
    """Verify one service's event table, and its topic when `bootstrap` and `topic` are given."""
    report = Report(service=service)
    store = EventStore(pool, source=service, deployment="")
    broken = await store.verify_chain()
    if broken is not None:
        report.add("chain", broken.position, broken.problem)
    # The table's reads share one snapshot (a live service appends meanwhile); the topic is read after
    # them, so what it holds past the snapshot is checked against the rows appended since.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await _versions(conn, report)
        rows = await conn.fetch(_ROWS)
        cursor = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM relay_cursor") or 0)
    report.events = len(rows)
    newest = max((row["position"] for row in rows), default=0)
    by_id = {row["event_id"]: row for row in rows}
    checkpoints: dict[Any, Envelope] = {
        row["event_id"]: Envelope.model_validate(orjson.loads(row["body"]))
        for row in rows
        if row["event_type"] == ChainCheckpointed.event_type
    }
    if bootstrap is not None and topic is not None:
        on_topic = [Envelope.from_bytes(record.value) for record in await read_whole_topic(bootstrap, topic)]
        report.on_topic = len(on_topic)
        if any(envelope.position > newest for envelope in on_topic):  # appended since the snapshot: read them too
            later = await pool.fetch(f"{_ROWS} WHERE position > $1", newest)
            by_id.update({row["event_id"]: row for row in later})
        _compare_topic(report, by_id, on_topic, cursor)
        for envelope in on_topic:
            if envelope.event_type == ChainCheckpointed.event_type:
                checkpoints.setdefault(envelope.event_id, envelope)
    hashes = {row["position"]: row["hash"] for row in rows}
    for envelope in sorted(checkpoints.values(), key=lambda e: e.position):
        signed = ChainCheckpointed.model_validate(envelope.payload)
        if not any(checkpoint.verify(key, envelope.source, envelope.deployment, signed) for key in public_keys):
            report.add("checkpoint", envelope.position, "checkpoint signature does not verify with a trusted key")
            continue
        report.checkpoints_verified += 1
        if hashes.get(signed.position) != signed.hash:
            report.add(
                "checkpoint",
                signed.position,
                f"chain rewritten: the checkpoint signed at position {envelope.position} says the event at "
                f"{signed.position} has hash {signed.hash[:12]}..., the table has "
                f"{(hashes.get(signed.position) or 'no such row')[:12]}",
            )
    report.findings.sort()
    return report


async def _versions(conn: Conn, report: Report) -> None:
    rows = await conn.fetch(
        "SELECT position, stream_id, stream_version, previous FROM ("
        " SELECT position, stream_id, stream_version,"
        "  lag(stream_version, 1, 0) OVER (PARTITION BY stream_id ORDER BY stream_version) AS previous"
        " FROM events) s WHERE stream_version <> previous + 1 ORDER BY position"
    )
    for row in rows:
        report.add(
            "versions",
            row["position"],
            f"stream {row['stream_id']} jumps from version {row['previous']} to {row['stream_version']}",
        )


def _compare_topic(report: Report, by_id: dict[Any, Any], on_topic: list[Envelope], cursor: int) -> None:
    seen: set[Any] = set()
    last_position: dict[str, int] = {}
    for envelope in on_topic:
        key = str(envelope.cadre_id or envelope.stream_id)
        row = by_id.get(envelope.event_id)
        if row is None:
            problem = f"{envelope.event_type} {envelope.event_id} is on the topic, not in the table"
            report.add("topic", envelope.position, problem)
            continue
        if envelope.event_id in seen:
            continue  # published twice (a relay crash between send and cursor): harmless, consumers drop it
        seen.add(envelope.event_id)
        if row["hash"] != envelope.hash:
            report.add("topic", row["position"], "the table's hash differs from the topic's copy")
        if row["position"] != envelope.position:
            report.add("topic", min(row["position"], envelope.position), "the event sits at another position")
        earlier = last_position.get(key)
        if earlier is not None and earlier > row["position"]:
            report.add("topic", row["position"], f"out of order for {key}: after position {earlier} on the topic")
        last_position[key] = row["position"]
    for event_id, row in by_id.items():
        if event_id not in seen and row["position"] <= cursor:
            report.add("topic", row["position"], "published (before the relay cursor) but not on the topic")


async def verify_dsn(dsn: str, **kwargs: Any) -> Report:
    """`verify_service` with its own short-lived connection pool."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        return await verify_service(pool=pool, **kwargs)
    finally:
        await pool.close()
