"""Bring a service back after its database was lost or put back to an earlier moment.

**After a point-in-time restore** (`deploy.local.backup`, ADR 0025) the restored database holds each
consumer's watermarks (`consumed`, ADR 0009) as they were at the moment, while the consumer groups'
offsets committed to Kafka are later: started as they are, the consumers would go on from those
offsets and never apply what came in between. So the groups of the restored service
(`<service>.<projection>`) are rewound to the beginning of every partition they read; each record
at or below its watermark is then skipped as a repeat, the rest is applied once. The relay needs
nothing: it re-sends from its restored cursor the very rows the topic has (same content, same
position headers), which consumers drop by position. Run it with the service stopped (an empty
group accepts the commit).

**From the log** (`restore_from_log`, ADR 0027), when no backup holds what was lost, or the one
restored is behind: the event table is filled from the service's own topic (kept forever), each
row exactly as it was published (its body byte for byte: the same positions, ids, hashes; nothing
is signed or hashed anew), the positions the topic lacks from further copies of the log (a parent
level's mirrored topic) and from the audit service's archive, every link of the chain checked
before anything is written. Nothing is written when a position between the table's head and the
log's end (or the last signed checkpoint) is found nowhere: each one is named, and the service
stays down. After the write, the service's own inline projection is applied to the restored
events in the same transaction, the relay's cursor is put at the end of what the topic holds (so
nothing is published again, nor with other content), then the whole record is verified
(`runtime.verify`: chain, versions, topic, signed checkpoints), the topic-fed projections are
rebuilt (`runtime.rebuild`) and the consumer groups rewound.

    ./dev restore --service registry --from-log [--archive-dsn DSN] [--also-topic TOPIC@BOOTSTRAP]

reads the service's own environment (DATABASE_OWNER_URL, KAFKA_BOOTSTRAP_SERVERS, TOPIC_NAMESPACE,
DEPLOYMENT_ID, CHECKPOINT_SIGNING_KEY) like the service itself; stop the service first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.audit import ChainCheckpointed
from contracts.envelope import GENESIS_HASH, Envelope
from runtime import bundle, checkpoint, db, logs, ownership, rebuild, relay, store, subscriber, verify
from runtime.chain import row_problem
from runtime.db import Conn, Pool
from runtime.kafka import TopicSpec, ensure_topics, partitions_of, read_range
from runtime.projection import Projection, Recorded
from runtime.relay import POSITION_HEADER
from runtime.service import ServiceSpec
from runtime.settings import ServiceSettings

log = logs.get(__name__)

_BATCH: Final = 1000
"""Events applied to the inline projection at a time."""
_NAMED: Final = 20
"""Positions the report names one by one; beyond, it counts them."""


async def rewind_consumers(bootstrap: str, service: str) -> dict[str, int]:
    """Rewind every consumer group of `service` to the beginning of its partitions; partitions per group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        groups = sorted(
            str(row[0]) for row in await admin.list_consumer_groups() if str(row[0]).startswith(f"{service}.")
        )
        committed = {group: list(await admin.list_consumer_group_offsets(group)) for group in groups}
    finally:
        await admin.close()
    rewound: dict[str, int] = {}
    for group, partitions in committed.items():
        if not partitions:
            continue
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            beginnings = await consumer.beginning_offsets(partitions)
            await consumer.commit({tp: OffsetAndMetadata(beginnings[tp], "") for tp in partitions})
        finally:
            await consumer.stop()
        rewound[group] = len(partitions)
    return rewound


@dataclass(frozen=True)
class LogCopy:
    """A topic that holds (a copy of) the service's events: its own, or a level's mirrored copy of it."""

    bootstrap: str
    topic: str

    @classmethod
    def parse(cls, text: str) -> LogCopy:
        """`TOPIC@BOOTSTRAP` (the form the command takes)."""
        topic, sep, bootstrap = text.rpartition("@")
        if not sep or not topic or not bootstrap:
            msg = f"{text!r}: name a topic and its cluster as TOPIC@HOST:PORT"
            raise ValueError(msg)
        return cls(bootstrap=bootstrap, topic=topic)


