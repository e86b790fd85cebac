"""Assessment's demo loads through its API after the registry's, and loading it again changes nothing."""

from __future__ import annotations

import pytest

from services.assessment import demo as assessment_demo
from services.assessment.app import AssessmentSettings
from services.assessment.app import create_app as assessment_app
from services.registry import demo as registry_demo
from tests.support import SECRET, Launch, Running

pytestmark = pytest.mark.dates


async def test_assessment_demo_loads_idempotently(registry: Running, launch: Launch) -> None:
    assessment = await launch(assessment_app, AssessmentSettings, "assessment")
    org = registry_demo.plan(seed=5, cadres=50)
    token = registry_demo.root_token(SECRET, org)
    await registry_demo.load(registry.client, token, org)

    sent, skipped = await assessment_demo.load(assessment.client, token, org)
    pool = assessment.service.pool
    assert await pool.fetchval("SELECT count(*) FROM cycles") == 2
    assert await pool.fetchval("SELECT count(*) FROM cycles WHERE closed_on IS NOT NULL") == 1
    assert await pool.fetchval("SELECT count(*) FROM evaluations") > 20
    assert await pool.fetchval("SELECT count(*) FROM check_ins") > 10
    commands_events = await pool.fetchval("SELECT count(*) FROM events")
    assert commands_events >= sent  # evaluations may also raise reminders and exits

    again_sent, again_skipped = await assessment_demo.load(assessment.client, token, org)
    assert again_sent == 0
    assert again_skipped == sent + skipped
    assert await pool.fetchval("SELECT count(*) FROM events") == commands_events
