"""Offline links: signed bundles of events, carried where no network link exists (ADR 0016).

- **Acknowledge** (at the receiver): per chain `(deployment, source)`, the last position this
  deployment holds verified and its hash: the watermark the next bundle begins after.
- **Export** (at the sender): what the receiver lacks, read from this deployment's topics
  (retained forever). Upward, to the parent: everything this deployment has, its own events
  of every service and what it received from below (`<service>.events`, `<service>.received`).
  Downward, to a child: this deployment's sync events (directives). Each chain goes into its
  own JSON Lines file, the envelopes' exact bytes in position order; the manifest names each
  chain's first and last position, the hash before the first, the last hash and the count, and
  is signed with this deployment's key (runtime.bundle, the one format of signed bundles).
- **Import** (at the receiver): the whole bundle is verified before anything is applied (the
  signature against the exporter's pinned key, every file's digest, every event's hash, every
  chain continuous and counted, no gap before its first event here), then applied in ONE
  transaction through the same ingest as the online link (`Ingest.take(..., via="bundle")`),
  so the two paths mix: whatever arrived by either is a repeat on the other. A refused bundle
  changes nothing here (the refusal is a log line and a metric, not a row); a second import
  is all repeats; an import cut short is rolled back whole and simply run again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from contracts import topics
from contracts.envelope import GENESIS_HASH
from runtime import bundle, clock, logs
from runtime.db import Conn, Pool
from runtime.errors import CommandError, NotFoundError
from runtime.kafka import read_range, topic_ends
from runtime.settings import ServiceSettings
from runtime.topology import Topology
from services.sync.arrival import Arrival, Refusal, parse, speaks_for
from services.sync.ingest import Ingest

log = logs.get(__name__)

FORMAT: Final = bundle.SYNC_FORMAT
ACK_FORMAT: Final = "cadre-pool-sync-ack/1"
CHUNK: Final = 5000
"""Events per `Ingest.take` call (all of them in the one transaction of the import)."""
_ATTEMPTS: Final = 3

BUNDLES = Counter("cadre_sync_bundles", "Signed bundles exported and imported, by outcome", ["action", "outcome"])

Direction = Literal["up", "down"]
Chain = tuple[str, str]
"""(deployment, source)."""


class BundleRefusedError(CommandError):
    """A bundle that does not verify, whole: nothing of it was applied."""

    status = 422
    title = "Bundle refused"


class AckPosition(BaseModel):
    """How far the receiver holds one chain verified."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: str
    source: str
    position: int
    hash: str