@dataclass(frozen=True)
class BundleCopy:
    """A signed bundle the deployment made (its last one to its parent): a further copy of its events."""

    name: str
    data: bytes = field(repr=False)

    def events(self, keys: Sequence[Ed25519PublicKey], *, deployment: str, service: str) -> list[str] | str:
        """The bodies of `service`'s events of `deployment` it carries, once it verifies whole; else why not.

        It must be signed by one of `keys` (the deployment's own), every file as signed, every
        event matching its hash and every chain continuous (`runtime.bundle.problems`).
        """
        try:
            unpacked = bundle.unpack(self.data)
        except bundle.BundleError as error:
            return str(error)
        signer = next((k for k in keys if bundle.key_id(k) == unpacked.manifest.get("key_id")), None)
        if signer is None:
            return f"signed with key {unpacked.manifest.get('key_id')!r}, none of the trusted keys"
        if unpacked.manifest.get("format") != bundle.SYNC_FORMAT:
            return f"not a sync bundle ({unpacked.manifest.get('format')!r})"
        problems = bundle.problems(unpacked, signer)
        if problems:
            return "; ".join(problems)
        bodies: list[str] = []
        for entry in unpacked.manifest.get("chains", []):
            if entry.get("deployment") == deployment and entry.get("source") == service:
                bodies += [line.decode() for line in unpacked.lines(str(entry["file"]))]
        return bodies


@dataclass
class FromLog:
    """What `restore_from_log` found and did; `ok` only when the whole record is back and verified."""

    service: str
    kept: int = 0
    """Events the table held already (its head before the restore)."""
    restored: int = 0
    """Events written by the restore."""
    from_archive: list[int] = field(default_factory=list)
    """Positions the topic lacked, taken from the audit archive or another copy of the log."""
    missing: list[int] = field(default_factory=list)
    """Positions found nowhere: unrecoverable from the log (nothing was written)."""
    broken: list[str] = field(default_factory=list)
    """Copies that disagree, links that do not hold: why nothing was written."""
    log_end: int = 0
    """The last position any copy of the log holds."""
    head: int = 0
    """The table's head after the restore."""
    signed: int | None = None
    """The position the last verified checkpoint signs."""
    report: verify.Report | None = None
    """The verification of the restored record (None when nothing was written)."""
    notes: list[str] = field(default_factory=list)
    """What holds, but the operator should know (a position restored that the topic still lacks)."""
    foreign: int = 0
    """Records on the topic of another service or deployment (skipped)."""
    from_bundles: list[int] = field(default_factory=list)
    """Positions no topic held, taken from a signed bundle."""

    @property
    def ok(self) -> bool:
        """Everything between the table's head and the log's end is back, the chain holds, a checkpoint verifies."""
        return (
            not self.missing
            and not self.broken
            and self.report is not None
            and self.report.ok
            and self.signed is not None
        )

    def lines(self) -> list[str]:
        """The report for the operator, one line each."""
        status = "restored and verified" if self.ok else "NOT restored"
        carried = f", {len(self.from_bundles)} of them from a bundle" if self.from_bundles else ""
        summary = (
            f"{self.service}: {status}: {self.kept} events kept, {self.restored} restored"
            f" ({len(self.from_archive)} from the archive{carried}),"
            f" head {self.head}, log ends at {self.log_end}"
        )
        lines = [summary]
        if self.signed is not None:
            lines.append(f"  last signed checkpoint verified: it signs position {self.signed}")
        elif self.report is not None:
            lines.append("  no signed checkpoint verifies: the chain's end cannot be trusted")
        lines += [f"  missing: position {p} is on no copy of the log nor in the archive" for p in self.missing]
        lines += [f"  broken: {problem}" for problem in self.broken]
        if self.report is not None:
            lines += [f"  position {f.position} [{f.check}] {f.problem}" for f in self.report.findings]
        lines += [f"  note: {note}" for note in self.notes]
        return lines


