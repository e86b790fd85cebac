"""Kafka topics as the platform wants them: created explicitly, retained forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from contracts import topics

FOREVER = "-1"
_METADATA_SETTLE_SECONDS = 10.0
"""How long a topic just created may show no partitions before that counts as a mismatch."""


@dataclass(frozen=True)
class TopicSpec:
    """How one topic must look."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(
        default_factory=lambda: {"retention.ms": FOREVER, "retention.bytes": "-1", "cleanup.policy": "delete"}
    )


def platform_topics(
    namespace: str = "", *, partitions: int = 3, replication_factor: int = 1, min_insync_replicas: int = 1
) -> list[TopicSpec]:
    """Every topic of the platform, retained forever: each service's events, what it received, their DLQs."""
    config = {
        "retention.ms": FOREVER,
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": str(min_insync_replicas),
    }
    return [
        TopicSpec(
            name=topics.namespaced(namespace, name),
            partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config),
        )
        for logical in (*topics.ALL, *topics.RECEIVED)
        for name in (logical, topics.dlq(logical))
    ]


@dataclass(frozen=True)
class TopicMismatch:
    """A topic that exists but differs from its spec."""

    topic: str
    problem: str


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    for attempt in range(20):
        try:
            await admin.start()
        except KafkaConnectionError:
            if attempt == 19:  # noqa: PLR2004
                raise
            await asyncio.sleep(0.5)
        else:
            return admin
    raise AssertionError  # pragma: no cover


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[TopicMismatch]:
    """Create missing topics; return how existing ones differ from their specs (empty: all match)."""
    wanted = {spec.name: spec for spec in specs}
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if missing:
            # Another process may create them meanwhile; they are checked below either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name=s.name,
                            num_partitions=s.partitions,
                            replication_factor=s.replication_factor,
                            topic_configs=s.config,
                        )
                        for s in missing
                    ]
                )
        problems = await _mismatches(admin, wanted)
        # A topic just created may be described before its partitions reach the broker's metadata
        # (0 partitions for a moment): ask again for a while before calling that a mismatch.
        deadline = asyncio.get_running_loop().time() + _METADATA_SETTLE_SECONDS
        while any(p.problem.startswith("has 0 partitions") for p in problems):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
            problems = await _mismatches(admin, wanted)
        return problems
    finally:
        await admin.close()


async def _mismatches(admin: AIOKafkaAdminClient, wanted: dict[str, TopicSpec]) -> list[TopicMismatch]:
    problems: list[TopicMismatch] = []
    described = await admin.describe_topics(list(wanted))
    for topic in described:
        name = topic["topic"]
        partitions = len(topic["partitions"])
        spec = wanted[name]
        if partitions != spec.partitions:
            problems.append(TopicMismatch(name, f"has {partitions} partitions, wants {spec.partitions}"))
        replicas = {len(partition["replicas"]) for partition in topic["partitions"]}
        if replicas and replicas != {spec.replication_factor}:
            found = "/".join(str(n) for n in sorted(replicas))
            problems.append(TopicMismatch(name, f"replication factor {found}, wants {spec.replication_factor}"))
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            name = resource[3]
            actual = {entry[0]: entry[1] for entry in resource[4]}
            for key, value in wanted[name].config.items():
                if actual.get(key) != value:
                    problems.append(TopicMismatch(name, f"{key}={actual.get(key)}, wants {value}"))
    return problems


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, *, tries: int = 50) -> set[int] | None:
    """The partitions of `topic` as `consumer`'s broker knows them, asking anew up to `tries` times; None: no topic."""
    found = consumer.partitions_for_topic(topic)
    for _ in range(tries):
        if found is not None:
            break
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public call
        found = consumer.partitions_for_topic(topic)
        await asyncio.sleep(0.1)
    return None if found is None else set(found)


async def topic_ends(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics` now (their message counts, from offset 0)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            while found is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - no public call
                found = consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def read_range(
    bootstrap: str, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int], batch: int
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The records between `starts` and `ends`, in batches (each partition in order)."""
    todo = {tp for tp in ends if ends[tp] > starts.get(tp, 0)}
    if not todo:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=batch
    )
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, starts.get(tp, 0))
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=batch)
            records: list[ConsumerRecord[bytes, bytes]] = []
            for tp, part in fetched.items():
                records += [r for r in part if r.offset < ends[tp]]
                if part and part[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
            if records:
                yield records
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