class Ack(BaseModel):
    """What a deployment holds of every chain it received: the `--since` of the next bundle it is sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["cadre-pool-sync-ack/1"] = ACK_FORMAT
    deployment: str
    created_at: str
    chains: list[AckPosition]

    def since(self) -> dict[Chain, AckPosition]:
        """Chain → the position held."""
        return {(c.deployment, c.source): c for c in self.chains}


async def acknowledge(conn: Conn | Pool, deployment: str) -> Ack:
    """Per chain, the last position this deployment holds verified (read from the sync service's database)."""
    rows = await conn.fetch(
        "SELECT deployment, source, verified, verified_hash FROM chains ORDER BY deployment, source"
    )
    return Ack(
        deployment=deployment,
        created_at=clock.now().isoformat(),
        chains=[
            AckPosition(deployment=r["deployment"], source=r["source"], position=r["verified"], hash=r["verified_hash"])
            for r in rows
        ],
    )


def direction(topology: Topology, receiver: str) -> Direction:
    """Whether `receiver` is this deployment's parent (up) or one of its children (down)."""
    if receiver and receiver == topology.parent:
        return "up"
    if receiver in topology.children:
        return "down"
    msg = f"deployment {receiver} is not linked to {topology.deployment} (neither its parent nor a child)"
    raise NotFoundError(msg)


def exported_topics(settings: ServiceSettings, receiver: str) -> list[str]:
    """The topics a bundle for `receiver` is read from."""
    if direction(settings.topology, receiver) == "up":
        return [settings.topic(t) for t in (*topics.ALL, *topics.RECEIVED)]
    return [settings.topic(topics.SYNC)]


@dataclass(slots=True)
class _Held:
    """One chain as the topics hold it: position → (hash, prev_hash, envelope bytes)."""

    events: dict[int, tuple[str, str, bytes]] = field(default_factory=dict)
    forked: bool = False


async def export(
    settings: ServiceSettings,
    key: Ed25519PrivateKey,
    *,
    to: str,
    since: Ack | Mapping[Chain, int] | None = None,
    max_bytes: int | None = None,
) -> bytes:
    """A signed bundle of what `to` lacks: every chain this deployment has for it, after `since`.

    `since` is the receiver's acknowledgement (or chain → position); without it, everything.
    `max_bytes` bounds the files' size: chains are cut there (the manifest then says
    `complete: false`, and the next bundle goes on from the receiver's next acknowledgement).
    """
    topology = settings.topology
    way = direction(topology, to)
    after = _since(since, to)
    collector = _Collector(way, topology.deployment, to, after)
    bootstrap = settings.kafka_bootstrap_servers
    names = exported_topics(settings, to)
    ends = await topic_ends(bootstrap, names)
    async for records in read_range(bootstrap, {}, ends, CHUNK):
        for record in records:
            collector.hold(record.value or b"")
    held = collector.held
    files: dict[str, bytes] = {}
    chains: list[dict[str, Any]] = []
    budget = max_bytes
    complete = not any(h.forked for h in held.values())
    for chain in sorted(held, key=lambda c: _order(c, topology.deployment)):
        if budget is not None and budget <= 0:
            complete = False
            break
        entry, data = _chain_file(chain, held[chain], after, budget)
        if entry is None:
            complete = complete and not held[chain].events
            continue
        complete = complete and entry["last"] == max(held[chain].events)
        files[entry["file"]] = data
        chains.append(entry)
        if budget is not None:
            budget -= len(data)
    manifest = {
        "format": FORMAT,
        "exporter": topology.deployment,
        "receiver": to,
        "direction": way,
        "created_at": clock.now().isoformat(),
        "complete": complete,
        "chains": chains,
    }
    packed = await asyncio.to_thread(bundle.pack, manifest, files, key)
    BUNDLES.labels("export", "made").inc()
    log.info(
        "bundle exported",
        receiver=to,
        chains=len(chains),
        events=sum(c["count"] for c in chains),
        bytes=len(packed),
        complete=manifest["complete"],
    )
    return packed


def _since(since: Ack | Mapping[Chain, int] | None, receiver: str) -> dict[Chain, tuple[int, str | None]]:
    if since is None:
        return {}
    if isinstance(since, Ack):
        if since.deployment != receiver:
            msg = f"the acknowledgement comes from {since.deployment}, not from {receiver}"
            raise CommandError(msg)
        return {chain: (held.position, held.hash) for chain, held in since.since().items()}
    return {chain: (position, None) for chain, position in since.items()}


@dataclass
class _Collector:
    """Groups the records of the exported topics by their envelopes' own chain, keeping what the receiver lacks."""

    way: Direction
    me: str
    receiver: str
    after: Mapping[Chain, tuple[int, str | None]]
    held: dict[Chain, _Held] = field(default_factory=dict)

    def hold(self, value: bytes) -> None:
        """Keep one record if the receiver lacks it."""
        try:
            fields = orjson.loads(value)
            chain = (str(fields["deployment"]), str(fields["source"]))
            position = int(fields["position"])
            link = (str(fields["hash"]), str(fields["prev_hash"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("not an envelope on an exported topic: left out", bytes=len(value))
            return
        if chain[0] == self.receiver or (self.way == "down" and chain[0] != self.me):
            return  # the receiver's own events (come back from below), or not this deployment's to send down
        watermark, hash_there = self.after.get(chain, (0, None))
        if position < watermark:
            return
        held = self.held.setdefault(chain, _Held())
        if position == watermark:  # the receiver's last event: check that it holds the same one
            if hash_there is not None and hash_there != link[0]:
                log.error("the receiver holds another event at its watermark", chain=chain, position=position)
                held.forked = True
            return
        known = held.events.get(position)
        if known is None:
            held.events[position] = (*link, value)
        elif known[0] != link[0]:  # a re-sent record is the same event; a different one is a fork here
            log.error("two events at one position on this deployment's topics", chain=chain, position=position)
            held.forked = True


def _order(chain: Chain, me: str) -> tuple[int, str, str]:
    """This deployment's sync chain first (it vouches for the deployments below), then its own, then the rest."""
    deployment, source = chain
    return (0 if chain == (me, "sync") else 1 if deployment == me else 2, deployment, source)


def _chain_file(
    chain: Chain, held: _Held, after: Mapping[Chain, tuple[int, str | None]], budget: int | None
) -> tuple[dict[str, Any] | None, bytes]:
    """The manifest entry and file of one chain: its events from the watermark on, without a gap, within `budget`."""
    if held.forked or not held.events:
        return None, b""
    first = after.get(chain, (0, None))[0] + 1
    if first not in held.events:
        log.warning("this deployment lacks the receiver's next event: chain left out", chain=chain, position=first)
        return None, b""
    lines: list[bytes] = []
    size = 0
    position = first
    while position in held.events and (budget is None or size < budget):
        value = held.events[position][2]
        lines.append(value)
        size += len(value) + 1
        position += 1
    last = position - 1
    entry = {
        "deployment": chain[0],
        "source": chain[1],
        "first": first,
        "last": last,
        "count": last - first + 1,
        "prev_hash": held.events[first][1],
        "last_hash": held.events[last][0],
        "file": f"chains/{chain[0]}.{chain[1]}.jsonl",
    }
    return entry, b"\n".join(lines) + b"\n"


class Imported(BaseModel):
    """What one import did."""

    exporter: str
    chains: int = 0
    events: int = 0
    arrived: int = 0
    repeats: int = 0
    released: int = 0
    refused: list[str] = Field(default_factory=list)
    """Events the ingest refused although the bundle verified (a chain rewritten at its source: shown in /status)."""


Progress = Callable[[int, int], Awaitable[None]]
"""Called after each chunk is taken, with (events taken so far, events in all), inside the transaction."""


async def take(
    pool: Pool,
    ingest: Ingest,
    topology: Topology,
    data: bytes,
    *,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> Imported:
    """Verify `data` whole, then apply it in one transaction (raises `BundleRefusedError`, changing nothing)."""
    try:
        # Verifying is CPU work: in a thread, so that the service goes on answering meanwhile.
        verified = await asyncio.to_thread(verify, ingest, topology, data, max_bytes=max_bytes)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return await _apply(conn, ingest, topology, verified, progress)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _ATTEMPTS:
                    raise
                await asyncio.sleep(0.1 * attempt)  # the online link took the same events meanwhile: again
    except BundleRefusedError as refused:
        BUNDLES.labels("import", "refused").inc()
        log.warning("bundle refused", reason=refused.detail, **{k: str(v) for k, v in refused.extra.items()})
        raise
    raise AssertionError  # pragma: no cover - the loop returns or raises


class CheckedChain(BaseModel):
    """One chain of a bundle that verified, and how much of it this deployment lacks."""

    deployment: str
    source: str
    first: int
    last: int
    count: int
    new: int
    """Events of this chain that this deployment does not hold yet (the rest are repeats)."""


class Checked(BaseModel):
    """A bundle verified whole against this deployment, nothing applied: what importing it would bring."""

    exporter: str
    receiver: str
    created_at: str
    complete: bool
    """False when the exporter cut its chains at its size limit (the next bundle goes on from there)."""
    digest: str
    """SHA-256 of the bundle's bytes (hex): the one that was checked is the one to import."""
    events: int
    new: int
    chains: list[CheckedChain]


async def check(
    pool: Pool, ingest: Ingest, topology: Topology, data: bytes, *, max_bytes: int | None = None
) -> Checked:
    """Verify `data` whole as `take` does (raises `BundleRefusedError`), and apply nothing: what it would bring.

    The checks that need this deployment's state run in a transaction that is rolled back.
    """
    try:
        verified = await asyncio.to_thread(verify, ingest, topology, data, max_bytes=max_bytes)
        async with pool.acquire() as conn:
            undone = conn.transaction()
            await undone.start()
            try:
                await ingest.trust_pinned(conn)
                await _check_here(conn, topology, verified)
                chains = [await _checked_chain(conn, chain) for chain in verified.chains]
            finally:
                await undone.rollback()
    except BundleRefusedError as refused:
        BUNDLES.labels("check", "refused").inc()
        log.warning("bundle refused", reason=refused.detail, **{k: str(v) for k, v in refused.extra.items()})
        raise
    BUNDLES.labels("check", "verified").inc()
    mine = [c for c in chains if c.deployment != topology.deployment]
    return Checked(
        exporter=verified.exporter,
        receiver=topology.deployment,
        created_at=str(verified.manifest.get("created_at", "")),
        complete=bool(verified.manifest.get("complete", True)),
        digest=hashlib.sha256(data).hexdigest(),
        events=sum(c.count for c in mine),
        new=sum(c.new for c in mine),
        chains=chains,
    )


async def _checked_chain(conn: Conn, chain: Mapping[str, Any]) -> CheckedChain:
    held = await conn.fetchval(
        "SELECT count(*) FROM arrivals WHERE deployment = $1 AND source = $2 AND position BETWEEN $3 AND $4",
        chain["deployment"], chain["source"], chain["first"], chain["last"],
    )  # fmt: skip
    count = int(chain["count"])
    return CheckedChain(
        deployment=chain["deployment"], source=chain["source"], first=chain["first"], last=chain["last"],
        count=count, new=count - int(held or 0),
    )  # fmt: skip


@dataclass(frozen=True)
class Verified:
    """A bundle that verified whole (on its own: signature, digests, hashes, chains)."""

    exporter: str
    chains: list[dict[str, Any]]
    arrivals: list[Arrival]
    """Every event of the bundle, read, in the manifest's order of chains and each chain's order."""
    manifest: dict[str, Any] = field(default_factory=dict)


def verify(ingest: Ingest, topology: Topology, data: bytes, *, max_bytes: int | None = None) -> Verified:
    """Everything that can be checked of a bundle without this deployment's state; raises `BundleRefusedError`."""
    try:
        read = bundle.unpack(data, max_bytes=max_bytes)
    except bundle.BundleError as error:
        raise BundleRefusedError(str(error)) from None
    manifest = read.manifest
    if manifest.get("format") != FORMAT:
        msg = f"not a sync bundle (format {manifest.get('format')!r})"
        raise BundleRefusedError(msg)
    exporter = str(manifest.get("exporter"))
    pinned = ingest.pinned().get(exporter)
    if pinned is None or exporter == topology.deployment:
        msg = f"the bundle comes from {exporter}, which is not linked to {topology.deployment} with a pinned key"
        raise BundleRefusedError(msg, exporter=exporter)
    arrivals: list[Arrival] = []
    problems = bundle.problems(read, bundle.load_public_key(pinned[0]), read=_reader(arrivals))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleRefusedError(problems[0] + more, exporter=exporter, problems=problems)
    if manifest.get("receiver") != topology.deployment:
        msg = f"the bundle was made for {manifest.get('receiver')}, not for {topology.deployment}"
        raise BundleRefusedError(msg, exporter=exporter)
    return Verified(exporter, list(manifest["chains"]), arrivals, dict(manifest))


def _reader(kept: list[Arrival]) -> bundle.Reader:
    """Read each line with the ingest's own parser (hash included), keeping what it read for `Ingest.take`."""

    def read(line: bytes) -> Arrival | str:
        parsed = parse(line)
        if isinstance(parsed, Refusal):
            return parsed.reason
        kept.append(parsed)
        return parsed

    return read


async def _apply(
    conn: Conn, ingest: Ingest, topology: Topology, verified: Verified, progress: Progress | None
) -> Imported:
    await ingest.trust_pinned(conn)  # first: a chain of another child is then known not to be this one's to bring
    await _check_here(conn, topology, verified)
    imported = Imported(exporter=verified.exporter, chains=len(verified.chains))
    pairs = [(verified.exporter, a) for a in verified.arrivals if a.deployment != topology.deployment]
    imported.events = len(pairs)
    for start in range(0, len(pairs), CHUNK):
        taken = await ingest.take(conn, pairs[start : start + CHUNK], via="bundle")
        imported.arrived += taken.arrived
        imported.repeats += taken.repeats
        imported.released += taken.released
        imported.refused += [f"{r.deployment}/{r.source} position {r.position}: {r.reason}" for r in taken.refused]
        if progress is not None:
            await progress(min(start + CHUNK, len(pairs)), len(pairs))
    BUNDLES.labels("import", "applied").inc()
    log.info(
        "bundle imported",
        exporter=verified.exporter,
        events=imported.events,
        arrived=imported.arrived,
        repeats=imported.repeats,
        released=imported.released,
        refused=len(imported.refused),
    )
    return imported


async def _check_here(conn: Conn, topology: Topology, verified: Verified) -> None:
    """What only this deployment can tell: the exporter may bring each chain, and none begins after a gap."""
    exporter = verified.exporter
    rows = await conn.fetch("SELECT deployment, public_key, vouched_by FROM trusted")
    trusted = {r["deployment"]: (r["public_key"], r["vouched_by"]) for r in rows}
    mine = [c for c in verified.chains if c["deployment"] != topology.deployment]
    for chain in mine:
        deployment = chain["deployment"]
        parent = exporter == topology.parent
        if (parent and deployment != exporter) or (
            not parent and deployment in trusted and not speaks_for(exporter, deployment, trusted)
        ):
            msg = f"{exporter} may not pass on events of {deployment}"
            raise BundleRefusedError(msg, exporter=exporter)
    held = await conn.fetch(
        "SELECT c.deployment, c.source, a.hash, coalesce(h.verified, 0) AS verified"
        " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS c(deployment, source, position)"
        " LEFT JOIN arrivals a USING (deployment, source, position)"
        " LEFT JOIN chains h ON h.deployment = c.deployment AND h.source = c.source",
        [c["deployment"] for c in mine],
        [c["source"] for c in mine],
        [c["first"] - 1 for c in mine],
    )
    here = {(r["deployment"], r["source"]): (r["hash"], r["verified"]) for r in held}
    for chain in mine:
        name = f"{chain['deployment']}/{chain['source']}"
        before, verified_here = here[chain["deployment"], chain["source"]]
        if chain["first"] == 1:
            before = GENESIS_HASH
        if before is None:
            msg = (
                f"a gap before the first event of chain {name}: the bundle begins at position {chain['first']},"
                f" this deployment holds it up to {verified_here}"
            )
            raise BundleRefusedError(msg, exporter=exporter, chain=name)
        if before != chain["prev_hash"]:
            msg = (
                f"chain {name} does not go on from what this deployment holds: the event at position"
                f" {chain['first'] - 1} here is not the one the bundle's first event follows"
            )
            raise BundleRefusedError(msg, exporter=exporter, chain=name)