async def read_log(bootstrap: str, topic: str, *, batch: int = 5000) -> list[Any]:
    """Every record the topic holds now, from each partition's first kept offset (a truncated topic too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await partitions_of(consumer, topic)
        if found is None:
            msg = f"topic {topic} does not exist on {bootstrap}"
            raise LookupError(msg)
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return [record async for records in read_range(bootstrap, starts, ends, batch) for record in records]


@dataclass
class _Found:
    body: str
    envelope: Envelope


class _Collected:
    """Every copy of each position, the service's own only; a second copy must equal the first byte for byte."""

    def __init__(self, service: str, deployment: str, result: FromLog) -> None:
        self.service = service
        self.deployment = deployment
        self.result = result
        self.by_position: dict[int, _Found] = {}

    def add(self, body: str, where: str) -> int | None:
        """Keep one copy; its position (None when it is no event of this service and deployment)."""
        envelope = Envelope.from_bytes(body)
        if envelope.source != self.service or envelope.deployment != self.deployment:
            self.result.foreign += 1
            return None
        known = self.by_position.get(envelope.position)
        if known is None:
            self.by_position[envelope.position] = _Found(body, envelope)
        elif known.envelope.hash != envelope.hash or known.envelope.event_id != envelope.event_id:
            self.result.broken.append(
                f"position {envelope.position}: {where} holds event {envelope.event_id} (hash"
                f" {envelope.hash[:12]}...), another copy {known.envelope.event_id} ({known.envelope.hash[:12]}...)"
            )
        return envelope.position


def _row(found: _Found) -> tuple[Any, ...]:
    return event_row(found.envelope, found.body)


def event_row(e: Envelope, body: str) -> tuple[Any, ...]:
    """The event table's row of a published event, in `store.EVENT_COLUMNS` order, its body as published."""
    return (
        e.position,
        str(e.event_id),
        e.event_type,
        e.schema_version,
        e.stream_id,
        e.stream_version,
        str(e.cadre_id) if e.cadre_id else None,
        e.org_path,
        e.occurred_at,
        e.recorded_at,
        str(e.correlation_id),
        body,
        e.hash,
    )


async def _from_archive(archive: Pool, collected: _Collected, wanted: list[int], end: int) -> None:
    """Take from the audit archive the positions wanted, and any past the log's end."""
    rows = await archive.fetch(
        "SELECT position, body FROM archive WHERE source = $1 AND deployment = $2"
        " AND (position = ANY($3::bigint[]) OR position > $4) ORDER BY position",
        collected.service,
        collected.deployment,
        wanted,
        end,
    )
    for row in rows:
        if row["position"] not in collected.by_position:
            collected.add(row["body"], "the audit archive")


def _signed_positions(collected: _Collected, keys: Sequence[Ed25519PublicKey]) -> int:
    """The furthest position a checkpoint among the copies signs (with a trusted key); 0 when none does."""
    furthest = 0
    for found in collected.by_position.values():
        envelope = found.envelope
        if envelope.event_type != ChainCheckpointed.event_type:
            continue
        signed = ChainCheckpointed.model_validate(envelope.payload)
        if any(checkpoint.verify(key, envelope.source, envelope.deployment, signed) for key in keys):
            furthest = max(furthest, signed.position)
    return furthest


