"""Tampering with a service's record is caught, with the first bad position named (real Kafka and PostgreSQL).

Each test fills a registry's event table and topic through its API, signs a checkpoint, stops
the service, and then plays a database administrator who switches off the append-only
trigger and edits the table.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from contracts import topics
from contracts.envelope import Actor, Role, canonical_json, chain_hash, uuid7
from runtime import checkpoint, verify
from runtime.context import CommandContext
from runtime.settings import DEV_CHECKPOINT_SEED
from services.registry.app import RegistrySettings, create_app
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, build_tree, nomination, six_signed
from tests.support import Launch, Running, eventually

KEYS = [checkpoint.private_key(DEV_CHECKPOINT_SEED).public_key()]


@dataclass
class Recorded:
    dsn: str
    topic: str
    events: int
    checkpoint_position: int


@pytest.fixture
async def recorded(launch: Launch, infra: Infra, namespace: str) -> Recorded:
    registry = await launch(create_app, RegistrySettings, "registry")
    signed = await six_signed(registry)
    await registry.stop()  # publishes everything, signs nothing new (no event since the checkpoint)
    dsn = infra.database_dsn(f"{namespace}_registry")
    conn = await asyncpg.connect(dsn)
    try:
        events = int(await conn.fetchval("SELECT count(*) FROM events"))
        assert await conn.fetchval("SELECT position FROM relay_cursor") == events
    finally:
        await conn.close()
    return Recorded(dsn, f"{namespace}.{topics.REGISTRY}", events, signed.position)


async def check(recorded: Recorded, infra: Infra, *, with_topic: bool = True) -> verify.Report:
    return await verify.verify_dsn(
        recorded.dsn,
        service="registry",
        public_keys=KEYS,
        bootstrap=infra.kafka_bootstrap if with_topic else None,
        topic=recorded.topic if with_topic else None,
    )


async def as_dba(recorded: Recorded, *statements: tuple[str, Any]) -> None:
    conn = await asyncpg.connect(recorded.dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
            for sql, args in statements:
                await conn.execute(sql, *args)
            await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_an_untouched_record_verifies(recorded: Recorded, infra: Infra) -> None:
    report = await check(recorded, infra)
    assert report.ok, report.findings
    assert report.events == report.on_topic == recorded.events
    assert report.checkpoints_verified == 1


async def test_a_changed_byte_is_caught_at_its_position(recorded: Recorded, infra: Infra) -> None:
    await as_dba(recorded, ("UPDATE events SET body = replace(body, 'Cadre 2', 'Cadre 3') WHERE position = 8", ()))
    report = await check(recorded, infra)
    assert report.first_bad_position == 8
    assert any(f.check == "chain" and "does not match its hash" in f.problem for f in report.findings)


async def test_a_deleted_row_is_caught_at_its_position(recorded: Recorded, infra: Infra) -> None:
    await as_dba(recorded, ("DELETE FROM events WHERE position = 9", ()))
    report = await check(recorded, infra)
    assert report.first_bad_position == 9
    problems = {(f.check, f.position): f.problem for f in report.findings}
    assert "missing event" in problems["chain", 9]
    assert "on the topic, not in the table" in problems["topic", 9]


async def test_a_swapped_pair_is_caught_at_the_first_of_them(recorded: Recorded, infra: Infra) -> None:
    await as_dba(
        recorded,
        ("UPDATE events SET position = -1 WHERE position = 7", ()),
        ("UPDATE events SET position = 7 WHERE position = 8", ()),
        ("UPDATE events SET position = 8 WHERE position = -1", ()),
    )
    report = await check(recorded, infra)
    assert report.first_bad_position == 7
    assert [f.check for f in report.findings if f.position == 7][:1] == ["chain"]


async def test_a_fully_rehashed_chain_is_caught_by_the_topic_and_the_signed_checkpoint(
    recorded: Recorded, infra: Infra
) -> None:
    conn = await asyncpg.connect(recorded.dsn)
    try:
        rows = await conn.fetch("SELECT position, body FROM events WHERE position >= 8 ORDER BY position")
        previous = await conn.fetchval("SELECT hash FROM events WHERE position = 7")
    finally:
        await conn.close()
    statements: list[tuple[str, Any]] = []
    for row in rows:
        fields = orjson.loads(row["body"])
        fields.pop("hash")
        if row["position"] == 8:
            fields["payload"]["full_name"] = "Someone Else"
        fields["prev_hash"] = previous
        previous = chain_hash(fields)
        fields["hash"] = previous
        statements.append(
            (
                "UPDATE events SET body = $2, hash = $3 WHERE position = $1",
                (row["position"], canonical_json(fields).decode(), previous),
            )
        )
    statements.append(("UPDATE chain_head SET hash = $1", (previous,)))
    await as_dba(recorded, *statements)

    without_topic = await check(recorded, infra, with_topic=False)
    assert not any(f.check == "chain" for f in without_topic.findings)  # the chain itself holds
    assert [f.check for f in without_topic.findings] == ["checkpoint"]
    assert without_topic.first_bad_position == recorded.checkpoint_position
    assert "chain rewritten" in without_topic.findings[0].problem

    with_topic = await check(recorded, infra)
    assert with_topic.first_bad_position == 8  # the topic's copy names the first rewritten event
    assert with_topic.findings[0].check == "topic"


async def test_a_forged_checkpoint_is_refused(recorded: Recorded, infra: Infra) -> None:
    other_key = checkpoint.private_key("A" * 43 + "=")
    conn = await asyncpg.connect(recorded.dsn)
    try:
        head = await conn.fetchrow("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
    finally:
        await conn.close()
    assert head is not None
    forged = checkpoint.sign(other_key, "registry", "local", head["position"], head["hash"])
    assert not checkpoint.verify(KEYS[0], "registry", "local", forged)
    assert checkpoint.verify(other_key.public_key(), "registry", "local", forged)
    moved = forged.model_copy(update={"position": head["position"] - 1})
    assert not checkpoint.verify(other_key.public_key(), "registry", "local", moved)


async def test_the_verify_command_reports_and_fails(recorded: Recorded, infra: Infra, namespace: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "TOPIC_NAMESPACE": f"{namespace}."}
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "deploy.local", "verify", "--service", f"registry={recorded.dsn}"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    intact = run()
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "registry: intact" in intact.stdout
    await as_dba(recorded, ("UPDATE events SET body = replace(body, 'Cadre 4', 'Cadre 5') WHERE position = 10", ()))
    broken = run()
    assert broken.returncode == 1
    assert "broken at position 10" in broken.stdout


async def test_a_running_service_signs_its_chain_at_every_interval(
    launch: Launch, infra: Infra, namespace: str
) -> None:
    registry = await launch(create_app, RegistrySettings, "registry", checkpoint_interval_seconds=0.2)
    await build_tree(registry.client)
    signed_sql = "SELECT count(*) FROM events WHERE event_type = 'ChainCheckpointed'"
    head_sql = "SELECT event_type FROM events ORDER BY position DESC LIMIT 1"
    await eventually(lambda: registry.service.pool.fetchval(head_sql), until=lambda t: t == "ChainCheckpointed")
    signed = await registry.service.pool.fetchval(signed_sql)
    await asyncio.sleep(0.6)  # nothing new happened: no new checkpoint
    assert await registry.service.pool.fetchval(signed_sql) == signed
    response = await registry.client.post("/cadres", json=nomination(), headers=CITY)
    assert response.status_code == 201
    await eventually(lambda: registry.service.pool.fetchval(signed_sql), until=lambda n: n == signed + 1)
    report = await verify.verify_service(
        service="registry",
        pool=registry.service.pool,
        public_keys=KEYS,
        bootstrap=infra.kafka_bootstrap,
        topic=f"{namespace}.{topics.REGISTRY}",
    )
    assert report.checkpoints_verified >= 2, report


async def test_an_event_that_slips_in_before_a_checkpoint_is_signed_by_the_next(registry: Running) -> None:
    """The checkpointer reads the head, an event commits, then the checkpoint lands after it: signed again."""
    await build_tree(registry.client)
    store, pool = registry.service.store, registry.service.pool
    key = checkpoint.private_key(DEV_CHECKPOINT_SEED)
    head = await pool.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
    assert head is not None
    response = await registry.client.post("/cadres", json=nomination(), headers=CITY)
    assert response.status_code == 201, response.text
    stale = checkpoint.sign(key, store.source, store.deployment, head["position"], head["hash"])
    ctx = CommandContext(
        actor=Actor(user="system:registry", org_path=checkpoint.ORG_PATH, role=Role.SYSTEM), correlation_id=uuid7()
    )
    (landed,) = await store.append(checkpoint.STREAM, 0, [stale], ctx=ctx, org_path=checkpoint.ORG_PATH)
    assert landed.position == head["position"] + 2  # the nomination came between: it is not signed
    signer = checkpoint.Checkpointer(pool, store, key)
    again = await signer.checkpoint()
    assert again is not None
    assert again.position == landed.position  # everything before it, the nomination included
    assert await signer.checkpoint() is None  # and then nothing more until an event comes


async def test_a_live_service_verifies_intact_while_it_keeps_appending(registry: Running, infra: Infra) -> None:
    """Appends committed while the check reads are not breaks: the table is read in one snapshot, and
    what the topic holds past it is checked against the rows appended since."""
    await build_tree(registry.client)
    stop = asyncio.Event()

    async def keep_appending() -> int:
        count = 0
        while not stop.is_set():
            response = await registry.client.post("/cadres", json=nomination(full_name=f"Live {count}"), headers=CITY)
            assert response.status_code == 201, response.text
            count += 1
        return count

    writer = asyncio.create_task(keep_appending())
    try:
        reports = [
            await verify.verify_service(
                service="registry",
                pool=registry.service.pool,
                public_keys=KEYS,
                bootstrap=infra.kafka_bootstrap,
                topic=registry.service.settings.topic(topics.REGISTRY),
            )
            for _ in range(8)
        ]
    finally:
        stop.set()
        appended = await writer
    assert appended > 0  # the service did append while it was checked (how often depends on the machine)
    assert [report.findings for report in reports if not report.ok] == []
    assert reports[-1].events > reports[0].events
