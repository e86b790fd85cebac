"""MirrorMaker 2 between real local clusters: a province, a city and a county, one MirrorMaker for every link.

What the sync of issue 13 stands on (ADR 0010): a county's topics arrive at the city
as `county.<topic>`, in order per partition, with the same keys, bytes and headers; what
the city passes on (`<service>.received`) arrives at the province as `city.<topic>`; a
parent's sync events (its directives) reach its children as `<parent>.sync.events`;
nothing else crosses. A cut link (MirrorMaker stopped) and a crash (SIGKILL) lose
nothing, and the only duplicates are re-sends of records already delivered (ADR 0011:
at least once, readers dedupe).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts import topics
from deploy.local import mirrormaker
from deploy.local.kafka import LocalKafka
from deploy.local.mirrormaker import LocalMirrorMaker
from deploy.mirroring import Topology, remote_topic
from runtime.kafka import ensure_topics, platform_topics, read_range, topic_ends
from tests.support import eventually

pytestmark = pytest.mark.infra

PARENTS = {"city": "province", "county": "city"}


@dataclass
class Levels:
    """Three clusters and the MirrorMaker linking them."""

    clusters: dict[str, str]
    namespace: str
    mirror: LocalMirrorMaker

    def topic(self, logical: str) -> str:
        return topics.namespaced(self.namespace, logical)


@pytest.fixture(scope="module")
def levels() -> Iterator[Levels]:
    """Province, city and county, each its own Kafka, and one MirrorMaker for the four links."""
    namespace = f"m{uuid.uuid4().hex[:8]}."
    with contextlib.ExitStack() as stack:
        clusters = {
            name: stack.enter_context(LocalKafka()).bootstrap_servers for name in ("province", "city", "county")
        }
        specs = platform_topics(namespace)
        for bootstrap in clusters.values():  # every level has the platform's topics
            # Right after creating them a loaded broker may still describe them with 0 partitions: ask again.
            asyncio.run(eventually(functools.partial(ensure_topics, bootstrap, specs), until=lambda found: not found))
        topology = Topology.tree(clusters, PARENTS, namespace=namespace)
        mirror = stack.enter_context(LocalMirrorMaker(topology))
        yield Levels(clusters, namespace, mirror)


Sent = list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]
"""(partition, key, value, headers) in the order sent."""


async def _produce(bootstrap: str, topic: str, count: int, tag: str, *, keys: int = 7) -> Sent:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: Sent = []
    try:
        futures = []
        for n in range(count):
            key = f"cadre-{n % keys}".encode()
            value = f"{tag}:{n}:".encode() + bytes([n % 256, 0, 255])  # not text: bytes must travel unchanged
            headers = [("event-type", b"Nominated"), ("n", str(n).encode())]
            futures.append((key, value, headers, await producer.send(topic, value, key=key, headers=headers)))
        for key, value, headers, future in futures:
            metadata = await future
            sent.append((metadata.partition, key, value, headers))
    finally:
        await producer.stop()
    return sent


async def _all_records(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    ends = await topic_ends(bootstrap, [topic])
    found: list[ConsumerRecord[bytes, bytes]] = []
    async for batch in read_range(bootstrap, {}, ends, 1000):
        found += batch
    return found


async def _arrived(bootstrap: str, topic: str, tag: str, want: int, timeout: float = 90.0) -> dict[int, list[bytes]]:
    """Once every one of `want` tagged records is at `topic`: the tagged values per partition, in offset order."""

    async def tagged() -> list[ConsumerRecord[bytes, bytes]]:
        with contextlib.suppress(Exception):  # the topic may not exist yet
            return [r for r in await _all_records(bootstrap, topic) if (r.value or b"").startswith(f"{tag}:".encode())]
        return []

    records = await eventually(tagged, until=lambda found: len({r.value for r in found}) >= want, timeout=timeout)
    by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    return {p: [r.value or b"" for r in sorted(rs, key=lambda r: r.offset)] for p, rs in by_partition.items()}


def _per_partition(sent: Sent) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for partition, _key, value, _headers in sent:
        out.setdefault(partition, []).append(value)
    return out


def at_least_once_in_order(source: list[bytes], target: list[bytes]) -> int:
    """Check that `target` holds every record of `source`, first copies in order, repeats only as re-sends.

    A re-send starts again at an earlier record and goes on in order from there; the
    stream never skips ahead. Returns how many records arrived more than once.
    """
    position = {value: index for index, value in enumerate(source)}
    assert len(position) == len(source), "the source values must be unique"
    indexes = [position[value] for value in target]  # a KeyError: something arrived that was never sent
    assert set(indexes) == set(range(len(source))), f"lost: {sorted(set(range(len(source))) - set(indexes))[:10]}"
    previous = -1
    for index in indexes:
        assert index <= previous + 1, f"skipped ahead from {previous} to {index}"
        previous = index
    return len(target) - len(source)


def test_a_countys_topic_arrives_at_the_city_in_order_with_keys_bytes_and_headers(levels: Levels) -> None:
    topic = levels.topic(topics.REGISTRY)
    sent = asyncio.run(_produce(levels.clusters["county"], topic, 300, "one-hop"))
    mirrored = remote_topic("county", topic)
    arrived = asyncio.run(_arrived(levels.clusters["city"], mirrored, "one-hop", 300))
    assert arrived == _per_partition(sent)  # same partition, same order, nothing twice

    records = {r.value: r for r in asyncio.run(_all_records(levels.clusters["city"], mirrored))}
    for _partition, key, value, headers in sent:
        assert records[value].key == key
        assert list(records[value].headers) == headers


def test_the_mirrored_topic_keeps_its_partitions_and_is_retained_forever(levels: Levels) -> None:
    mirrored = remote_topic("county", levels.topic(topics.REGISTRY))

    async def described() -> tuple[int, dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=levels.clusters["city"])
        await admin.start()
        try:
            (topic,) = await admin.describe_topics([mirrored])
            (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, mirrored)])
            return len(topic["partitions"]), {entry[0]: entry[1] for entry in response.resources[0][4]}
        finally:
            await admin.close()

    partitions, config = asyncio.run(described())
    assert partitions == 3
    assert config["retention.ms"] == "-1"  # the event history is the record, at every level


def test_two_hops_what_the_city_passes_on_reaches_the_province(levels: Levels) -> None:
    topic = levels.topic(topics.TRAINING)
    sent = asyncio.run(_produce(levels.clusters["county"], topic, 200, "two-hops"))
    at_city = asyncio.run(_arrived(levels.clusters["city"], remote_topic("county", topic), "two-hops", 200))
    # The city's sync service passes on what it verified as `<service>.received`; here a bare copy stands in for it.
    received = levels.topic(topics.received(topics.TRAINING))
    records = {r.value: r for r in asyncio.run(_all_records(levels.clusters["city"], remote_topic("county", topic)))}
    passed_on = asyncio.run(
        _produce_records(levels.clusters["city"], received, [records[v] for part in at_city.values() for v in part])
    )
    at_province = asyncio.run(_arrived(levels.clusters["province"], remote_topic("city", received), "two-hops", 200))
    assert at_province == _per_partition(passed_on)
    assert sorted(v for part in at_province.values() for v in part) == sorted(v for _, _, v, _ in sent)


async def _produce_records(bootstrap: str, topic: str, records: list[ConsumerRecord[bytes, bytes]]) -> Sent:
    """Send copies of `records` (key, value, headers) to `topic`, in the given order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent: Sent = []
        for record in records:
            headers = [(k, bytes(v)) for k, v in record.headers]
            metadata = await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
            sent.append((metadata.partition, record.key or b"", record.value or b"", headers))
        return sent
    finally:
        await producer.stop()


