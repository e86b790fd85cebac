"""The sync service's ingest against real PostgreSQL: what arrives from another deployment is verified first.

The county's events are recorded by a real event store (its own database) and handed to
the city's ingest as MirrorMaker or a bundle would hand them: in any order, twice,
tampered with. Only what a valid signed checkpoint covers is released, in chain order.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import pytest

from contracts.envelope import Actor, Role, canonical_json, chain_hash, uuid7
from contracts.registry import CadreNominated
from contracts.sync import DeploymentLinked
from runtime import checkpoint, db, store
from runtime.context import CommandContext
from runtime.topology import Child, Topology
from services.sync import ingest
from tests import support
from tests.support import DatabaseFactory

COUNTY_SEED = base64.b64encode(os.urandom(32)).decode()
TOWN_SEED = base64.b64encode(os.urandom(32)).decode()
CITY = Topology(
    deployment="city",
    root="cn.qs.bh",
    parent="province",
    children={
        "county": Child(root="cn.qs.bh.ly", public_key=checkpoint.public_key_b64(COUNTY_SEED)),
        "hexi": Child(root="cn.qs.bh.hx", public_key=checkpoint.public_key_b64(TOWN_SEED)),
    },
)


@dataclass
class Side:
    """A deployment's store (the county) and the city's database with the ingest."""

    county: store.EventStore
    county_pool: db.Pool
    city: db.Pool
    ingest: ingest.Ingest


@pytest.fixture
async def side(database: DatabaseFactory) -> AsyncIterator[Side]:
    county_pool = await db.create_pool(await database("county"))
    await db.apply_schema(county_pool, store.SCHEMA)
    city = await db.create_pool(await database("city"))
    await db.apply_schema(city, ingest.SCHEMA)
    county = store.EventStore(county_pool, source="registry", deployment="county")
    the_ingest = ingest.Ingest(CITY, parent_key="")
    async with city.acquire() as conn:
        await the_ingest.trust_pinned(conn)
    yield Side(county, county_pool, city, the_ingest)
    await county.close()
    await county_pool.close()
    await city.close()


def nominated(name: str) -> CadreNominated:
    return support.nominated(full_name=name, birth_date=date(1990, 5, 1), grassroots_months=24)


async def append(es: store.EventStore, event: CadreNominated, org_path: str) -> None:
    ctx = CommandContext(actor=Actor(user="u", org_path=org_path, role=Role.ORGANIZER), correlation_id=uuid7())
    await es.append(f"cadre-{event.cadre_id}", 0, [event], ctx=ctx, org_path=org_path, cadre_id=event.cadre_id)


async def record(side: Side, *names: str, signed: bool = True, seed: str = COUNTY_SEED) -> list[bytes]:
    """Nominate `names` at the county (one event each), sign the head; every event's bytes so far, in order."""
    ctx = CommandContext(actor=Actor(user="u", org_path="cn.qs.bh.ly", role=Role.ORGANIZER), correlation_id=uuid7())
    for name in names:
        event = nominated(name)
        await side.county.append(
            f"cadre-{event.cadre_id}", 0, [event], ctx=ctx, org_path="cn.qs.bh.ly", cadre_id=event.cadre_id
        )
    if signed:
        await checkpoint.Checkpointer(side.county_pool, side.county, checkpoint.private_key(seed)).checkpoint()
    rows = await side.county_pool.fetch("SELECT body FROM events ORDER BY position")
    return [row["body"].encode() for row in rows]


async def take(side: Side, bodies: list[bytes], link: str = "county") -> ingest.Taken:
    async with side.city.acquire() as conn, conn.transaction():
        return await side.ingest.take(conn, [(link, body) for body in bodies], via="link")


async def released(side: Side) -> list[int]:
    return [r["position"] for r in await side.city.fetch("SELECT position FROM released ORDER BY seq")]


async def chain(side: Side) -> Any:
    return await side.city.fetchrow("SELECT * FROM chains WHERE deployment = 'county' AND source = 'registry'")


async def test_only_what_a_signed_checkpoint_covers_is_released_in_order_once(side: Side) -> None:
    bodies = await record(side, "A", "B", "C")  # positions 1-3, the checkpoint at 4 signs 3
    unsigned = await record(side, "D", signed=False)  # position 5: not signed yet
    # Out of order and twice: nothing is released before the gap is filled.
    taken = await take(side, [bodies[2], bodies[3], bodies[2]])
    assert (taken.arrived, taken.repeats, taken.released) == (2, 1, 0)
    assert await released(side) == []
    taken = await take(side, [unsigned[4], bodies[0], bodies[1], bodies[0]])
    assert taken.released == 4  # 1-3 and the checkpoint that signs them (its signature is its content)
    assert await released(side) == [1, 2, 3, 4]  # event 5 waits for the next signature
    later = await record(side, "E")  # 6, signed at 7
    await take(side, later[5:])
    assert await released(side) == [1, 2, 3, 4, 5, 6, 7]
    state = await chain(side)
    assert (state["verified"], state["signed"], state["released"], state["broken"]) == (7, 7, 7, None)
    # The released events are the county's bytes, unchanged.
    rows = await side.city.fetch("SELECT body FROM released ORDER BY seq")
    assert [r["body"].encode() for r in rows] == later


