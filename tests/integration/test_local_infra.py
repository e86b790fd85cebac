"""The project's own Kafka and PostgreSQL (deploy/local) start, work, and stop cleanly."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local import kafka as local_kafka
from deploy.local.kafka import LocalKafka
from deploy.local.ports import accepts
from deploy.local.postgres import LocalPostgres


def _alive(pid: int) -> bool:
    """Whether `pid` still runs, after giving an exiting process up to 10 s to be reaped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (FileNotFoundError, IndexError):
            return False
        if state in "ZX":
            return False
        time.sleep(0.1)
    return True


async def _produce_and_consume(bootstrap: str) -> bytes:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("roundtrip", 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("roundtrip", b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        consumer.assign([TopicPartition("roundtrip", 0)])
        await consumer.seek_to_beginning()
        record = await asyncio.wait_for(consumer.getone(), 30)
        return bytes(record.value)
    finally:
        await consumer.stop()


def test_local_kafka_round_trip_and_clean_stop() -> None:
    broker = LocalKafka()
    try:
        bootstrap = broker.start()
        pid = broker._process.pid if broker._process else 0
        assert asyncio.run(_produce_and_consume(bootstrap)) == b"hello"
    finally:
        broker.stop()
    assert not _alive(pid)
    assert not accepts(broker.port)


def test_jars_are_fetched_once(monkeypatch: object) -> None:
    lib = local_kafka.ensure_jars()
    assert any(p.name.startswith("kafka_2.13-") for p in lib.iterdir())
    calls: list[object] = []

    def no_maven(*args: object, **kwargs: object) -> None:
        calls.append(args)
        msg = "mvn must not run again"
        raise AssertionError(msg)

    import pytest  # noqa: PLC0415

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "run", no_maven)
        assert local_kafka.ensure_jars() == lib
    assert calls == []


def test_local_postgres_databases_and_clean_stop() -> None:
    cluster = LocalPostgres(fsync=False)
    try:
        cluster.start()
        dsns = [cluster.create_database(name) for name in ("alpha", "beta")]
        assert cluster.create_database("alpha") == dsns[0]  # idempotent

        async def query(dsn: str) -> str:
            conn = await asyncpg.connect(dsn)
            try:
                return str(await conn.fetchval("SELECT current_database()"))
            finally:
                await conn.close()

        assert [asyncio.run(query(dsn)) for dsn in dsns] == ["alpha", "beta"]
        pid = int((cluster.workdir / "data" / "postmaster.pid").read_text().split()[0])
    finally:
        cluster.stop()
    assert not _alive(pid)
    assert not accepts(cluster.port)
