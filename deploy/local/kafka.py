"""Apache Kafka 4.x in KRaft mode (one combined broker and controller), without Docker.

The broker's jars come from Maven Central through `mvn` once, into a git-ignored
cache (`.cache/kafka/<version>/lib`); later starts download nothing. Storage is
formatted, the JVM started on free loopback ports, and `start` returns only after a
real produce and consume round trip.

    python -m deploy.local.kafka          # run a broker in the foreground until Ctrl-C
    python -m deploy.local.kafka fetch    # only fetch the jars
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

from deploy.local.ports import accepts, free_port

KAFKA_VERSION = "4.3.1"
_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of `version` are kept (`CADRE_CACHE_DIR` overrides the repo's `.cache`)."""
    root = Path(os.environ.get("CADRE_CACHE_DIR", _REPO / ".cache"))
    return root / "kafka" / version


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        msg = "java not found: Kafka needs Java 17 or newer on PATH (or JAVA_HOME)"
        raise RuntimeError(msg)
    return found


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars, fetched with `mvn` on first use only."""
    target = cache_dir(version)
    lib = target / "lib"
    marker = target / "complete"
    if marker.exists():
        return lib
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first download
        if marker.exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            msg = "mvn not found: it fetches Kafka's jars from Maven Central"
            raise RuntimeError(msg)
        pom = target / "pom.xml"
        pom.write_text((_HERE / "kafka-pom.xml").read_text().replace("@KAFKA_VERSION@", version))
        staging = target / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            msg = f"mvn failed to fetch Kafka {version}: {tail}"
            raise RuntimeError(msg)
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        marker.write_text(f"{len(list(lib.glob('*.jar')))} jars\n")
    return lib


_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Topics are created by the platform with their retention; a typo must not create one.
auto.create.topics.enable=false
"""


class LocalKafka:
    """One Kafka broker on loopback ports, owned by this object."""

    def __init__(self, workdir: Path | None = None, *, heap: str = "512m", partitions: int = 3) -> None:
        self._given = workdir
        self._workdir: Path | None = None
        self._heap = heap
        self._partitions = partitions
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.bootstrap_servers = ""

    @property
    def workdir(self) -> Path:
        """The broker's directory (properties, data, logs)."""
        if self._workdir is None:
            msg = "not started"
            raise RuntimeError(msg)
        return self._workdir

    def start(self, timeout: float = 60.0) -> str:
        """Format storage, start the broker, wait for a produce/consume round trip; return the bootstrap."""
        lib = ensure_jars()
        java = _java()
        if self._given is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cadre-kafka-"))
        else:
            self._workdir = self._given
            shutil.rmtree(self._workdir / "data", ignore_errors=True)
            self._workdir.mkdir(parents=True, exist_ok=True)
        self.port, controller = free_port(), free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        properties = self.workdir / "server.properties"
        properties.write_text(
            _PROPERTIES.format(
                port=self.port, controller=controller, data=self.workdir / "data", partitions=self._partitions
            )
        )
        classpath = f"{lib}/*"
        log_config = [f"-Dlog4j2.configurationFile={_HERE / 'log4j2.xml'}", f"-Dkafka.logs.dir={self.workdir}"]
        formatted = subprocess.run(  # noqa: S603 - fixed arguments
            [
                java,
                *log_config,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(properties),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            msg = f"formatting Kafka storage failed: {(formatted.stdout + formatted.stderr)[-2000:]}"
            raise RuntimeError(msg)
        with (self.workdir / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    java,
                    f"-Xmx{self._heap}",
                    "-Xms128m",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    *log_config,
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                self._fail(f"Kafka did not listen on {self.bootstrap_servers} in {timeout:.0f} s")
            time.sleep(0.1)
        remaining = max(deadline - time.monotonic(), 5.0)
        try:
            asyncio.run(asyncio.wait_for(_round_trip(self.bootstrap_servers), remaining))
        except (TimeoutError, OSError, RuntimeError) as error:
            self._fail(f"Kafka did not complete a produce/consume round trip: {error!r}")

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._fail(f"Kafka exited with code {self._process.returncode}")

    def _fail(self, message: str) -> None:
        logs = []
        for name in ("kafka.log", "stdout.log"):
            path = self.workdir / name
            if path.exists():
                logs.append(f"--- {name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        raise RuntimeError(message + "\n" + "\n".join(logs))

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove a temporary work directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._given is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _cluster_id() -> str:
    # What `kafka-storage random-uuid` prints: a base64url UUID without padding.
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _round_trip(bootstrap: str) -> None:
    """Create a probe topic, produce a record, consume it back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: PLC0415
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415
    from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError  # noqa: PLC0415

    topic = "_local_probe"
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, 1, 1)])
            break
        except (KafkaConnectionError, KafkaError):
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        probe = uuid.uuid4().bytes
        metadata = await producer.send_and_wait(topic, probe)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, metadata.partition)
        consumer.assign([partition])
        consumer.seek(partition, metadata.offset)
        record = await consumer.getone()
        if record.value != probe:
            msg = "probe record came back different"
            raise RuntimeError(msg)
    finally:
        await consumer.stop()


def main(argv: list[str]) -> int:
    """Run a broker in the foreground (or only fetch the jars with `fetch`)."""
    if argv[:1] == ["fetch"]:
        sys.stdout.write(f"{ensure_jars()}\n")
        return 0
    broker = LocalKafka()
    broker.start()
    sys.stdout.write(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}\n")
    sys.stdout.flush()
    stopped = False

    def _stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopped and broker.running:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