async def test_a_changed_body_a_fork_and_a_foreign_link_are_refused(side: Side) -> None:
    bodies = await record(side, "A", "B")
    fields = orjson.loads(bodies[1])
    tampered = canonical_json({**fields, "payload": {**fields["payload"], "full_name": "Mallory"}})
    taken = await take(side, [tampered])
    assert [r.reason for r in taken.refused] == ["body does not match its hash"]
    assert await side.city.fetchval("SELECT count(*) FROM arrivals") == 0
    # A sibling's events brought by the county: the county may not speak for it.
    sibling = {**fields, "deployment": "hexi"}
    sibling.pop("hash")
    sibling["hash"] = chain_hash(sibling)
    assert "may not pass on" in (await take(side, [canonical_json(sibling)])).refused[0].reason
    # A different event, correctly hashed, at a place already taken: a fork. The chain stops.
    await take(side, bodies)
    fields.pop("hash")
    forged = {**fields, "payload": {**fields["payload"], "full_name": "Mallory"}}
    forged["hash"] = chain_hash(forged)
    taken = await take(side, [canonical_json(forged)])
    assert "the chain was rewritten" in taken.refused[0].reason
    assert (await chain(side))["broken"] is not None
    refusals = await side.city.fetchval("SELECT count(*) FROM refusals")
    assert refusals == 3


async def test_a_rewritten_chain_is_caught_by_its_signed_checkpoint(side: Side) -> None:
    bodies = await record(side, "A", "B", "C")
    await take(side, bodies[:2])  # the city holds 1 and 2 (not yet released: nothing signed them)
    # The county rewrites event 2 and re-hashes everything after it, chain head included, and signs again.
    rows = await side.county_pool.fetch("SELECT position, body FROM events ORDER BY position")
    rewritten: list[bytes] = []
    prev = orjson.loads(rows[0]["body"])["hash"]
    for row in rows[1:3]:
        fields = orjson.loads(row["body"])
        fields.pop("hash")
        if row["position"] == 2:
            fields["payload"]["full_name"] = "Rewritten"
        fields["prev_hash"] = prev
        fields["hash"] = prev = chain_hash(fields)
        rewritten.append(canonical_json(fields))
    signature = checkpoint.sign(checkpoint.private_key(COUNTY_SEED), "registry", "county", 3, prev)
    head = orjson.loads(rows[3]["body"])
    head.pop("hash")
    head.update(payload=signature.model_dump(mode="json"), prev_hash=prev)
    head["hash"] = chain_hash(head)
    taken = await take(side, [*rewritten, canonical_json(head)])
    assert "the chain was rewritten" in taken.refused[0].reason
    assert await released(side) == []
    # Had the city not held event 2 yet, the signed checkpoint still names a chain the city does not have.
    assert (await chain(side))["broken"] is not None


async def test_a_checkpoint_signed_with_another_key_stops_the_chain(side: Side) -> None:
    bodies = await record(side, "A", seed=TOWN_SEED)
    taken = await take(side, bodies)
    assert "is not signed by county's key" in taken.refused[0].reason
    assert await released(side) == []


async def test_a_child_vouches_for_the_deployment_below_it(side: Side, database: DatabaseFactory) -> None:
    # The township's events come through the county; the city knows the township's key only from the county.
    town_pool = await db.create_pool(await database("town"))
    await db.apply_schema(town_pool, store.SCHEMA)
    town = store.EventStore(town_pool, source="registry", deployment="town")
    try:
        ctx = CommandContext(
            actor=Actor(user="u", org_path="cn.qs.bh.ly.x", role=Role.ORGANIZER), correlation_id=uuid7()
        )
        event = nominated("T")
        await town.append(
            f"cadre-{event.cadre_id}", 0, [event], ctx=ctx, org_path="cn.qs.bh.ly.x", cadre_id=event.cadre_id
        )
        await checkpoint.Checkpointer(town_pool, town, checkpoint.private_key(TOWN_SEED)).checkpoint()
        town_bodies = [r["body"].encode() for r in await town_pool.fetch("SELECT body FROM events ORDER BY position")]
    finally:
        await town.close()
        await town_pool.close()
    taken = await take(side, town_bodies)
    assert taken.arrived == 2  # held: nobody vouched for the township yet
    assert await released(side) == []
    sync = store.EventStore(side.county_pool, source="sync", deployment="county")
    link = DeploymentLinked(
        deployment="town", root="cn.qs.bh.ly.x", public_key=checkpoint.public_key_b64(TOWN_SEED), parent="county"
    )
    ctx = CommandContext(
        actor=Actor(user="system:sync", org_path="cn.qs.bh.ly", role=Role.SYSTEM), correlation_id=uuid7()
    )
    await sync.append("link-town", 0, [link], ctx=ctx, org_path="cn.qs.bh.ly")
    await checkpoint.Checkpointer(side.county_pool, sync, checkpoint.private_key(COUNTY_SEED)).checkpoint()
    await sync.close()
    linked = [r["body"].encode() for r in await side.county_pool.fetch("SELECT body FROM events ORDER BY position")]
    taken = await take(side, linked)
    # The county's sync chain is released (the link), then the township's chain it unlocked.
    rows = await side.city.fetch("SELECT deployment, source, position FROM released ORDER BY seq")
    assert [(r["deployment"], r["position"]) for r in rows] == [("county", 1), ("county", 2), ("town", 1), ("town", 2)]
    assert await side.city.fetchval("SELECT vouched_by FROM trusted WHERE deployment = 'town'") == "county"
