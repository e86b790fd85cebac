"""MirrorMaker 2 between local clusters: raw replication lag, and what a crash costs.

Lag: three clusters (province, city, county), one MirrorMaker for the tree. Records
leave the county at a fixed rate, each carrying the time it was sent; consumers at the
county itself (the baseline: the same producer and consumer with no MirrorMaker
between them), at the city (`county.<topic>`, one hop) and at the province note when it
arrived. For the second hop a bare pass-through at the city copies each arriving record
to the city's `registry.received`, which MirrorMaker takes on to the province
(`city.<...>registry.received`): the city's sync service does that, after verifying
(ADR 0010). Producer and consumers run in one process, so one clock stamps both ends.
This is the floor under the sync lag of the platform (county commit → province
projection), which adds the relay, the verification and the projection.

Crash: two clusters, records at a fixed rate, MirrorMaker killed with SIGKILL midway
and started again at once, for each delivery setting (ADR 0011): how many records
arrive twice, how long the target hears nothing, whether any is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.footprint import pss_kib
from bench.harness import Figure, Report, Series, percentile
from contracts import topics
from deploy.local.kafka import LocalKafka
from deploy.local.mirrormaker import LocalMirrorMaker
from deploy.local.ports import free_port
from deploy.mirroring import Topology, Tuning, remote_topic
from runtime.kafka import ensure_topics, platform_topics

NAMESPACE = "bench."
TOPIC = f"{NAMESPACE}{topics.REGISTRY}"
RECEIVED = f"{NAMESPACE}{topics.received(topics.REGISTRY)}"
KEYS = 64


@contextlib.contextmanager
def _clusters(names: list[str]) -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        brokers = {name: LocalKafka() for name in names}
        for broker in brokers.values():
            stack.callback(broker.stop)
            broker.start()
        for broker in brokers.values():
            asyncio.run(ensure_topics(broker.bootstrap_servers, platform_topics(NAMESPACE)))
        yield {name: broker.bootstrap_servers for name, broker in brokers.items()}


class _Arrivals:
    """Records arriving at one cluster's topic: when each sequence number arrived, in arrival order."""

    def __init__(self, bootstrap: str, topic: str, *, read_committed: bool = False) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.read_committed = read_committed
        self.seen: list[tuple[int, float, float]] = []
        """(sequence number, sent at, arrived at), perf_counter seconds."""

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed" if self.read_committed else "read_uncommitted",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            partitions: set[int] | None = None
            while not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - the topic may appear later
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    await asyncio.sleep(0.2)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                await consumer.seek_to_end(tp)
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        assert record.value is not None
                        seq, sent = record.value.decode().split(":")
                        self.seen.append((int(seq), float(sent), now))
        finally:
            await consumer.stop()


async def _pass_on(bootstrap: str, source: str, target: str, stop: asyncio.Event) -> None:
    """Copy every record arriving on `source` to `target` (same key and bytes) at once: a bare pass-through."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        partitions: set[int] | None = None
        while not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - the topic may appear later
            partitions = consumer.partitions_for_topic(source)
            if not partitions:
                await asyncio.sleep(0.2)
        assigned = [TopicPartition(source, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        for tp in assigned:
            await consumer.seek_to_end(tp)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    await producer.send(target, record.value, key=record.key, partition=tp.partition)
    finally:
        await producer.stop()
        await consumer.stop()


async def _produce(bootstrap: str, rate: float, seconds: float, on_tick: Callable[[float], None] | None = None) -> int:
    """Send `rate` records a second for `seconds` (open loop); return how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    sent = 0
    try:
        started = time.perf_counter()
        total = int(rate * seconds)
        pending = []
        while sent < total:
            due = started + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_tick is not None:
                on_tick(time.perf_counter() - started)
            value = f"{sent}:{time.perf_counter():.6f}".encode()
            pending.append(await producer.send(TOPIC, value, key=str(sent % KEYS).encode()))
            sent += 1
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def _hold(
    clusters: dict[str, str], rate: float, seconds: float, *, read_committed: bool = False
) -> dict[str, list[float]]:
    """Lags (ms) at the county itself, one hop and two hops, for one rate."""
    stop = asyncio.Event()
    readers = {
        "baseline": _Arrivals(clusters["county"], TOPIC),
        "1 hop": _Arrivals(clusters["city"], remote_topic("county", TOPIC), read_committed=read_committed),
        "2 hops": _Arrivals(clusters["province"], remote_topic("city", RECEIVED), read_committed=read_committed),
    }
    tasks = [asyncio.create_task(reader.run(stop)) for reader in readers.values()]
    tasks.append(asyncio.create_task(_pass_on(clusters["city"], remote_topic("county", TOPIC), RECEIVED, stop)))
    await asyncio.sleep(2)  # every reader assigned and at the end of its topic
    sent = await _produce(clusters["county"], rate, seconds)
    deadline = time.perf_counter() + 60
    while any(len(r.seen) < sent for r in readers.values()) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    return {
        name: [(arrived - sent_at) * 1000 for _, sent_at, arrived in reader.seen] for name, reader in readers.items()
    }


