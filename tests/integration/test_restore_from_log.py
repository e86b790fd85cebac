"""A service's event table rebuilt from its topic and the audit archive (real Kafka and PostgreSQL).

The registry's database is dropped while nominations keep coming, and comes back from the log:
every event the log holds, at its position, once, its hash and body as published; the chain and
the signed checkpoint verify; the projections are what they were; the training service, which
consumes the registry, goes on without applying anything twice. And a topic that lost a record
is refused with the position named, unless the audit archive holds it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.envelope import Envelope
from deploy.local.stack import REPO
from runtime import checkpoint, restore, verify
from runtime.settings import DEV_CHECKPOINT_SEED
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.registry.app import SPEC as REGISTRY
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests import support
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, build_tree, nomination, six_signed
from tests.support import Launch, Running, events_in, eventually, fetch_rows

KEYS = [checkpoint.private_key(DEV_CHECKPOINT_SEED).public_key()]
PROJECTION_TABLES = ("org_units", "cadres", "access_grants")
"""The registry's inline tables and one it projects from its own topic (rebuilt after the restore)."""


async def drop(infra: Infra, database: str) -> None:
    """The disk died: the database is gone, whoever was connected."""
    conn = await asyncpg.connect(infra.postgres_dsn)
    try:
        await conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    finally:
        await conn.close()