async def restore_from_log(
    pool: Pool,
    *,
    service: str,
    deployment: str,
    bootstrap: str,
    topic: str,
    public_keys: Sequence[Ed25519PublicKey],
    inline: Projection | None = None,
    archive: Pool | None = None,
    copies: Sequence[LogCopy] = (),
    bundles: Sequence[BundleCopy] = (),
) -> FromLog:
    """Fill the event table of `pool` (the owner's, schema applied, service stopped) from the log; see the module.

    `copies` are further topics holding the service's events (a parent level's mirrored copy),
    `bundles` signed bundles the deployment made; a bundle that does not verify with one of
    `public_keys` stops the restore (nothing written). The service's own topic may be empty or
    gone (a level rebuilt): then everything comes from the copies, and the relay publishes it again.
    """
    result = FromLog(service=service)
    collected = _Collected(service, deployment, result)
    heads, on_topic = await _gather(
        collected, bootstrap=bootstrap, topic=topic, copies=copies, bundles=bundles, public_keys=public_keys
    )
    async with pool.acquire() as conn:
        tip = await conn.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
        cursor = await conn.fetchrow("SELECT position, heads FROM relay_cursor WHERE topic = $1", topic)
    if tip is None:
        msg = "chain_head row missing: apply the service's schema first"
        raise RuntimeError(msg)
    result.kept = int(tip["position"])
    end = max(collected.by_position, default=0)
    signed = _signed_positions(collected, public_keys)
    wanted = [p for p in range(result.kept + 1, max(end, signed) + 1) if p not in collected.by_position]
    if archive is not None:
        await _from_archive(archive, collected, wanted, max(end, signed))
        end = max(collected.by_position, default=0)
        signed = max(signed, _signed_positions(collected, public_keys))
    result.from_archive = sorted(p for p in collected.by_position if p > result.kept and p not in on_topic)
    result.log_end = end
    result.missing = [p for p in range(result.kept + 1, max(end, signed) + 1) if p not in collected.by_position]
    rows = _chain(collected, result, start=result.kept, prev_hash=tip["hash"] or GENESIS_HASH)
    if result.missing or result.broken:
        result.head = result.kept
        log.warning("nothing restored", service=service, missing=len(result.missing), broken=len(result.broken))
        return result
    async with pool.acquire() as conn, conn.transaction():
        await _write(conn, rows, inline=inline)
        old_heads = orjson.loads(cursor["heads"]) if cursor is not None else {}
        for partition, position in old_heads.items():
            heads[int(partition)] = max(heads.get(int(partition), 0), int(position))
        published = max([*heads.values(), int(cursor["position"]) if cursor is not None else 0, 0])
        await conn.execute(
            "INSERT INTO relay_cursor (topic, position, heads) VALUES ($1, $2, $3::jsonb)"
            " ON CONFLICT (topic) DO UPDATE SET position = EXCLUDED.position, heads = EXCLUDED.heads",
            topic,
            published,
            orjson.dumps({str(k): v for k, v in sorted(heads.items())}).decode(),
        )
    result.restored = len(rows)
    result.head = result.kept + len(rows)
    await _verify(pool, result, public_keys=public_keys, bootstrap=bootstrap, topic=topic)
    log.info("restored from the log", service=service, restored=result.restored, ok=result.ok)
    return result


async def _gather(
    collected: _Collected,
    *,
    bootstrap: str,
    topic: str,
    copies: Sequence[LogCopy],
    bundles: Sequence[BundleCopy],
    public_keys: Sequence[Ed25519PublicKey],
) -> tuple[dict[int, int], set[int]]:
    """Every copy of the service's events: its own topic, the other topics, the bundles (verified first).

    Returns each partition's last position on the own topic, and the positions that topic holds.
    """
    result = collected.result
    heads: dict[int, int] = {}
    try:
        own = await read_log(bootstrap, topic)
    except LookupError:
        own = []
        result.notes.append(f"{topic} does not exist on {bootstrap}: every event comes from the other copies")
    for record in own:
        position = collected.add(record.value.decode(), f"{topic} (partition {record.partition})")
        header = dict(record.headers).get(POSITION_HEADER)
        if position is not None and header is not None:
            heads[record.partition] = max(heads.get(record.partition, 0), int(header))
    on_topic = set(collected.by_position)
    for copy in copies:
        for record in await read_log(copy.bootstrap, copy.topic):
            collected.add(record.value.decode(), copy.topic)
    on_copies = set(collected.by_position)
    for carried in bundles:
        bodies = carried.events(public_keys, deployment=collected.deployment, service=collected.service)
        if isinstance(bodies, str):
            result.broken.append(f"bundle {carried.name} does not verify, nothing of it is used: {bodies}")
            continue
        for body in bodies:
            collected.add(body, f"bundle {carried.name}")
    result.from_bundles = sorted(p for p in collected.by_position if p not in on_copies)
    return heads, on_topic


