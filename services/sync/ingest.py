"""Trust on arrival: every event from another deployment is checked before anything here uses it.

Events arrive from the deployments linked to this one: from each child (its own events and
what it received from below, copied by MirrorMaker 2 onto `<child>.<topic>`), from the
parent (its sync events: directives), and in signed bundles. Whatever the path, each goes
through `Ingest.take` in one transaction:

1. **Arrival.** The envelope's hash must cover its body; an event from a deployment this
   link may not speak for is refused. `(deployment, source, position)` is its place: a copy
   of an event already here is dropped; a *different* event at a taken place is a fork:
   refused, and that chain stops.
2. **Verification,** per chain `(deployment, source)`, strictly in position order from the
   last verified event: each event's `prev_hash` must be the hash before it (a gap waits for
   the missing event; a break stops the chain, refused and shown), and every
   `ChainCheckpointed` must carry a valid signature of that deployment's pinned key over the
   very hash the chain has at the signed position.
3. **Release.** Events up to the last verified signed checkpoint are released, in chain
   order, into the `released` outbox, whose relays pass them on as `<service>.received`
   to this deployment's services. Nothing unsigned reaches a projection.

Keys: the parent's and the children's are pinned in settings; a child vouches for the
deployments below it with a signed `DeploymentLinked` event, which is trusted once released.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.envelope import GENESIS_HASH
from contracts.sync import DeploymentLinked
from runtime import clock, logs
from runtime.db import Conn, system_only
from runtime.topology import Topology
from services.sync.arrival import (
    CHECKPOINT,
    Arrival,
    Chain,
    Refusal,
    Trust,
    follows,
    parse,
    public_key,
    signed_checkpoint,
    speaks_for,
    take_checkpoint,
)

log = logs.get(__name__)

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS trusted (
        deployment  text PRIMARY KEY,
        public_key  text NOT NULL,
        root        text NOT NULL,
        vouched_by  text NOT NULL,
        since       timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS arrivals (
        deployment  text NOT NULL,
        source      text NOT NULL,
        position    bigint NOT NULL,
        event_id    uuid NOT NULL,
        event_type  text NOT NULL,
        prev_hash   text NOT NULL,
        hash        text NOT NULL,
        key         text NOT NULL,
        body        text NOT NULL,
        link        text NOT NULL,
        via         text NOT NULL,
        recorded_at timestamptz NOT NULL,
        arrived_at  timestamptz NOT NULL,
        PRIMARY KEY (deployment, source, position)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS chains (
        deployment     text NOT NULL,
        source         text NOT NULL,
        verified       bigint NOT NULL DEFAULT 0,
        verified_hash  text NOT NULL,
        signed         bigint NOT NULL DEFAULT 0,
        released       bigint NOT NULL DEFAULT 0,
        broken         text,
        last_heard     timestamptz,
        PRIMARY KEY (deployment, source)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS refusals (
        id          bigserial PRIMARY KEY,
        deployment  text,
        source      text,
        position    bigint,
        event_id    uuid,
        link        text NOT NULL,
        via         text NOT NULL,
        reason      text NOT NULL,
        refused_at  timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS released (
        seq         bigint PRIMARY KEY,
        deployment  text NOT NULL,
        source      text NOT NULL,
        position    bigint NOT NULL,
        key         text NOT NULL,
        event_id    uuid NOT NULL,
        event_type  text NOT NULL,
        body        text NOT NULL,
        UNIQUE (deployment, source, position)
    )
    """,
    "CREATE INDEX IF NOT EXISTS released_by_source ON released (source, seq)",
    """
    CREATE TABLE IF NOT EXISTS release_head (
        id   int PRIMARY KEY CHECK (id = 1),
        seq  bigint NOT NULL
    )
    """,
    "INSERT INTO release_head VALUES (1, 0) ON CONFLICT DO NOTHING",
    # The service's own machinery: no actor reads it (runtime.db; /status reads it as the system).
    *system_only("trusted", "arrivals", "chains", "refusals", "released", "release_head"),
)

