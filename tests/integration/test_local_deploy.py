"""The project's own Kafka and PostgreSQL (deploy/local): start, work, stop, and never outlive their owner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local import jvm
from deploy.local import kafka as local_kafka
from deploy.local.kafka import LocalKafka
from deploy.local.ports import accepts, free_ports
from deploy.local.postgres import LocalPostgres
from tests import support

REPO = Path(__file__).resolve().parents[2]


# --- helpers -----------------------------------------------------------------------------------


def _live_pids(*, group: int | None = None, cmdline_contains: str | None = None) -> list[int]:
    """Processes (not zombies) in process group `group` and/or whose command line contains a string."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if state in "ZX":
            continue
        if group is not None and pgrp != group:
            continue
        if cmdline_contains is not None and cmdline_contains not in cmdline:
            continue
        found.append(int(entry.name))
    return found


def _gone(*, group: int | None = None, cmdline_contains: str | None = None, within: float = 15.0) -> bool:
    """Whether no such process is left, after giving exiting ones `within` seconds."""
    deadline = time.monotonic() + within
    while _live_pids(group=group, cmdline_contains=cmdline_contains):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first line `process` prints, or a failure naming what it printed on stderr."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"no output in {timeout} s")
    line = process.stdout.readline().strip()
    if not line:
        stderr = process.stderr.read() if process.stderr is not None else ""
        pytest.fail(f"exited without output: {stderr}")
    return line