def _chain(collected: _Collected, result: FromLog, *, start: int, prev_hash: str) -> list[_Found]:
    """The rows after `start` in order, each checked as the next link; a broken link ends the list (and the restore)."""
    rows: list[_Found] = []
    for position in range(start + 1, result.log_end + 1):
        found = collected.by_position.get(position)
        if found is None:
            break
        e = found.envelope
        link = {
            "position": e.position,
            "stream_id": e.stream_id,
            "stream_version": e.stream_version,
            "event_id": e.event_id,
            "body": found.body,
            "hash": e.hash,
        }
        problem = row_problem(link, position, prev_hash)
        if problem is not None:
            result.broken.append(f"position {position}: {problem}")
            break
        rows.append(found)
        prev_hash = e.hash
    return rows


async def _write(conn: Conn, rows: list[_Found], *, inline: Projection | None) -> None:
    """The rows, the chain's head, the inline projection's and the stream owners' tables, in one transaction."""
    if not rows:
        return
    await conn.copy_records_to_table("events", records=[_row(r) for r in rows], columns=store.EVENT_COLUMNS)
    last = rows[-1].envelope
    await conn.execute(
        "UPDATE chain_head SET position = $1, hash = $2, recorded_at = $3 WHERE id = 1",
        last.position,
        last.hash,
        last.recorded_at,
    )
    for first in range(0, len(rows), _BATCH):
        recorded = [Recorded.from_envelope(r.envelope) for r in rows[first : first + _BATCH]]
        await ownership.record_handovers(
            conn, [([r.envelope for r in recorded], [r.event for r in recorded])], _recorded_at(recorded)
        )
        if inline is not None:
            mine = [r for r in recorded if inline.handles(r.envelope.event_type)]
            if mine:
                await inline.apply(conn, mine)


def _recorded_at(recorded: list[Recorded]) -> datetime:
    return recorded[-1].envelope.recorded_at


async def _verify(
    pool: Pool, result: FromLog, *, public_keys: Sequence[Ed25519PublicKey], bootstrap: str, topic: str
) -> None:
    """Verify the restored record end to end; what the archive filled in and the topic lacks is noted, not failed."""
    report = await verify.verify_service(
        service=result.service, pool=pool, public_keys=public_keys, bootstrap=bootstrap, topic=topic
    )
    filled = set(result.from_archive)
    expected = [
        f for f in report.findings if f.check == "topic" and f.position in filled and "not on the topic" in f.problem
    ]
    report.findings = [f for f in report.findings if f not in expected]
    lacking = sorted({f.position for f in expected})
    if len(lacking) > _NAMED:  # a topic made anew lacks them all: one line, not one per position
        result.notes.append(
            f"{len(lacking)} positions restored from other copies ({lacking[0]} to {lacking[-1]}) are not on {topic}"
        )
    else:
        result.notes += [
            f"position {p} restored from the archive or another copy; {topic} still lacks it" for p in lacking
        ]
    result.report = report
    signed = await pool.fetchval(
        "SELECT max((body::jsonb -> 'payload' ->> 'position')::bigint) FROM events WHERE event_type = $1",
        ChainCheckpointed.event_type,
    )
    if report.checkpoints_verified and signed is not None:
        result.signed = int(signed)
        if result.signed < result.head:
            result.notes.append(f"{result.head - result.signed} events after the last checkpoint are not yet signed")


