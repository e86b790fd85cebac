"""Apache Kafka 4.x in KRaft mode (one combined broker and controller), without Docker.

The broker's jars come from Maven Central through `mvn` once (deploy/local/jvm.py),
into a git-ignored cache (`.cache/kafka/<version>/lib`, or
`$CADRE_CACHE_DIR/kafka/<version>/lib`); later starts download nothing. Storage is formatted, the JVM started on free
loopback ports in its own session, and `start` returns only after a real produce
and consume round trip. The broker logs INFO to `kafka.log` in its work directory.

Automatic topic creation is off: the platform creates its topics explicitly (with
their partitions and retention), so a misspelt topic name fails instead of
silently creating a topic.

    python -m deploy.local.kafka                    # a broker in the foreground until Ctrl-C
    python -m deploy.local.kafka --workdir var/k    # the same, keeping its data in var/k
    python -m deploy.local.kafka fetch              # only fetch the jars; print their directory
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from deploy.local import ManagedProcess, death_signal_prefix, fetch_only, jvm, run_sync, serve, tail
from deploy.local.ports import accepts, free_ports

KAFKA_VERSION = "4.3.1"
PROBE_TOPIC = "_local_probe"
"""The topic `start` creates (one partition) for its produce/consume round trip."""

_HERE = Path(__file__).resolve().parent
_START_ATTEMPTS = 3
"""Starts tried when a port picked as free was taken by someone else before the broker bound it."""


def broker_classpath(version: str = KAFKA_VERSION) -> jvm.Classpath:
    """The broker's class path: `kafka_2.13` and its logging binding, cached in `.cache/kafka/<version>/`."""
    return jvm.Classpath(
        name="kafka",
        version=version,
        # kafka-tools: the admin commands (the containers' health check runs one)
        artifacts=(
            f"org.apache.kafka:kafka_2.13:{version}",
            f"org.apache.kafka:kafka-tools:{version}",
            *jvm.SLF4J_TO_LOG4J,
        ),
        marker="kafka_2.13-",
    )


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka `version`'s jars (its whole runtime class path), fetched on first use."""
    return jvm.ensure_classpath(broker_classpath(version))