def test_only_the_named_topics_cross_and_only_one_hop(levels: Levels) -> None:
    up = (*topics.ALL, *topics.RECEIVED)
    for logical in up:
        asyncio.run(_produce(levels.clusters["county"], levels.topic(logical), 3, f"county-{logical}"))
        asyncio.run(_produce(levels.clusters["city"], levels.topic(logical), 3, f"city-{logical}"))
    for logical in up:
        topic = levels.topic(logical)
        asyncio.run(_arrived(levels.clusters["city"], remote_topic("county", topic), f"county-{logical}", 3))
        asyncio.run(_arrived(levels.clusters["province"], remote_topic("city", topic), f"city-{logical}", 3))

    sync = levels.topic(topics.SYNC)
    sent = asyncio.run(_produce(levels.clusters["province"], sync, 20, "directive"))
    at_city = asyncio.run(_arrived(levels.clusters["city"], remote_topic("province", sync), "directive", 20))
    assert at_city == _per_partition(sent)

    async def names(cluster: str) -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=levels.clusters[cluster])
        await admin.start()
        try:
            return {name for name in await admin.list_topics() if levels.namespace in name}
        finally:
            await admin.close()

    own = {topic.name for topic in platform_topics(levels.namespace)}
    mirrored_up = {levels.topic(logical) for logical in up}
    assert asyncio.run(names("county")) == own | {remote_topic("city", sync)}
    assert asyncio.run(names("city")) == own | {remote_topic("province", sync)} | {
        remote_topic("county", t) for t in mirrored_up
    }
    # Nothing goes further than one hop, nothing comes back, dead letters stay home.
    assert asyncio.run(names("province")) == own | {remote_topic("city", t) for t in mirrored_up}


