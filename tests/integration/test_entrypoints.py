"""Every service run with its container image's entrypoint, as its own process, against the real stack.

The images run `python -m services.<name>` (deploy/docker/Dockerfile); so does the local
stack (deploy/local/stack.py), and so do these tests. Each process must become ready,
expose its metrics, and on SIGTERM exit 0 within its grace period having lost nothing:
every event the registry accepted is on its topic, and every consumer committed exactly
the messages it had handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import topics
from contracts.audit import ChainCheckpointed
from contracts.envelope import Envelope
from deploy.local import stack as local_stack
from runtime import checkpoint
from runtime.kafka import ensure_topics, platform_topics, topic_ends
from runtime.settings import DEV_CHECKPOINT_SEED
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, build_tree, nomination
from tests.integration.test_training import committed_offset
from tests.support import SECRET, create_database, eventually, read_topic, watermarks

GRACE_SECONDS = 30
CONSUMERS = {
    "training": ["training.pool", "training.retirement-reaction"],
    "assessment": ["assessment.pool"],
    "notify": ["notify.planner"],
    "audit": ["audit.archive"],
}


@pytest.fixture
def processes(infra: Infra, namespace: str, tmp_path: Path) -> Iterator[local_stack.Stack]:
    """All four services as child processes, each with its own database; all killed if a test fails."""
    stack = local_stack.Stack(
        kafka_bootstrap=infra.kafka_bootstrap, postgres_dsn=infra.postgres_dsn, secret=SECRET, namespace=f"{namespace}."
    )
    for name in local_stack.SERVICES:
        asyncio.run(create_database(infra.postgres_dsn, f"{namespace}_{name}"))
    asyncio.run(ensure_topics(infra.kafka_bootstrap, platform_topics(stack.namespace)))
    try:
        for name in local_stack.SERVICES:
            env = {**databases(infra, namespace, name), "SHUTDOWN_GRACE_SECONDS": "10"}
            local_stack.start_service(stack, name, tmp_path / "logs", env)
        yield stack
    finally:
        for service in stack.services.values():
            with contextlib.suppress(Exception):
                service.process.kill()
                service.process.wait(10)


def databases(infra: Infra, namespace: str, name: str) -> dict[str, str]:
    """A service's database, as the role it works as and as the owner that applies its schema."""
    owner = infra.database_dsn(f"{namespace}_{name}")
    return {"DATABASE_URL": local_stack.as_service_role(owner), "DATABASE_OWNER_URL": owner}


def terminate(service: local_stack.ServiceProcess) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the graceful shutdown took."""
    started = time.monotonic()
    service.process.terminate()
    try:
        code = service.process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{service.name} did not stop within {GRACE_SECONDS} s:\n{service.log_path.read_text()[-3000:]}")
    return code, time.monotonic() - started


async def count(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def topic_size(infra: Infra, topic: str) -> int:
    """Messages on `topic` (the sum of its partitions' end offsets)."""
    return sum((await topic_ends(infra.kafka_bootstrap, [topic])).values())


def positions(records: list[Any]) -> dict[tuple[int, int], int]:
    """(partition, offset) → the position the relay gave that record."""
    return {(r.partition, r.offset): int(dict(r.headers)["position"]) for r in records}


async def handled(dsn: str, consumer: str, topic: str, at: dict[tuple[int, int], int]) -> int:
    """How many of the topic's records the consumer has handled (records up to its watermark in each partition)."""
    marks = await watermarks(dsn, consumer, topic)
    return sum(1 for (partition, _), position in at.items() if position <= marks.get(partition, 0))


async def test_each_entrypoint_is_ready_measured_and_stops_cleanly_losing_nothing(
    processes: local_stack.Stack, infra: Infra, namespace: str
) -> None:
    for service in processes.services.values():
        await asyncio.to_thread(local_stack.wait_ready, service)

    async with httpx.AsyncClient(base_url=processes.services["registry"].url, timeout=30) as registry:
        await build_tree(registry)
        responses = await asyncio.gather(
            *(registry.post("/cadres", json=nomination(full_name=f"Cadre {n}"), headers=CITY) for n in range(30))
        )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    accepted = 5 + len(responses)  # five units, then the nominations

    for name, service in processes.services.items():
        # Metrics on a port of their own, never on the API's: /metrics there is not found.
        assert httpx.get(f"{service.url}/metrics", timeout=5).status_code == httpx.codes.NOT_FOUND
        metrics = httpx.get(service.metrics_url, timeout=5).text
        assert "cadre_http_request_seconds" in metrics, name
        assert "cadre_relay_lag_events" in metrics or name != "registry", name
        for consumer in CONSUMERS.get(name, []):
            assert f'cadre_handler_errors_total{{consumer="{consumer}",service="{name}"}} 0.0' in metrics, name
    registry_metrics = httpx.get(processes.services["registry"].metrics_url, timeout=5).text
    assert 'cadre_events_appended_total{service="registry"}' in registry_metrics

    # The registry stops right after its last command: the relay must still publish all of it.
    code, took = terminate(processes.services["registry"])
    assert code == 0, processes.services["registry"].log_path.read_text()[-3000:]
    assert took < GRACE_SECONDS
    # On its way out it also signed the head of its chain (one ChainCheckpointed event).
    registry_dsn = infra.database_dsn(f"{namespace}_registry")
    assert await count(registry_dsn, "SELECT count(*) FROM events WHERE stream_id <> 'chain-checkpoints'") == accepted
    stored = accepted + 1
    assert await count(registry_dsn, "SELECT count(*) FROM events") == stored
    topic = f"{namespace}.{topics.REGISTRY}"
    published = await read_topic(infra.kafka_bootstrap, topic, count=stored)
    assert len({r.value for r in published}) == stored
    assert await topic_size(infra, topic) == stored  # and nothing twice
    last = max((Envelope.from_bytes(r.value) for r in published), key=lambda e: e.position)
    signed = ChainCheckpointed.model_validate(last.payload)
    assert signed.position == accepted
    public = checkpoint.private_key(DEV_CHECKPOINT_SEED).public_key()
    assert checkpoint.verify(public, "registry", "local", signed)
    accepted = stored  # what the consumers must see

    # The consumers stop while (or after) they work: what they committed is exactly what they handled.
    at = positions(published)
    for name, consumers in CONSUMERS.items():
        dsn = infra.database_dsn(f"{namespace}_{name}")
        await eventually(functools.partial(handled, dsn, consumers[0], topic, at), until=lambda n: n >= accepted // 2)
        code, took = terminate(processes.services[name])
        assert code == 0, processes.services[name].log_path.read_text()[-3000:]
        for consumer in consumers:
            done = await handled(dsn, consumer, topic, at)
            offsets = [await committed_offset(infra, consumer, topic, p) for p in range(3)]
            assert sum(max(0, o) for o in offsets) == done, (name, consumer, offsets, done)

    # Started again with the same command, each catches up to every message exactly once.
    for name in CONSUMERS:
        restarted = local_stack.start_service(
            processes,
            name,
            processes.services[name].log_path.parent,
            databases(infra, namespace, name),
        )
        await asyncio.to_thread(local_stack.wait_ready, restarted)
    for name, consumers in CONSUMERS.items():
        dsn = infra.database_dsn(f"{namespace}_{name}")
        for consumer in consumers:
            await eventually(functools.partial(handled, dsn, consumer, topic, at), until=lambda n: n == accepted)
        code, _ = terminate(processes.services[name])
        assert code == 0