RELEASED_CHANNEL: Final = "events_released"
"""Notified on every release: the relays of `<service>.received` wake up."""

_PAGE: Final = 5000

_LINKED: Final = DeploymentLinked.event_type


@dataclass
class Taken:
    """What one call of `Ingest.take` did."""

    arrived: int = 0
    repeats: int = 0
    echoes: int = 0
    refused: list[Refusal] = field(default_factory=list)
    released: int = 0


class Ingest:
    """Arrival, verification and release, in the caller's transaction (see the module)."""

    def __init__(self, topology: Topology, parent_key: str) -> None:
        self._topology = topology
        self._parent_key = parent_key

    def pinned(self) -> dict[str, tuple[str, str]]:
        """Deployment → (public key, root) pinned in settings: the children, and the parent."""
        pinned = {name: (child.public_key, child.root) for name, child in self._topology.children.items()}
        if self._topology.parent and self._parent_key:
            pinned[self._topology.parent] = (self._parent_key, "")
        return pinned

    async def trust_pinned(self, conn: Conn) -> None:
        """Record the keys pinned in settings (a changed setting replaces the key)."""
        now = clock.now()
        await conn.executemany(
            "INSERT INTO trusted (deployment, public_key, root, vouched_by, since) VALUES ($1, $2, $3, 'settings', $4)"
            " ON CONFLICT (deployment) DO UPDATE SET public_key = EXCLUDED.public_key, root = EXCLUDED.root,"
            " vouched_by = 'settings', since = EXCLUDED.since WHERE trusted.public_key <> EXCLUDED.public_key",
            [(name, key, root, now) for name, (key, root) in self.pinned().items()],
        )

    async def take(self, conn: Conn, arrivals: Iterable[tuple[str, bytes | str | Arrival]], *, via: str) -> Taken:
        """Take events that arrived over `link` (the deployment whose topic or bundle brought them).

        `arrivals` is (link, envelope bytes) pairs, or (link, `Arrival`) for bytes `parse` already
        read (a bundle's, verified whole first); `via` says how (`link`, `bundle`). Runs in the
        caller's transaction; verification and release happen before it returns.
        """
        taken = Taken()
        now = clock.now()
        await self.trust_pinned(conn)  # the keys of this process's settings, before anything is checked with them
        touched: set[tuple[str, str]] = set()
        fresh: list[tuple[str, Arrival]] = []
        trusted = await _trusted(conn)
        for link, data in arrivals:
            parsed = data if isinstance(data, Arrival) else parse(data)
            if not isinstance(parsed, Refusal) and parsed.deployment == self._topology.deployment:
                taken.echoes += 1  # this deployment's own events, come back through a child: nothing to do
                continue
            if not isinstance(parsed, Refusal) and not self._may_bring(link, parsed.deployment, trusted):
                parsed = Refusal(
                    f"{link} may not pass on events of {parsed.deployment}",
                    parsed.deployment,
                    parsed.source,
                    parsed.position,
                    parsed.event_id,
                )
            if isinstance(parsed, Refusal):
                taken.refused.append(parsed)
                await self._refuse(conn, parsed, link, via, now)
                continue
            fresh.append((link, parsed))
        unique: dict[tuple[str, str, int], tuple[str, Arrival]] = {}
        later: list[tuple[str, Arrival]] = []  # a second copy in the same batch: compared once the first is in
        for link, arrival in fresh:
            unique.setdefault((arrival.deployment, arrival.source, arrival.position), (link, arrival))
            if unique[(arrival.deployment, arrival.source, arrival.position)][1] is not arrival:
                later.append((link, arrival))
        fresh = list(unique.values())
        if fresh:
            inserted = await conn.fetch(
                "INSERT INTO arrivals (deployment, source, position, event_id, event_type, prev_hash, hash, key, body,"
                " link, via, recorded_at, arrived_at)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::text[],"
                " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[])"
                " ON CONFLICT DO NOTHING RETURNING deployment, source, position",
                *_columns(fresh, via, now),
            )
            new = {(r["deployment"], r["source"], r["position"]) for r in inserted}
            taken.arrived = len(new)
            others = [(link, a) for link, a in fresh if (a.deployment, a.source, a.position) not in new] + later
            if others:
                await self._compare(conn, others, via, now, taken)
            touched = {(a.deployment, a.source) for _, a in fresh}
            await conn.executemany(
                "INSERT INTO chains (deployment, source, verified_hash, last_heard) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (deployment, source) DO UPDATE SET last_heard = EXCLUDED.last_heard",
                [(d, s, GENESIS_HASH, now) for d, s in touched],
            )
        taken.released = await self.advance(conn, touched, now, taken)
        return taken

    def _may_bring(self, link: str, deployment: str, trusted: Trust) -> bool:
        """Whether `link` may bring events of `deployment` (a deployment not known yet waits for its voucher)."""
        if link == self._topology.parent:
            return deployment == link  # the parent speaks for itself only
        if link not in self._topology.children:
            return False
        return deployment not in trusted or speaks_for(link, deployment, trusted)

    async def _compare(
        self, conn: Conn, others: list[tuple[str, Arrival]], via: str, now: datetime, taken: Taken
    ) -> None:
        """Arrivals whose place is taken: a copy (dropped) or a fork (refused, the chain stops)."""
        rows = await conn.fetch(
            "SELECT deployment, source, position, hash FROM arrivals WHERE (deployment, source, position) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))",
            [a.deployment for _, a in others],
            [a.source for _, a in others],
            [a.position for _, a in others],
        )
        held = {(r["deployment"], r["source"], r["position"]): r["hash"] for r in rows}
        for link, arrival in others:
            place = (arrival.deployment, arrival.source, arrival.position)
            if held.get(place) == arrival.hash:
                taken.repeats += 1
                continue
            reason = f"a different event at position {arrival.position}: the chain was rewritten"
            refusal = Refusal(reason, *place, arrival.event_id)
            taken.refused.append(refusal)
            await self._refuse(conn, refusal, link, via, now)
            await self._break(conn, arrival.deployment, arrival.source, reason)

    async def advance(
        self, conn: Conn, touched: set[tuple[str, str]], now: datetime, taken: Taken | None = None
    ) -> int:
        """Verify and release what can be, chain by chain, until nothing moves (a released link may unlock more)."""
        released = 0
        pending = set(touched)
        # Chains that waited for a key may move once a deployment is vouched for.
        waiting = {
            (r["deployment"], r["source"])
            for r in await conn.fetch(
                "SELECT c.deployment, c.source FROM chains c LEFT JOIN trusted t USING (deployment)"
                " WHERE t.deployment IS NULL AND c.broken IS NULL"
            )
        }
        while pending:
            trusted = await _trusted(conn)
            newly_trusted: set[str] = set()
            for deployment, source in sorted(pending):
                if deployment not in trusted:
                    continue
                chain = await self._verify(conn, deployment, source, trusted=trusted, now=now, taken=taken)
                released_here, linked = await self._release(conn, chain, now)
                released += released_here
                newly_trusted |= linked
            pending = {(d, s) for d, s in waiting if d in newly_trusted}
            waiting -= pending
        return released

    async def _verify(
        self, conn: Conn, deployment: str, source: str, *, trusted: Trust, now: datetime, taken: Taken | None
    ) -> Chain:
        chain = Chain(deployment, source)
        row = await conn.fetchrow(
            "SELECT verified, verified_hash, signed, released, broken FROM chains"
            " WHERE deployment = $1 AND source = $2 FOR UPDATE",
            deployment,
            source,
        )
        if row is None or row["broken"]:
            chain.broken = row["broken"] if row is not None else None
            return chain
        chain.verified, chain.verified_hash = row["verified"], row["verified_hash"]
        chain.signed, chain.released = row["signed"], row["released"]
        key = public_key(trusted[deployment][0])
        while True:
            rows = await conn.fetch(
                "SELECT position, event_id, event_type, prev_hash, hash, link, via,"
                " CASE WHEN event_type = $5 THEN body END AS body FROM arrivals"
                " WHERE deployment = $1 AND source = $2 AND position > $3 ORDER BY position LIMIT $4",
                deployment,
                source,
                chain.verified,
                _PAGE,
                CHECKPOINT,  # only a checkpoint's body is read here
            )
            moved = await self._walk(conn, chain, rows, key, trusted=trusted, now=now, taken=taken)
            if chain.broken or not moved or len(rows) < _PAGE:
                break
        await conn.execute(
            "UPDATE chains SET verified = $3, verified_hash = $4, signed = $5, broken = $6"
            " WHERE deployment = $1 AND source = $2",
            deployment,
            source,
            chain.verified,
            chain.verified_hash,
            chain.signed,
            chain.broken,
        )
        if chain.broken:
            log.error("chain refused", deployment=deployment, source=source, problem=chain.broken)
        return chain

    async def _walk(
        self,
        conn: Conn,
        chain: Chain,
        rows: Sequence[Any],
        key: Ed25519PublicKey,
        *,
        trusted: Trust,
        now: datetime,
        taken: Taken | None,
    ) -> bool:
        """Verify `rows` (in position order) onto the chain; whether it moved. Stops at a gap or a break."""
        moved = False
        for arrival in rows:
            if arrival["position"] != chain.verified + 1:
                return moved  # a gap: wait for the missing event
            place = (chain.deployment, chain.source, arrival["position"], str(arrival["event_id"]))
            if not speaks_for(arrival["link"], chain.deployment, trusted):
                # Brought by a link that may not speak for this deployment: dropped, its place freed.
                refusal = Refusal(f"{arrival['link']} may not pass on events of {chain.deployment}", *place)
                await self._refuse(conn, refusal, arrival["link"], arrival["via"], now)
                await conn.execute(
                    "DELETE FROM arrivals WHERE deployment = $1 AND source = $2 AND position = $3", *place[:3]
                )
                if taken is not None:
                    taken.refused.append(refusal)
                return moved
            problem = await self._link_problem(conn, chain, arrival, key)
            if problem is not None:
                refusal = Refusal(problem, *place)
                if taken is not None:
                    taken.refused.append(refusal)
                await self._refuse(conn, refusal, arrival["link"], arrival["via"], now)
                chain.broken = problem
                return moved
            chain.verified += 1
            chain.verified_hash = arrival["hash"]
            chain.hashes[chain.verified] = arrival["hash"]
            moved = True
        return moved

    async def _link_problem(self, conn: Conn, chain: Chain, arrival: Any, key: Ed25519PublicKey) -> str | None:
        """Why `arrival` cannot follow the verified chain (None: it can; a valid checkpoint moves `signed`)."""
        problem = follows(chain, arrival["position"], arrival["prev_hash"])
        if problem is not None or arrival["event_type"] != CHECKPOINT:
            return problem
        return await self._checkpoint_problem(conn, chain, arrival, key)

    async def _checkpoint_problem(self, conn: Conn, chain: Chain, arrival: Any, key: Ed25519PublicKey) -> str | None:
        """Why a checkpoint is not one the chain can take: a bad signature, or signing another chain."""
        checkpoint = signed_checkpoint(chain, arrival["position"], arrival["body"], key)
        if isinstance(checkpoint, str):
            return checkpoint
        signed_hash = chain.hashes.get(checkpoint.position)
        if signed_hash is None:
            signed_hash = await conn.fetchval(
                "SELECT hash FROM arrivals WHERE deployment = $1 AND source = $2 AND position = $3",
                chain.deployment,
                chain.source,
                checkpoint.position,
            )
        return take_checkpoint(chain, arrival["position"], checkpoint, signed_hash)

    async def _release(self, conn: Conn, chain: Chain, now: datetime) -> tuple[int, set[str]]:
        """Release the verified events up to the last signed checkpoint; trust the deployments they vouch for."""
        if chain.signed <= chain.released:
            return 0, set()
        head = await conn.fetchval("SELECT seq FROM release_head WHERE id = 1 FOR UPDATE")
        rows = await conn.fetch(
            "INSERT INTO released (seq, deployment, source, position, key, event_id, event_type, body)"
            " SELECT $5 + row_number() OVER (ORDER BY position), deployment, source, position, key, event_id,"
            " event_type, body FROM arrivals"
            " WHERE deployment = $1 AND source = $2 AND position > $3 AND position <= $4 ORDER BY position"
            " RETURNING seq, event_type, body",
            chain.deployment,
            chain.source,
            chain.released,
            chain.signed,
            head,
        )
        last = head + len(rows)
        await conn.execute("UPDATE release_head SET seq = $1 WHERE id = 1", last)
        await conn.execute(
            "UPDATE chains SET released = $3 WHERE deployment = $1 AND source = $2",
            chain.deployment,
            chain.source,
            chain.signed,
        )
        await conn.execute("SELECT pg_notify($1, $2)", RELEASED_CHANNEL, str(last))
        links = [r["body"] for r in rows if r["event_type"] == _LINKED]
        return len(rows), await self._vouched(conn, chain.deployment, links, now)

    async def _vouched(self, conn: Conn, voucher: str, bodies: Sequence[str], now: datetime) -> set[str]:
        """Trust the deployments a released `DeploymentLinked` of `voucher` names as its children."""
        linked: set[str] = set()
        for body in bodies:
            event = DeploymentLinked.model_validate(orjson.loads(body)["payload"])
            if event.parent != voucher or event.deployment == self._topology.deployment:
                continue
            if event.deployment in self.pinned():
                continue  # a key pinned in this deployment's own settings wins
            await conn.execute(
                "INSERT INTO trusted (deployment, public_key, root, vouched_by, since) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (deployment) DO UPDATE SET public_key = EXCLUDED.public_key, root = EXCLUDED.root,"
                " since = EXCLUDED.since WHERE trusted.vouched_by = EXCLUDED.vouched_by",
                event.deployment,
                event.public_key,
                event.root,
                voucher,
                now,
            )
            linked.add(event.deployment)
        return linked

    async def _refuse(self, conn: Conn, refusal: Refusal, link: str, via: str, now: datetime) -> None:
        await conn.execute(
            "INSERT INTO refusals (deployment, source, position, event_id, link, via, reason, refused_at)"
            " VALUES ($1, $2, $3, $4::uuid, $5, $6, $7, $8)",
            refusal.deployment,
            refusal.source,
            refusal.position,
            refusal.event_id,
            link,
            via,
            refusal.reason,
            now,
        )

    async def _break(self, conn: Conn, deployment: str, source: str, reason: str) -> None:
        await conn.execute(
            "UPDATE chains SET broken = $3 WHERE deployment = $1 AND source = $2 AND broken IS NULL",
            deployment,
            source,
            reason,
        )


async def _trusted(conn: Conn) -> Trust:
    rows = await conn.fetch("SELECT deployment, public_key, vouched_by FROM trusted")
    return {r["deployment"]: (r["public_key"], r["vouched_by"]) for r in rows}


def _columns(fresh: list[tuple[str, Arrival]], via: str, now: datetime) -> list[list[Any]]:
    return [
        [a.deployment for _, a in fresh],
        [a.source for _, a in fresh],
        [a.position for _, a in fresh],
        [a.event_id for _, a in fresh],
        [a.event_type for _, a in fresh],
        [a.prev_hash for _, a in fresh],
        [a.hash for _, a in fresh],
        [a.key for _, a in fresh],
        [a.body for _, a in fresh],
        [link for link, _ in fresh],
        [via for _ in fresh],
        [a.recorded_at for _, a in fresh],
        [now for _ in fresh],
    ]