def test_a_cut_link_loses_nothing_and_resends_only_what_was_delivered(levels: Levels) -> None:
    topic = levels.topic(topics.ASSESSMENT)
    mirrored = remote_topic("county", topic)
    before = asyncio.run(_produce(levels.clusters["county"], topic, 100, "cut-before"))
    asyncio.run(_arrived(levels.clusters["city"], mirrored, "cut-before", 100))

    pid = levels.mirror.pid
    levels.mirror.stop()  # the link is cut; the county keeps writing
    assert pid is not None
    assert not levels.mirror.running
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    during = asyncio.run(_produce(levels.clusters["county"], topic, 2000, "cut-during"))
    levels.mirror.start()

    asyncio.run(_arrived(levels.clusters["city"], mirrored, "cut-during", 2000))
    duplicates = _check_delivery(levels.clusters["city"], mirrored, before + during, b"cut-")
    # A clean stop commits how far each task copied: no repeat in any run so far (ADR 0011); the test holds
    # the guarantee, not the count.
    print(f"cut link: {duplicates} duplicates of 2,100 records")  # noqa: T201 - the figure the ADR quotes


def _check_delivery(bootstrap: str, topic: str, sent: Sent, prefix: bytes) -> int:
    """Every record of `sent` arrived at `topic`, in order per partition, repeats only as re-sends; the repeats."""
    records = sorted(asyncio.run(_all_records(bootstrap, topic)), key=lambda r: r.offset)
    duplicates = 0
    for partition, source in _per_partition(sent).items():
        target = [r.value or b"" for r in records if r.partition == partition and (r.value or b"").startswith(prefix)]
        duplicates += at_least_once_in_order(source, target)
    return duplicates


def test_a_crash_loses_nothing_and_resends_only_what_was_delivered(levels: Levels) -> None:
    topic = levels.topic(topics.NOTIFY)
    mirrored = remote_topic("county", topic)

    async def produce_while_crashing() -> Sent:
        sent: Sent = []
        for batch in range(20):  # 2,000 records over about 4 s; MirrorMaker dies midway, copying
            sent += await _produce(levels.clusters["county"], topic, 100, f"crash{batch:02}")
            if batch == 10:
                levels.mirror.kill()  # SIGKILL: no task commits how far it copied
            await asyncio.sleep(0.2)
        return sent

    sent = asyncio.run(produce_while_crashing())
    levels.mirror.start()

    asyncio.run(_arrived(levels.clusters["city"], mirrored, "crash19", 100))
    duplicates = _check_delivery(levels.clusters["city"], mirrored, sent, b"crash")
    print(f"crash: {duplicates} duplicates of 2,000 records")  # noqa: T201 - the figure the ADR quotes


def test_a_mirrormaker_that_cannot_start_says_why() -> None:
    topology = Topology.tree({"city": "127.0.0.1:1", "county": "127.0.0.1:2"}, {"county": "city"})
    mirror = LocalMirrorMaker(topology, heap="1k")  # the JVM refuses so small a heap
    with pytest.raises(RuntimeError, match=r"MirrorMaker exited with code \d+ while starting") as failure:
        mirror.start()
    assert "heap" in str(failure.value).lower()
    assert not mirror.running
    mirror.stop()  # still fine after a failed start


def test_the_foreground_command_refuses_a_tree_it_cannot_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_code:
        mirrormaker.main(["--cluster", "city=127.0.0.1:1", "--parent", "county=city"])
    assert exit_code.value.code == 2
    assert "county -> city: unknown deployment" in capsys.readouterr().err


def test_the_order_check_catches_loss_skips_and_strangers() -> None:
    source = [b"a", b"b", b"c", b"d"]
    assert at_least_once_in_order(source, [b"a", b"b", b"c", b"d"]) == 0
    assert at_least_once_in_order(source, [b"a", b"b", b"c", b"b", b"c", b"d"]) == 2  # a re-send
    with pytest.raises(AssertionError, match="lost"):
        at_least_once_in_order(source, [b"a", b"b", b"c"])
    with pytest.raises(AssertionError, match="skipped ahead"):
        at_least_once_in_order(source, [b"a", b"c", b"b", b"c", b"d"])
    with pytest.raises(KeyError):
        at_least_once_in_order(source, [b"a", b"b", b"x", b"c", b"d"])