def run_lag(
    report: Report, *, seconds: float = 30.0, rates: tuple[int, ...] = (100, 500), tuning: Tuning | None = None
) -> None:
    """Replication lag, one and two hops, beside the same producer and consumer on one cluster."""
    tuning = tuning or Tuning()
    if tuning.exactly_once:
        tuning = dataclasses.replace(tuning, rest_port=free_port())
    label = " (exactly once, read_committed)" if tuning.exactly_once else ""
    with _clusters(["province", "city", "county"]) as clusters:
        topology = Topology.tree(clusters, {"city": "province", "county": "city"}, namespace=NAMESPACE)
        with (
            tempfile.TemporaryDirectory(prefix="bench-mm2-") as workdir,
            LocalMirrorMaker(topology, Path(workdir), tuning=tuning) as mirror,
        ):
            assert mirror.pid is not None
            idle = pss_kib(mirror.pid) / 1024
            asyncio.run(_hold(clusters, 200, 10, read_committed=tuning.exactly_once))  # warm-up (JIT), not counted
            for rate in rates:
                lags = asyncio.run(_hold(clusters, rate, seconds, read_committed=tuning.exactly_once))
                base = lags["baseline"]
                for hops in ("1 hop", "2 hops"):  # the second through a bare pass-through at the city
                    values = lags[hops]
                    for q in (50, 99):
                        report.add(
                            Figure(
                                name=f"MirrorMaker 2 lag{label}, {hops}, {rate}/s, p{q}",
                                value=percentile(values, q),
                                unit="ms",
                                baseline_name=f"same producer and consumer on one cluster, p{q}",
                                baseline=percentile(base, q),
                                notes=f"{len(values):,} of {int(rate * seconds):,} arrived; max {max(values):.0f} ms",
                            )
                        )
                    report.series.append(
                        Series(name=f"mirrormaker lag {hops} {rate} per s", ys=values, kind="hist", xlabel="ms")
                    )
            busy = pss_kib(mirror.pid) / 1024
            report.add(
                Figure(
                    name="MirrorMaker 2 PSS (4 links, 3 clusters), idle → after the holds",
                    value=busy,
                    unit="MiB",
                    notes=f"idle {idle:.0f} MiB; -Xmx256m, SerialGC",
                )
            )


@dataclass
class CrashTrial:
    """What one kill -9 cost under one setting."""

    setting: str
    sent: int
    duplicates: int
    lost: int
    paused_seconds: float
    """From the kill (and immediate restart) until the first record sent after the kill arrived."""


@dataclass
class _Crash:
    """When the kill happened, and the restart running beside the producer."""

    killed_at: float = 0.0
    restart: asyncio.Future[str] | None = None


async def _crash_trial(clusters: dict[str, str], mirror: LocalMirrorMaker, setting: str, rate: float) -> CrashTrial:
    stop = asyncio.Event()
    reader = _Arrivals(clusters["city"], remote_topic("county", TOPIC), read_committed=mirror.tuning.exactly_once)
    task = asyncio.create_task(reader.run(stop))
    await asyncio.sleep(2)
    crash = _Crash()
    loop = asyncio.get_running_loop()
    seconds = 30.0

    def tick(elapsed: float) -> None:
        if elapsed >= seconds / 3 and crash.restart is None:
            mirror.kill()
            crash.killed_at = time.perf_counter()
            crash.restart = loop.run_in_executor(None, mirror.start)  # at once; the producer keeps its rate

    sent = await _produce(clusters["county"], rate, seconds, tick)
    assert crash.restart is not None
    await crash.restart
    deadline = time.perf_counter() + 180
    while len({seq for seq, _, _ in reader.seen}) < sent and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    stop.set()
    await task
    seqs = [seq for seq, _, _ in reader.seen]
    after = [arrived for _, sent_at, arrived in reader.seen if sent_at > crash.killed_at]
    return CrashTrial(
        setting=setting,
        sent=sent,
        duplicates=len(seqs) - len(set(seqs)),
        lost=sent - len(set(seqs)),
        paused_seconds=(min(after) - crash.killed_at) if after else float("nan"),
    )


SETTINGS: dict[str, Tuning] = {
    "at least once, offsets flushed every 60 s (Connect's default)": Tuning(offset_flush_ms=60_000),
    "at least once, offsets flushed every 1 s (ours)": Tuning(offset_flush_ms=1_000),
    "at least once, offsets flushed every 100 ms": Tuning(offset_flush_ms=100),
    "exactly once (KIP-618), read_committed": Tuning(exactly_once=True),
    "exactly once, transactions time out after 10 s": Tuning(exactly_once=True, transaction_timeout_ms=10_000),
}


def run_crash(report: Report, *, rate: float = 500.0, settings: dict[str, Tuning] | None = None) -> list[CrashTrial]:
    """A kill -9 under each delivery setting: duplicates, silence, loss."""
    trials: list[CrashTrial] = []
    for setting, chosen in (settings or SETTINGS).items():
        tuning = dataclasses.replace(chosen, rest_port=free_port()) if chosen.exactly_once else chosen
        with _clusters(["city", "county"]) as clusters:
            topology = Topology.tree(clusters, {"county": "city"}, namespace=NAMESPACE)
            with LocalMirrorMaker(topology, tuning=tuning) as mirror:
                trial = asyncio.run(_crash_trial(clusters, mirror, setting, rate))
        trials.append(trial)
        report.add(
            Figure(
                name=f"kill -9 at {rate:.0f}/s: {setting}",
                value=trial.duplicates,
                unit="duplicates",
                notes=f"{trial.lost} lost of {trial.sent:,}; replication paused {trial.paused_seconds:.1f} s",
            )
        )
    return trials
