"""Signed bundles (offline links): export from the topics, and verify + import, in events/s, beside raw limits.

A county deployment records `events` registry events (then signs its chain head); the relay
publishes them to the county's topic. Then, timed:

- **export** for the city: every topic of the county read to its end, grouped by chain, the
  signed zip made (services/sync/bundles.export); baseline: a bare consumer reading the same
  topics and zipping the same bytes.
- **verify** the bundle whole (signature, digests, every event's hash, chain continuity), no
  database; **verify + import** into the city's sync database in one transaction through the
  ingest (arrival, chain verification, release); the same bundle again (every event a
  repeat); baseline: COPY of the same envelopes into a plain table in one transaction.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
import zipfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.append import drive
from bench.harness import Clock, Figure, Report, Series, Stack
from bench.workload import commands
from contracts import topics
from contracts.envelope import uuid7
from runtime import bundle as signed
from runtime import checkpoint, db, relay, store
from runtime.kafka import ensure_topics, platform_topics, read_range, topic_ends
from runtime.topology import Child, Topology
from services.sync import bundles
from services.sync.app import SyncSettings
from services.sync.ingest import SCHEMA as INGEST_SCHEMA
from services.sync.ingest import Ingest

TARGET = ">= 20,000 events/s"


def _seed(name: str) -> str:
    return base64.b64encode(hashlib.sha256(f"bench {name} key".encode()).digest()).decode()


async def run(stack: Stack, report: Report, *, events: int) -> None:
    """Measure export, verify, and verify + import of a bundle of about `events` events."""
    namespace = f"bench{uuid7().hex[-8:]}."
    county_seed, city_seed = _seed("county"), _seed("city")
    county_dsn = await stack.fresh_database("bench_bundles_county")
    county = SyncSettings(
        database_url=county_dsn,
        kafka_bootstrap_servers=stack.kafka,
        topic_namespace=namespace,
        deployment_id="county",
        deployment_root="qs",
        parent_deployment="city",
        parent_public_key=checkpoint.public_key_b64(city_seed),
        checkpoint_signing_key=county_seed,
    )
    key = checkpoint.private_key(county_seed)
    total = await _record(county, key, events)

    with Clock() as exported:
        data = await bundles.export(county, key, to="city")
    bare = await _bare_export(county)
    report.add(
        Figure(
            name="bundle export: the county's topics → a signed zip for the city",
            value=total / exported.seconds,
            unit="events/s",
            baseline_name="bare consumer reading the same topics + zip of the same bytes",
            baseline=total / bare,
            target=TARGET,
            notes=f"{total:,} events, {len(data) / 2**20:.1f} MiB zipped, {exported.seconds:.1f} s",
        )
    )

    city = Topology(
        deployment="city", children={"county": Child(root="qs", public_key=checkpoint.public_key_b64(county_seed))}
    )
    ingest = Ingest(city, "")
    with Clock() as verified:
        bundles.verify(ingest, city, data)
    pool = await db.create_pool(await stack.fresh_database("bench_bundles_city"), max_size=4)
    try:
        await db.apply_schema(pool, INGEST_SCHEMA)
        progress = Series("bundle import (verify whole, then one transaction)", xlabel="s", ylabel="events")
        clock = Clock()

        async def sample(done: int, _: int) -> None:
            progress.xs.append(time.perf_counter() - clock.started)
            progress.ys.append(done)

        with clock:
            imported = await bundles.take(pool, ingest, city, data, progress=sample)
        assert imported.arrived == total, imported
        assert imported.released >= total - 1, imported  # all the last checkpoint signs
        with Clock() as again:
            repeated = await bundles.take(pool, ingest, city, data)
        assert repeated.repeats == total, repeated
        baseline = await _plain_copy(pool, data)
    finally:
        await pool.close()
    report.series.append(progress)
    report.add(
        Figure(
            name="bundle verify (signature, digests, every hash, chains; no database)",
            value=total / verified.seconds,
            unit="events/s",
            notes=f"{verified.seconds:.1f} s",
        ),
        Figure(
            name="bundle verify + import into the city (one transaction through the ingest)",
            value=total / clock.seconds,
            unit="events/s",
            baseline_name="COPY of the same envelopes into a plain table, one transaction",
            baseline=baseline,
            target=TARGET,
            notes=f"{total:,} events, {clock.seconds:.1f} s; {imported.released:,} released",
        ),
        Figure(
            name="the same bundle again (every event a repeat)",
            value=total / again.seconds,
            unit="events/s",
            notes=f"{again.seconds:.1f} s",
        ),
    )


async def _record(settings: SyncSettings, key: Ed25519PrivateKey, events: int) -> int:
    """Append the registry's events at the county, sign the head, relay them to its topic; how many events."""
    pool = await db.create_pool(settings.database_url, max_size=4)
    try:
        await db.apply_schema(pool, [*store.SCHEMA, *relay.SCHEMA])
        es = store.EventStore(pool, source="registry", deployment="county", batch_size=1000, topology=settings.topology)
        await drive(es, commands(events, per_command=10, per_cadre=10), 512, Series("ignored"))
        await checkpoint.Checkpointer(pool, es, key).checkpoint()
        await es.close()
        await ensure_topics(settings.kafka_bootstrap_servers, platform_topics(settings.topic_namespace))
        producer = relay.make_producer(settings.kafka_bootstrap_servers, client_id="bench-bundles")
        await producer.start()
        try:
            outbox = relay.OutboxRelay(
                pool, producer, service="registry", topic=settings.topic(topics.REGISTRY), batch_size=5000
            )
            while await outbox.publish_pending():
                pass
        finally:
            await producer.stop()
        return int(await pool.fetchval("SELECT count(*) FROM events"))
    finally:
        await pool.close()


async def _bare_export(settings: SyncSettings) -> float:
    """Seconds to read the same topics with a bare consumer and zip their values."""
    names = bundles.exported_topics(settings, "city")
    with Clock() as bare:
        ends = await topic_ends(settings.kafka_bootstrap_servers, names)
        values = [
            record.value or b""
            async for records in read_range(settings.kafka_bootstrap_servers, {}, ends, bundles.CHUNK)
            for record in records
        ]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.writestr("events.jsonl", b"\n".join(values) + b"\n")
    return bare.seconds


async def _plain_copy(pool: db.Pool, data: bytes) -> float:
    """COPY the bundle's envelopes into a plain table in one transaction; rows/s."""
    read = signed.unpack(data)
    records = [
        (chain["deployment"], chain["source"], chain["first"] + n, line.decode())
        for chain in read.manifest["chains"]
        for n, line in enumerate(read.lines(chain["file"]))
    ]
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE plain (deployment text, source text, position bigint, body text,"
            " PRIMARY KEY (deployment, source, position))"
        )
        with Clock() as copied:
            async with conn.transaction():
                await conn.copy_records_to_table("plain", records=records)
        await conn.execute("DROP TABLE plain")
    return len(records) / copied.seconds
