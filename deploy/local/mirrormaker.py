r"""Kafka MirrorMaker 2 (dedicated mode) as a child process: one process for every link of a local topology.

The jars are `org.apache.kafka:connect-mirror` at the broker's version, fetched once
like the broker's (deploy/local/jvm.py, `.cache/connect-mirror/<version>/lib`). The
properties file is rendered from a `deploy.mirroring.Topology` (the same text the
compose service runs), the JVM started in its own session with a modest heap, and
`start` returns once every link has carried a heartbeat written after the start
(`<source>.heartbeats` at the target): the link's source connector runs and copies.
It logs INFO to `mirrormaker.log` in its work directory.

    with LocalKafka() as city, LocalKafka() as county:
        topology = Topology.tree({"city": city.bootstrap_servers, "county": county.bootstrap_servers},
                                 {"county": "city"}, namespace=namespace)
        with LocalMirrorMaker(topology) as mirror:
            ...                  # county's <namespace>registry.events arrives at the city as county.<...>
            mirror.stop(); ...; mirror.start()   # a cut link
            mirror.kill(); ...; mirror.start()   # a crash

    # in the foreground until Ctrl-C:
    python -m deploy.local.mirrormaker --cluster city=127.0.0.1:9092 --cluster county=127.0.0.1:9093 \
        --parent county=city
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy import mirroring
from deploy.local import ManagedProcess, death_signal_prefix, jvm, run_sync, serve, stop_process_group, tail
from deploy.local.kafka import KAFKA_VERSION
from deploy.mirroring import Topology, Tuning

_HERE = Path(__file__).resolve().parent
ENTRY = "org.apache.kafka.connect.mirror.MirrorMaker"


def mirrormaker_classpath(version: str = KAFKA_VERSION) -> jvm.Classpath:
    """MirrorMaker 2's class path: `connect-mirror` at the broker's version and its logging binding."""
    return jvm.Classpath(
        name="connect-mirror",
        version=version,
        artifacts=(f"org.apache.kafka:connect-mirror:{version}", *jvm.SLF4J_TO_LOG4J),
        marker="connect-mirror-",
    )


class LocalMirrorMaker(ManagedProcess):
    """MirrorMaker 2 in dedicated mode for every link of `topology`, owned by this object.

    One process serves every link (in production each deployment runs one for the links
    into it: `--clusters <deployment>`, or Strimzi's `connectCluster`). Without `workdir`
    a temporary directory holds its properties and log and is removed by `stop`;
    MirrorMaker keeps its progress in the clusters, so a restart resumes.
    """

    _what = "MirrorMaker"

    def __init__(
        self,
        topology: Topology,
        workdir: Path | None = None,
        *,
        tuning: Tuning | None = None,
        heap: str = "256m",
    ) -> None:
        self.topology = topology
        self.tuning = tuning or Tuning()
        self._given = workdir.resolve() if workdir is not None else None
        self._workdir: Path | None = None
        self._heap = heap
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def properties_path(self) -> Path:
        """The properties file MirrorMaker runs with."""
        return self.workdir / "mm2.properties"

    def start(self, timeout: float = 120.0) -> str:
        """Start MirrorMaker; return its properties file's path once every link carries a fresh heartbeat.

        On failure (the JVM exits, or `timeout` passes) the process is stopped and a
        `RuntimeError` says why, with the end of its log.
        """
        if self._process is not None:
            msg = "MirrorMaker is already started"
            raise RuntimeError(msg)
        started_ms = int(time.time() * 1000)  # compared with Kafka record timestamps (wall clock, not business time)
        deadline = time.monotonic() + timeout
        lib = jvm.ensure_classpath(mirrormaker_classpath())
        java = jvm.java_executable()
        if self._workdir is None:
            self._workdir = self._given or Path(tempfile.mkdtemp(prefix="cadre-mirrormaker-"))
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.properties_path.write_text(mirroring.properties(self.topology, self.tuning))
            self._launch(java, lib)
            self._wait_replicating(started_ms, deadline, timeout)
        except BaseException:
            self.stop(5.0)  # the error already holds the end of the log
            raise
        return str(self.properties_path)

    def _launch(self, java: str, lib: Path) -> None:
        command = [
            *death_signal_prefix("TERM"),
            java,
            f"-Xmx{self._heap}",
            "-XX:+UseSerialGC",  # a 256 MiB heap needs no concurrent collector; fewer GC threads, less memory
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_HERE / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-Dcadre.log.file=mirrormaker.log",
            "-cp",
            f"{lib}/*",
            ENTRY,
            str(self.properties_path),
        ]
        with (self.workdir / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_replicating(self, started_ms: int, deadline: float, timeout: float) -> None:
        def alive() -> bool:
            return self.running

        try:
            run_sync(
                lambda: _heartbeats_after(self.topology.links, self.topology.clusters, started_ms, deadline, alive)
            )
        except TimeoutError as error:
            msg = f"MirrorMaker did not replicate within {timeout:.0f} s ({error})"
            raise self._failure(msg) from None
        except _ExitedError:
            code = self._process.returncode if self._process is not None else None
            msg = f"MirrorMaker exited with code {code} while starting"
            raise self._failure(msg) from None

    def _failure(self, message: str) -> RuntimeError:
        log = self.workdir / "mirrormaker.log"
        lines = (log.read_text(errors="replace") if log.exists() else "").splitlines()
        # With checkpoints off, every start logs that the checkpoint connector could not be configured: harmless.
        errors = [line for line in lines if " ERROR " in line and "MirrorCheckpointConnector" not in line]
        return RuntimeError(
            f"{message}; errors logged: {errors[-5:] or 'none'}; last lines of mirrormaker.log:\n{tail(log)}\n"
            f"last lines of stdout.log:\n{tail(self.workdir / 'stdout.log', 15)}"
        )

    def kill(self) -> None:
        """SIGKILL at once, as a crash would: no task commits its progress. `start` recovers."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, [(signal.SIGKILL, 10.0)])


def offsets_topic(source: str) -> str:
    """Where dedicated MirrorMaker keeps, in the target cluster, how far it copied `source`'s topics."""
    return f"mm2-offsets.{source}.internal"


async def forget_source(target_bootstrap: str, source: str) -> bool:
    """Forget how far MirrorMaker copied `source` into the target cluster (run it with MirrorMaker stopped).

    A level rebuilt has topics that start again at offset 0: the offsets remembered for the old
    ones would skip or misplace its records. Forgotten, the link copies every topic of the
    source again from its beginning; the target's ingest drops what it holds already (by
    position, ADR 0011). True when there was something to forget.
    """
    topic = offsets_topic(source)
    admin = AIOKafkaAdminClient(bootstrap_servers=target_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return False
        await admin.delete_topics([topic])
        for _ in range(120):
            if topic not in await admin.list_topics():
                return True
            await asyncio.sleep(0.5)
        msg = f"{topic} still exists a minute after its deletion"
        raise TimeoutError(msg)
    finally:
        await admin.close()


class _ExitedError(Exception):
    """The MirrorMaker process exited while we waited for it."""


async def _heartbeats_after(
    links: Sequence[mirroring.Link],
    clusters: Mapping[str, str],
    after_ms: int,
    deadline: float,
    alive: Callable[[], bool],
) -> None:
    """Wait until every link's target holds a heartbeat from its source written at or after `after_ms`."""
    waiting = {(link.source, link.target) for link in links}
    last: BaseException | None = None
    async with contextlib.AsyncExitStack() as stack:
        consumers: dict[str, AIOKafkaConsumer] = {}
        while waiting:
            if time.monotonic() > deadline:
                pending = ", ".join(f"{s}->{t}" for s, t in sorted(waiting))
                msg = f"no heartbeat yet over {pending}; last error: {last!r}"
                raise TimeoutError(msg)
            if not alive():
                raise _ExitedError
            for source, target in sorted(waiting):
                try:
                    if target not in consumers:
                        consumers[target] = await stack.enter_async_context(_consumer(clusters[target]))
                    if await _heartbeat_since(consumers[target], source, after_ms):
                        waiting.discard((source, target))
                except Exception as error:  # noqa: BLE001 - not ready yet; the last error is reported
                    last = error
            if waiting:
                await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def _consumer(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    try:
        await consumer.start()  # inside: a start that fails (no broker yet) is closed too
        yield consumer
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _heartbeat_since(consumer: AIOKafkaConsumer, source: str, after_ms: int) -> bool:
    """Whether `<source>.heartbeats` holds a record stamped at or after `after_ms`."""
    topic = mirroring.remote_topic(source, mirroring.HEARTBEATS)
    await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic that appears later
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return False
    found = await consumer.offsets_for_times({TopicPartition(topic, p): after_ms for p in partitions})
    return any(offset is not None for offset in found.values())


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.local.mirrormaker --cluster NAME=BOOTSTRAP ... --parent CHILD=PARENT ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.mirrormaker",
        description="Run MirrorMaker 2 for a tree of local deployments in the foreground until SIGINT/SIGTERM.",
    )
    parser.add_argument("--cluster", action="append", default=[], help="a deployment's Kafka: NAME=BOOTSTRAP")
    parser.add_argument("--parent", action="append", default=[], help="CHILD=PARENT (repeat for each link)")
    parser.add_argument("--namespace", default="", help="topic name prefix (TOPIC_NAMESPACE)")
    parser.add_argument("--workdir", type=Path, help="keep properties and logs here (default: a temporary directory)")
    parser.add_argument("--heap", default="256m", help="maximum JVM heap (default: 256m)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait until it replicates")
    args = parser.parse_args(argv)
    try:
        clusters = dict(_pair(item) for item in args.cluster)
        parents = dict(_pair(item) for item in args.parent)
        topology = Topology.tree(clusters, parents, namespace=args.namespace)
    except ValueError as error:
        parser.error(str(error))
    mirror = LocalMirrorMaker(topology, args.workdir, heap=args.heap)
    links = ", ".join(f"{link.source}->{link.target}" for link in topology.links)
    return serve(mirror, lambda: f"MIRRORMAKER_LINKS={links}", args.timeout)


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        msg = f"{item!r} is not NAME=VALUE"
        raise ValueError(msg)
    return name, value


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
