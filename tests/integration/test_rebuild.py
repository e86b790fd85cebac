"""Rebuilding a projection from its topic while the service serves and consumes (real Kafka and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from contracts import topics
from deploy.local.stack import REPO
from runtime import clock, rebuild
from services.assessment.app import SPEC as ASSESSMENT
from services.assessment.app import AssessmentSettings
from services.assessment.app import create_app as assessment_app
from services.training.app import SPEC as TRAINING
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests import support
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, build_tree, nominate
from tests.support import Launch, Running, eventually

pytestmark = pytest.mark.dates

TABLES = ("units", "pool_cadres")


async def caught_up(training: Running, registry: Running) -> None:
    """Wait until training's pool consumer handled every registry event."""
    topic = registry.service.settings.topic(topics.REGISTRY)
    await support.caught_up(training.service.pool, "training.pool", registry.service.pool, topic)


async def differences(training: Running, schema: str) -> dict[str, tuple[int, int, int]]:
    """Per table: rows only in the live table, rows only in `schema`'s copy, rows in the live table.

    Read as the tables' owner: the old copies are the owner's alone (the service's login owns nothing).
    """
    result = {}
    owner = await asyncpg.connect(training.service.settings.owner_dsn)
    try:
        for table in TABLES:
            live = f'public."{table}"'
            other = f'"{schema}"."{table}"'
            only_live = await owner.fetchval(f"SELECT count(*) FROM (TABLE {live} EXCEPT ALL TABLE {other}) d")
            only_other = await owner.fetchval(f"SELECT count(*) FROM (TABLE {other} EXCEPT ALL TABLE {live}) d")
            rows = await owner.fetchval(f"SELECT count(*) FROM {live}")
            result[table] = (int(only_live), int(only_other), int(rows))
    finally:
        await owner.close()
    return result


async def test_a_rebuild_while_writing_equals_a_clean_rebuild_row_for_row(
    launch: Launch, registry: Running, infra: Infra, namespace: str
) -> None:
    training = await launch(training_app, TrainingSettings, "training")
    await build_tree(registry.client)
    for n in range(10):
        await nominate(registry, full_name=f"Before {n}")
    await caught_up(training, registry)

    async def keep_writing() -> None:
        for n in range(10):
            await nominate(registry, full_name=f"During {n}")
            await asyncio.sleep(0.02)

    seen: list[tuple[int, int]] = []
    writer = asyncio.create_task(keep_writing())
    settings = training.service.settings
    first = await rebuild.rebuild(TRAINING, settings, "pool", progress=lambda read, total: seen.append((read, total)))
    await writer
    assert seen
    assert seen[-1][0] == first.messages
    assert [read for read, _ in seen] == sorted(read for read, _ in seen)
    assert rebuild.REBUILD_PROGRESS.labels("training", "pool")._value.get() == 1.0

    # The service kept serving; after the switch its consumer goes on in the rebuilt tables.
    response = await training.client.get("/programs", headers=CITY)
    assert response.status_code == 200
    for n in range(3):
        await nominate(registry, full_name=f"After {n}")
    await caught_up(training, registry)
    assert await training.service.pool.fetchval("SELECT count(*) FROM pool_cadres") == 23

    # A clean rebuild from the topic now equals the live tables row for row.
    second = await rebuild.rebuild(TRAINING, settings, "pool")
    assert second.caught_up == 0
    assert second.replaced_schema is not None
    assert await differences(training, second.replaced_schema) == {"units": (0, 0, 5), "pool_cadres": (0, 0, 23)}
    # The watermarks handed over at the switch are where the relay is: nothing to do twice, nothing left out.
    await caught_up(training, registry)


async def test_the_rebuild_command_shows_progress_and_refuses_what_it_cannot_rebuild(
    launch: Launch, registry: Running, infra: Infra, namespace: str
) -> None:
    training = await launch(training_app, TrainingSettings, "training")
    await build_tree(registry.client)
    await nominate(registry, full_name="Li Wei")
    await caught_up(training, registry)
    env = {
        **os.environ,
        "DATABASE_URL": infra.database_dsn(f"{namespace}_training"),
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "TOPIC_NAMESPACE": f"{namespace}.",
        "COLUMNS": "120",
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the training service lives on this event loop, and a transaction of its consumer
        # left waiting on a blocked loop would hold the lock the rebuild's switch waits for.
        return await asyncio.to_thread(
            subprocess.run,  # our own interpreter and module
            [sys.executable, "-m", "runtime.rebuild", *args],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    done = await run("training", "pool")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilt training.pool: 6 events" in done.stdout
    assert "events/s" in done.stdout
    with pytest.raises(ValueError, match=r"cannot be rebuilt|no projection"):
        rebuild.rebuildable(TRAINING, "retirement-reaction")
    refused = await run("training", "nothing")
    assert refused.returncode != 0
    assert "no projection 'nothing'" in refused.stderr
    assert await training.service.pool.fetchval("SELECT count(*) FROM pool_cadres") == 1


async def test_assessments_view_of_the_registry_rebuilds_to_the_same_rows(launch: Launch, registry: Running) -> None:
    assessment = await launch(assessment_app, AssessmentSettings, "assessment")
    await build_tree(registry.client)
    for n in range(4):
        await nominate(registry, full_name=f"Cadre {n}")
    retired = await registry.client.post(
        f"/cadres/{await first_cadre(registry)}/retirement",
        json={"reason": "withdrew", "effective_on": clock.today().isoformat()},  # read after the nominations
        headers=CITY,
    )
    assert retired.status_code == 200, retired.text
    await eventually(
        lambda: assessment.service.pool.fetchval("SELECT count(*) FROM pool_cadres WHERE NOT in_pool"),
        until=lambda n: n == 1,
    )
    done = await rebuild.rebuild(ASSESSMENT, assessment.service.settings, "pool")
    assert done.replaced_schema is not None
    owner = await asyncpg.connect(assessment.service.settings.owner_dsn)  # the old copies are the owner's
    try:
        for table in ("units", "pool_cadres"):
            live, old = f'public."{table}"', f'"{done.replaced_schema}"."{table}"'
            differ = await owner.fetchval(
                f"SELECT count(*) FROM ((TABLE {live} EXCEPT ALL TABLE {old})"
                f" UNION ALL (TABLE {old} EXCEPT ALL TABLE {live})) d"
            )
            assert differ == 0, table
    finally:
        await owner.close()


async def first_cadre(registry: Running) -> str:
    response = await registry.client.get("/cadres", headers=CITY)
    return str(response.json()["items"][0]["cadre_id"])