async def tables(dsn: str) -> dict[str, set[tuple[Any, ...]]]:
    """Each projection table's rows, read in one snapshot."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return {table: {tuple(row) for row in await conn.fetch(f"TABLE {table}")} for table in PROJECTION_TABLES}
    finally:
        await conn.close()


class Load:
    """Nominations sent by a few writers at once until stopped (or refused); what was acknowledged."""

    def __init__(self, registry: Running) -> None:
        self.registry = registry
        self.acked: dict[UUID, int] = {}
        """Event id → position, as the 201 answers told them."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, writers: int) -> None:
        self._tasks = [asyncio.create_task(self._write(w)) for w in range(writers)]

    async def _write(self, writer: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = nomination(full_name=f"Load {writer}-{n}", email=f"load.{writer}.{n}@example.org")
            try:
                response = await self.registry.client.post("/cadres", json=body, headers=CITY)
            except Exception:  # the database is gone: not acknowledged
                return
            if response.status_code != 201:
                return
            self.acked.update({UUID(e["event_id"]): e["position"] for e in response.json()["events"]})

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_a_database_dropped_under_load_comes_back_from_the_log(
    launch: Launch, infra: Infra, namespace: str
) -> None:
    registry = await launch(registry_app, RegistrySettings, "registry", checkpoint_interval_seconds=0.3)
    training = await launch(training_app, TrainingSettings, "training")
    settings = registry.service.settings
    dsn = infra.database_dsn(f"{namespace}_registry")
    topic = settings.own_topic
    await build_tree(registry.client)
    load = Load(registry)
    load.start(writers=3)
    await eventually(lambda: asyncio.sleep(0, len(load.acked)), until=lambda n: n >= 40, timeout=120)
    await eventually(
        lambda: registry.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'ChainCheckpointed'"),
        timeout=60,
    )
    before = await tables(dsn)
    await drop(infra, f"{namespace}_registry")
    await load.stop()  # the requests in flight meet the dropped database (or were acknowledged just before)
    await registry.stop()  # what its producer still held went out; nothing more can

    result, done = await restore.restore_service(REGISTRY, settings)

    assert result.ok, result.lines()
    assert result.kept == 0
    assert result.missing == []
    assert result.broken == []
    assert result.from_archive == []
    assert result.restored == result.head == result.log_end
    assert result.signed is not None
    assert result.report is not None
    assert result.report.checkpoints_verified >= 1
    assert done is not None
    assert set(done.rebuilt) >= {"access_grants"}
    await everything_on_the_log_is_back(result, dsn, infra.kafka_bootstrap, topic, load.acked)
    await projections_are_back(before, dsn)

    # The service serves again: new events follow the restored head; the consumer catches up, nothing applied twice.
    registry = await launch(registry_app, RegistrySettings, "registry")
    for n in range(3):
        response = await registry.client.post("/cadres", json=nomination(full_name=f"After {n}"), headers=CITY)
        assert response.status_code == 201, response.text
        assert all(e["position"] > result.head for e in response.json()["events"])
    await support.caught_up(training.service.pool, "training.pool", registry.service.pool, topic)
    in_registry = {row["cadre_id"] for row in await registry.service.pool.fetch("SELECT cadre_id FROM cadres")}
    in_training = [row["cadre_id"] for row in await training.service.pool.fetch("SELECT cadre_id FROM pool_cadres")]
    assert sorted(in_training) == sorted(in_registry)
    # No position was ever published with two contents; the whole record verifies again.
    await registry.stop()
    hashes: dict[int, set[str]] = {}
    for record in await restore.read_log(infra.kafka_bootstrap, topic):
        envelope = Envelope.from_bytes(record.value)
        hashes.setdefault(envelope.position, set()).add(envelope.hash)
    assert all(len(h) == 1 for h in hashes.values())
    report = await verify.verify_dsn(
        dsn, service="registry", public_keys=KEYS, bootstrap=infra.kafka_bootstrap, topic=topic
    )
    assert report.ok, report.findings


async def everything_on_the_log_is_back(
    result: restore.FromLog, dsn: str, bootstrap: str, topic: str, acked: dict[UUID, int]
) -> None:
    """Each record on the topic is a row, byte for byte, once; each acknowledged event the log holds is back."""
    events = await fetch_rows(dsn, "SELECT position, event_id, hash, body FROM events ORDER BY position")
    assert [row["position"] for row in events] == list(range(1, result.head + 1))  # no gap, nothing twice
    at = {row["event_id"]: row["position"] for row in events}
    published = {
        Envelope.from_bytes(r.value).position: r.value.decode() for r in await restore.read_log(bootstrap, topic)
    }
    assert {row["position"]: row["body"] for row in events} == published  # byte for byte as published
    # Every acknowledged event the log holds is back at its position. Those acknowledged after the relay's last
    # publication before the drop were in no log (only a backup keeps them): they lie past its end, nothing else.
    on_log = {event_id: position for event_id, position in acked.items() if position <= result.log_end}
    assert {event_id: at.get(event_id) for event_id in on_log} == on_log
    assert all(position > result.log_end for event_id, position in acked.items() if event_id not in on_log)


async def projections_are_back(before: dict[str, set[tuple[Any, ...]]], dsn: str) -> None:
    """The projections are what they were before the drop, less what the lost tail had added."""
    after = await tables(dsn)
    named = await fetch_rows(dsn, "SELECT cadre_id FROM events WHERE cadre_id IS NOT NULL")
    cadres_back = {row["cadre_id"] for row in named}
    assert after["org_units"] == before["org_units"]
    assert after["access_grants"] == before["access_grants"]
    cadre_column = 0  # cadres' first column is its id
    assert {row for row in before["cadres"] if row[cadre_column] in cadres_back} <= after["cadres"]
    assert {row[cadre_column] for row in after["cadres"]} == cadres_back
    counted = await fetch_rows(dsn, "SELECT coalesce(sum(in_pool), 0) FROM cadre_counts")
    assert counted[0][0] == len(cadres_back)  # the counts were folded from the restored events once


async def copy_without(bootstrap: str, source: str, target: str, partitions: int, position: int) -> None:
    """A copy of `source` that lost the record at `position` (as a topic cut short or compacted would)."""
    records = await restore.read_log(bootstrap, source)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for r in records:
            if Envelope.from_bytes(r.value).position != position:
                await producer.send_and_wait(target, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
    finally:
        await producer.stop()


async def test_a_position_the_topic_lost_is_named_or_taken_from_the_audit_archive(
    launch: Launch, infra: Infra, namespace: str
) -> None:
    registry = await launch(registry_app, RegistrySettings, "registry")
    audit = await launch(audit_app, AuditSettings, "audit")
    await six_signed(registry)
    head = await registry.service.store.head()
    await registry.stop()
    archived = "SELECT count(*) FROM archive WHERE source = 'registry'"
    await eventually(lambda: audit.service.pool.fetchval(archived), until=lambda n: n == head)
    pruned = f"{namespace}.registry.pruned"
    settings = registry.service.settings
    await copy_without(infra.kafka_bootstrap, settings.own_topic, pruned, settings.topic_partitions, 9)
    await drop(infra, f"{namespace}_registry")
    dsn = infra.database_dsn(f"{namespace}_registry")
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "TOPIC_NAMESPACE": f"{namespace}.",
        "COLUMNS": "200",
    }

    command = [sys.executable, "-m", "deploy.local", "restore", "--service", "registry", "--from-log"]

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,  # our own interpreter and module
            [*command, "--topic", pruned, *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip

    refused = await run()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "registry: NOT restored" in refused.stdout
    assert "missing: position 9 is on no copy of the log nor in the archive" in refused.stdout
    assert "must not serve" in refused.stdout
    assert await events_in(dsn) == 0  # nothing written

    recovered = await run("--archive-dsn", infra.database_dsn(f"{namespace}_audit"))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert f"registry: restored and verified: 0 events kept, {head} restored (1 from the archive)" in recovered.stdout
    assert "position 9 restored from the archive" in recovered.stdout
    restored = await fetch_rows(dsn, "SELECT position, hash FROM events ORDER BY position")
    archive = await fetch_rows(
        infra.database_dsn(f"{namespace}_audit"),
        "SELECT position, hash FROM archive WHERE source = 'registry' ORDER BY position",
    )
    assert [tuple(r) for r in restored] == [tuple(r) for r in archive]
    heads = orjson.loads((await fetch_rows(dsn, "SELECT heads FROM relay_cursor WHERE topic = $1", pruned))[0][0])
    assert max(heads.values()) == head  # the relay goes on after the last record published, sends nothing again