async def prepare_schema(owner_dsn: str, tables: Sequence[str]) -> None:
    """The service's schema, as the service itself applies it at start (store, relay, watermarks, its tables)."""
    owner = await db.create_pool(owner_dsn, max_size=2)
    try:
        await db.apply_schema(owner, [*store.SCHEMA, *relay.SCHEMA, *subscriber.SCHEMA, *tables], secured=True)
    finally:
        await owner.close()


@dataclass
class Reconciled:
    """What followed a restore from the log: the projections rebuilt, the groups rewound."""

    rebuilt: dict[str, int] = field(default_factory=dict)
    """Projection → events read to rebuild it."""
    rewound: dict[str, int] = field(default_factory=dict)
    """Consumer group → partitions rewound."""


async def restore_service(
    spec: ServiceSpec,
    settings: ServiceSettings,
    *,
    public_keys: Sequence[Ed25519PublicKey] = (),
    archive_dsn: str | None = None,
    copies: Sequence[LogCopy] = (),
    topic: str | None = None,
    bundles: Sequence[BundleCopy] = (),
) -> tuple[FromLog, Reconciled | None]:
    """Restore `spec`'s event table from the log, then (when it verified) rebuild its projections and rewind its groups.

    The database is made when it is gone and the service's schema applied; the service's own
    checkpoint key is trusted besides `public_keys`. Nothing is rebuilt nor rewound when the
    restore did not verify: the service must not serve then. A topic that is gone (a level's
    Kafka rebuilt) is made again as the service makes it at start, with as many partitions as
    the first copy of it has (a mirrored copy keeps its source's), so that the relay's
    republication keys each stream to the same partition as before.
    """
    own_topic = topic or settings.own_topic
    await db.ensure_database(settings.owner_dsn)
    await prepare_schema(settings.owner_dsn, spec.tables)
    await _ensure_topic(settings, own_topic, copies)
    own_key = checkpoint.private_key(settings.checkpoint_signing_key.get_secret_value()).public_key()
    keys = [own_key, *public_keys]
    pool = await db.create_pool(settings.owner_dsn, max_size=2)
    archive = await db.create_pool(archive_dsn, max_size=2) if archive_dsn else None
    try:
        result = await restore_from_log(
            pool,
            service=spec.name,
            deployment=settings.deployment_id,
            bootstrap=settings.kafka_bootstrap_servers,
            topic=own_topic,
            public_keys=keys,
            inline=spec.inline,
            archive=archive,
            copies=copies,
            bundles=bundles,
        )
    finally:
        await pool.close()
        if archive is not None:
            await archive.close()
    if not result.ok:
        return result, None
    done = Reconciled()
    for subscription in spec.projections:
        projection = subscription.projection
        if projection is None or not getattr(projection, "tables", None):
            continue  # a reaction, or a view without tables of its own: the rewind below replays it
        rebuilt = await rebuild.rebuild(spec, settings, projection.name, keep_replaced=False)
        done.rebuilt[projection.name] = rebuilt.messages
    done.rewound = await rewind_consumers(settings.kafka_bootstrap_servers, spec.name)
    return result, done


async def partition_count(bootstrap: str, topic: str) -> int | None:
    """How many partitions `topic` has on `bootstrap`; None when it does not exist."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await partitions_of(consumer, topic, tries=20)
        return None if found is None else len(found)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def _ensure_topic(settings: ServiceSettings, topic: str, copies: Sequence[LogCopy]) -> None:
    """Make the service's own topic when it is gone, partitioned as its first copy is (else as configured)."""
    if await partition_count(settings.kafka_bootstrap_servers, topic) is not None:
        return
    partitions = settings.topic_partitions
    for copy in copies:
        counted = await partition_count(copy.bootstrap, copy.topic)
        if counted is not None:
            partitions = counted
            break
    spec = TopicSpec(name=topic, partitions=partitions, replication_factor=settings.topic_replication_factor)
    spec.config["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    await ensure_topics(settings.kafka_bootstrap_servers, [spec])
    log.info("topic made again", topic=topic, partitions=partitions)