def new_cluster_id() -> str:
    """A fresh cluster id, as `kafka-storage random-uuid` prints it (base64url, never starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka rejects those: they read as a command-line option
            return cluster_id


_PROPERTIES = """\
# Written by deploy/local/kafka.py on each start: one combined broker and controller (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{advertised}
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
log.cleaner.dedupe.buffer.size=33554432
# The platform creates its topics (partitions, retention.ms=-1); a misspelt name must not create one.
auto.create.topics.enable=false
"""


class LocalKafka(ManagedProcess):
    """One Kafka broker (KRaft, combined broker and controller) on loopback ports, owned by this object.

    Without `workdir`, a temporary directory holds everything and is removed by
    `stop`. With one, the broker keeps its data there across restarts (storage is
    formatted only when the directory holds none); `stop` leaves it in place.
    """

    _what = "Kafka"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        heap: str = "512m",
        partitions: int = 3,
        ports: tuple[int, int] | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self._given = workdir.resolve() if workdir is not None else None
        self._ports = ports
        """Broker and controller ports to use (a restart keeps its address); else free ones are picked."""
        self._advertised_port = advertised_port
        """The port clients are told to connect to (a proxy in front of the broker); else the broker's own."""
        self._workdir: Path | None = None
        self._heap = heap
        self._partitions = partitions
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        """The broker's (PLAINTEXT) port, once started."""
        self.controller_port = 0
        """The controller's port, once started."""
        self.bootstrap_servers = ""
        """`127.0.0.1:<port>`, once started."""

    def start(self, timeout: float = 60.0) -> str:
        """Start the broker; return its bootstrap servers once a produce/consume round trip worked.

        Fetches the jars on first use, picks two free loopback ports, writes
        `server.properties`, formats storage (unless the work directory already
        holds a formatted one) and starts the JVM in its own session. On any
        failure everything started is stopped and a `RuntimeError` says why,
        with the end of `kafka.log`.
        """
        if self._process is not None:
            msg = f"Kafka is already started on {self.bootstrap_servers}"
            raise RuntimeError(msg)
        deadline = time.monotonic() + timeout
        lib = ensure_jars()
        java = jvm.java_executable()
        self._workdir = self._given or Path(tempfile.mkdtemp(prefix="cadre-kafka-"))
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            attempts = 1 if self._ports else _START_ATTEMPTS
            for attempt in range(1, attempts + 1):
                self.port, self.controller_port = self._ports or free_ports(2)
                self.bootstrap_servers = f"127.0.0.1:{self.port}"
                self._write_properties()
                if not (self.workdir / "data" / "meta.properties").exists():
                    self._format(java, lib)
                self._launch(java, lib)
                if self._wait_listening(deadline, timeout, retry_port_clash=attempt < attempts):
                    break
            self._wait_round_trip(deadline, timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def _log_options(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={_HERE / 'log4j2.xml'}", f"-Dkafka.logs.dir={self.workdir}"]

    def _write_properties(self) -> None:
        text = _PROPERTIES.format(
            port=self.port,
            advertised=self._advertised_port or self.port,
            controller=self.controller_port,
            data=self.workdir / "data",
            partitions=self._partitions,
        )
        (self.workdir / "server.properties").write_text(text)

    def _format(self, java: str, lib: Path) -> None:
        shutil.rmtree(self.workdir / "data", ignore_errors=True)  # a half-formatted directory from a crash
        quick = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]  # a one-second tool: start fast, no JIT tiers
        command = [java, *quick, *self._log_options(), "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format"]
        command += ["-t", new_cluster_id(), "-c", str(self.workdir / "server.properties")]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            msg = f"formatting Kafka's storage failed (exit code {result.returncode}): {output}"
            raise RuntimeError(msg)

    def _launch(self, java: str, lib: Path) -> None:
        command = [
            *death_signal_prefix("TERM"),
            java,
            f"-Xmx{self._heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._log_options(),
            "-cp",
            f"{lib}/*",
            "kafka.Kafka",
            str(self.workdir / "server.properties"),
        ]
        with (self.workdir / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_listening(self, deadline: float, timeout: float, *, retry_port_clash: bool) -> bool:
        """Wait for the broker's port; False when it lost a port race and should be started again."""
        while not accepts(self.port):
            process = self._process
            if process is not None and process.poll() is not None:
                self._process = None
                if retry_port_clash and "Address already in use" in self._logs():
                    return False
                msg = f"Kafka exited with code {process.returncode} while starting"
                raise self._failure(msg)
            if time.monotonic() > deadline:
                msg = f"Kafka did not become ready in {timeout:.0f} s (nothing listens on {self.bootstrap_servers})"
                raise self._failure(msg)
            time.sleep(0.1)
        return True

    def _wait_round_trip(self, deadline: float, timeout: float) -> None:
        def alive() -> bool:
            return self.running

        try:
            run_sync(lambda: _round_trip_until(self.bootstrap_servers, deadline, alive))
        except TimeoutError as error:
            msg = f"Kafka did not become ready in {timeout:.0f} s ({error})"
            raise self._failure(msg) from None
        except _BrokerDiedError:
            code = self._process.returncode if self._process is not None else None
            msg = f"Kafka exited with code {code} while starting"
            raise self._failure(msg) from None

    def _logs(self) -> str:
        return "\n".join(
            (self.workdir / name).read_text(errors="replace")
            for name in ("kafka.log", "stdout.log")
            if (self.workdir / name).exists()
        )

    def _failure(self, message: str) -> RuntimeError:
        """`message` with the end of the broker's logs (read now: a temporary directory goes on stop)."""
        return RuntimeError(
            f"{message}; last lines of kafka.log:\n{tail(self.workdir / 'kafka.log')}\n"
            f"last lines of stdout.log:\n{tail(self.workdir / 'stdout.log', 15)}"
        )


class _BrokerDiedError(Exception):
    """The broker process exited during the readiness probe."""


async def _round_trip_until(bootstrap: str, deadline: float, alive: Callable[[], bool]) -> None:
    """Try `_round_trip` until it succeeds; TimeoutError (naming the last error) at `deadline`."""
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"last probe error: {last!r}"
            raise TimeoutError(msg)
        try:
            await asyncio.wait_for(_round_trip(bootstrap), remaining)
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"; the last one is reported
            last = error
        else:
            return
        if not alive():
            raise _BrokerDiedError
        await asyncio.sleep(0.25)


async def _round_trip(bootstrap: str) -> None:
    """Create the probe topic (if missing), produce a record, and consume that record back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: PLC0415 - only when starting
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415
    from aiokafka.errors import TopicAlreadyExistsError, for_code  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        response = await admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)])
        for _topic, code, *_ in response.topic_errors:
            if code not in {0, TopicAlreadyExistsError.errno}:
                raise for_code(code)
    finally:
        await admin.close()
    probe = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000)
    try:
        await producer.start()
        sent = await producer.send_and_wait(PROBE_TOPIC, probe)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    try:
        await consumer.start()
        partition = TopicPartition(PROBE_TOPIC, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        record = await consumer.getone()
        if record.value != probe:
            msg = "the probe record came back different"
            raise RuntimeError(msg)
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.local.kafka [fetch] [--workdir DIR] [--heap SIZE]`."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.kafka",
        description="Run a local Kafka broker in the foreground until SIGINT/SIGTERM, or only fetch its jars.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "fetch"], default="run")
    parser.add_argument("--workdir", type=Path, help="keep the broker's data here (default: a temporary directory)")
    parser.add_argument("--heap", default="512m", help="maximum JVM heap (default: 512m)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness (default: 60)")
    args = parser.parse_args(argv)
    if args.action == "fetch":
        return fetch_only(ensure_jars)
    broker = LocalKafka(args.workdir, heap=args.heap)
    return serve(broker, lambda: f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", args.timeout)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
