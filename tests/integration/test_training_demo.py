"""Training's demo loads through its API after the registry's, and loading it again changes nothing."""

from __future__ import annotations

import pytest

from services.registry import demo as registry_demo
from services.training import demo as training_demo
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests.support import SECRET, Launch, Running

pytestmark = pytest.mark.dates


async def test_training_demo_loads_idempotently(registry: Running, launch: Launch) -> None:
    training = await launch(training_app, TrainingSettings, "training")
    org = registry_demo.plan(seed=4, cadres=40)
    token = registry_demo.root_token(SECRET, org)
    await registry_demo.load(registry.client, token, org)

    sent, skipped = await training_demo.load(training.client, token, org)
    assert sent > 40
    pool = training.service.pool
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM programs) AS programs, (SELECT count(*) FROM enrolments) AS enrolments,"
        " (SELECT count(*) FROM postings) AS postings, (SELECT count(*) FROM self_study) AS study"
    )
    assert counts is not None
    assert counts["programs"] == 10
    assert counts["enrolments"] > 0
    assert counts["postings"] > 0
    assert counts["study"] > 0
    events = await pool.fetchval("SELECT count(*) FROM events")
    # One event per command sent, and a LateEntryDeclared for each command dated beyond the backdating window.
    assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type <> 'LateEntryDeclared'") == sent
    assert 0 < await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'LateEntryDeclared'") <= sent

    again_sent, again_skipped = await training_demo.load(training.client, token, org)
    assert again_sent == 0
    assert again_skipped == sent + skipped
    assert await pool.fetchval("SELECT count(*) FROM events") == events
