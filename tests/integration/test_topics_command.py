"""The topic command (`./dev topics`, the compose `topics` job, the Kubernetes Job) against the real Kafka."""

from __future__ import annotations

import os
import subprocess
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import topics
from deploy.local.stack import REPO
from tests.infra import Infra


def run_topics(infra: Infra, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "TOPIC_NAMESPACE": namespace}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "deploy.local", "topics", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def describe(infra: Infra, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def test_the_topic_command_creates_then_agrees_then_reports_mismatches(infra: Infra, namespace: str) -> None:
    prefix = f"{namespace}."
    first = run_topics(infra, prefix, "--partitions", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    expected = [f"{prefix}{t}" for logical in (*topics.ALL, *topics.RECEIVED) for t in (logical, topics.dlq(logical))]
    assert await describe(infra, expected) == dict.fromkeys(expected, 2)

    again = run_topics(infra, prefix, "--partitions", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(expected)} topics as specified" in again.stdout

    wrong = run_topics(infra, prefix, "--partitions", "4")
    assert wrong.returncode == 1
    assert f"{prefix}{topics.REGISTRY}: has 2 partitions, wants 4" in wrong.stdout
    assert await describe(infra, expected) == dict.fromkeys(expected, 2)  # a check never repartitions


async def test_a_topic_with_finite_retention_is_a_mismatch(infra: Infra, namespace: str) -> None:
    prefix = f"{namespace}."
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{prefix}{topics.TRAINING}", 3, 1, topic_configs={"retention.ms": "604800000"})]
        )
    finally:
        await admin.close()
    result = run_topics(infra, prefix)
    assert result.returncode == 1
    assert f"{prefix}{topics.TRAINING}: retention.ms=604800000, wants -1" in result.stdout
    assert result.stdout.count("mismatch") == 1