@contextlib.contextmanager
def _foreground(module: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m <module> --workdir <workdir>` and the line it announces; always killed at the end."""
    process = subprocess.Popen(  # noqa: S603 - our interpreter and module
        [sys.executable, "-m", module, "--workdir", str(workdir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, _read_line(process, 90)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory any user can reach (the server runs as `postgres` when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="cadre-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- Kafka -------------------------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[LocalKafka]:
    with LocalKafka() as started:
        yield started


async def _produce_and_consume(bootstrap: str, topic: str) -> list[bytes]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in (b"first", b"second"):
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        return [bytes((await asyncio.wait_for(consumer.getone(), 30)).value) for _ in range(2)]
    finally:
        await consumer.stop()


@pytest.mark.infra
def test_kafka_round_trip_then_stop_leaves_nothing(broker: LocalKafka) -> None:
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert asyncio.run(_produce_and_consume(broker.bootstrap_servers, "roundtrip")) == [b"first", b"second"]
    assert "auto.create.topics.enable=false" in (broker.workdir / "server.properties").read_text()
    assert (broker.workdir / "kafka.log").stat().st_size > 0  # log4j2 is configured
    pid, workdir = broker.pid, broker.workdir
    assert pid is not None

    broker.stop()
    broker.stop()  # idempotent

    assert not broker.running
    assert _gone(group=pid)
    assert not accepts(broker.port)
    assert not workdir.exists()  # the temporary work directory is removed


@pytest.mark.infra
def test_kafka_keeps_its_data_in_a_given_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "kafka"
    with LocalKafka(workdir) as first:
        asyncio.run(_produce_and_consume(first.bootstrap_servers, "kept"))
        cluster = (workdir / "data" / "meta.properties").read_text()
    with LocalKafka(workdir) as second:  # new ports, same storage
        assert (workdir / "data" / "meta.properties").read_text() == cluster

        async def topics() -> set[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=second.bootstrap_servers)
            await admin.start()
            try:
                return set(await admin.list_topics())
            finally:
                await admin.close()

        assert "kept" in asyncio.run(topics())
    assert workdir.exists()


@pytest.mark.infra
def test_kafka_start_failure_is_explained_and_cleaned_up() -> None:
    broker = LocalKafka(heap="1k")  # the JVM refuses to start with so small a heap
    with pytest.raises(RuntimeError, match=r"Kafka exited with code \d+ while starting") as failure:
        broker.start()
    assert "stdout.log" in str(failure.value)
    assert "heap" in str(failure.value).lower()
    assert not broker.running
    broker.stop()  # still fine after a failed start


@pytest.mark.infra
def test_kafka_dies_with_a_killed_owner(shared_tmp: Path) -> None:
    workdir = shared_tmp / "kafka"
    with _foreground("deploy.local.kafka", workdir) as (owner, line):
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        assert _live_pids(cmdline_contains=str(workdir / "server.properties"))
        owner.send_signal(signal.SIGKILL)  # no cleanup code runs in the owner
        assert _gone(cmdline_contains=str(workdir / "server.properties"), within=30)


@pytest.mark.infra
def test_kafka_foreground_stops_cleanly_on_sigterm(shared_tmp: Path) -> None:
    workdir = shared_tmp / "kafka"
    with _foreground("deploy.local.kafka", workdir) as (owner, line):
        port = int(line.rpartition(":")[2])
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(30) == 0
        assert _gone(cmdline_contains=str(workdir / "server.properties"), within=1)
        assert not accepts(port)


# --- Kafka's jars ------------------------------------------------------------------------------


def test_second_ensure_jars_runs_no_maven(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = local_kafka.ensure_jars()  # may fetch (if no broker test ran before); the next call must not
    assert any(path.name.startswith("kafka_2.13-") for path in lib.iterdir())

    def no_maven(*args: object, **kwargs: object) -> None:
        msg = f"no subprocess may run: {args}"
        raise AssertionError(msg)

    monkeypatch.setattr(subprocess, "run", no_maven)
    monkeypatch.setattr(subprocess, "Popen", no_maven)
    assert local_kafka.ensure_jars() == lib


FAKE_MVN = """\
#!/bin/sh
# A stand-in for Maven: counts its runs, then copies "jars" or fails as told.
echo run >> "$FAKE_MVN_LOG"
[ -n "$FAKE_MVN_FAIL" ] && { echo "[ERROR] $FAKE_MVN_FAIL"; exit 1; }
for arg in "$@"; do
    case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}" ;; esac
done
sleep 0.5
mkdir -p "$out" && touch "$out/kafka_2.13-9.9.9.jar" "$out/kafka-clients-9.9.9.jar" "$out/kafka-tools-9.9.9.jar"
"""


@pytest.fixture
def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `mvn` first on PATH and an empty cache; returns the file logging its runs."""
    return support.fake_maven(tmp_path, monkeypatch, FAKE_MVN)


def test_jars_are_fetched_once_even_by_concurrent_callers(fake_maven: Path, tmp_path: Path) -> None:
    results = support.in_threads(lambda: local_kafka.ensure_jars("9.9.9"))
    lib = tmp_path / "cache" / "kafka" / "9.9.9" / "lib"
    assert results == [lib, lib, lib]
    assert local_kafka.ensure_jars("9.9.9") == lib
    assert fake_maven.read_text().splitlines() == ["run"]  # one mvn run for four calls
    assert "<version>9.9.9</version>" in (lib.parent / "pom.xml").read_text()


def test_maven_failure_is_reported_and_retried_next_time(
    fake_maven: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "Could not resolve dependencies")
    with pytest.raises(RuntimeError, match=r"mvn failed \(exit code 1\).*Could not resolve dependencies"):
        local_kafka.ensure_jars("9.9.9")
    monkeypatch.delenv("FAKE_MVN_FAIL")
    local_kafka.ensure_jars("9.9.9")
    assert len(fake_maven.read_text().splitlines()) == 2


def test_missing_java_and_maven_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CADRE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="java not found"):
        jvm.java_executable()
    with pytest.raises(RuntimeError, match="mvn not found"):
        local_kafka.ensure_jars("9.9.9")


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CADRE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    broker = local_kafka.broker_classpath()
    assert jvm.cache_dir(broker) == tmp_path / "xdg" / "cadre-pool" / "kafka" / local_kafka.KAFKA_VERSION
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert jvm.cache_dir(broker) == Path.home() / ".cache" / "cadre-pool" / "kafka" / local_kafka.KAFKA_VERSION
    monkeypatch.setenv("CADRE_CACHE_DIR", str(tmp_path))
    assert jvm.cache_dir(broker) == tmp_path / "kafka" / local_kafka.KAFKA_VERSION


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {local_kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert not any(accepts(port) for port in ports)


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[LocalPostgres]:
    with LocalPostgres(fsync=False) as started:
        yield started


async def _whoami(dsn: str) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
        row = await conn.fetchrow("SELECT current_database(), current_setting('server_encoding') FROM t")
        assert row is not None
        return str(row[0]), str(row[1])
    finally:
        await conn.close()


@pytest.mark.infra
def test_postgres_databases_then_stop_leaves_nothing(cluster: LocalPostgres) -> None:
    assert cluster.dsn("postgres") == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    dsns = [cluster.create_database(name) for name in ("alpha", "beta")]
    assert cluster.create_database("alpha") == dsns[0]  # idempotent
    assert [asyncio.run(_whoami(dsn)) for dsn in dsns] == [("alpha", "UTF8"), ("beta", "UTF8")]
    assert (cluster.workdir / "postgres.log").exists()
    pid, workdir = cluster.pid, cluster.workdir
    assert pid is not None

    cluster.stop()
    cluster.stop()  # idempotent

    assert not cluster.running
    assert _gone(group=pid)  # the postmaster and every backend
    assert not accepts(cluster.port)
    assert not workdir.exists()


def test_postgres_rejects_odd_database_names() -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        LocalPostgres().create_database('x"; DROP DATABASE postgres; --')


@pytest.mark.infra
def test_postgres_keeps_its_data_in_a_given_workdir(shared_tmp: Path) -> None:
    workdir = shared_tmp / "pg"
    with LocalPostgres(workdir, fsync=False) as first:
        asyncio.run(_whoami(first.create_database("kept")))
    with LocalPostgres(workdir, fsync=False) as second:

        async def count() -> int:
            conn = await asyncpg.connect(second.dsn("kept"))
            try:
                return int(await conn.fetchval("SELECT count(*) FROM t"))
            finally:
                await conn.close()

        assert asyncio.run(count()) == 1


def test_postgres_names_an_unreachable_workdir(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cluster = LocalPostgres(private / "pg")
    if os.geteuid() != 0:  # only root hands the server to another user; as anyone else this start works
        with cluster:
            assert cluster.running
        return
    with pytest.raises(RuntimeError, match=r"cannot reach .* is not searchable"):
        cluster.start()
    assert not cluster.running


@pytest.mark.infra
def test_postgres_dies_with_a_killed_owner(shared_tmp: Path) -> None:
    workdir = shared_tmp / "pg"
    with _foreground("deploy.local.postgres", workdir) as (owner, line):
        assert line.startswith("DATABASE_URL=postgresql://postgres@127.0.0.1:")
        assert _live_pids(cmdline_contains=str(workdir / "data"))
        owner.send_signal(signal.SIGKILL)
        assert _gone(cmdline_contains=str(workdir / "data"))
