"""The demo organization loads through the registry's API, and loading it again changes nothing."""

from __future__ import annotations

import pytest

from services.registry import demo
from tests.support import SECRET, Running

pytestmark = pytest.mark.dates


async def test_demo_loads_idempotently(registry: Running) -> None:
    org = demo.plan(seed=3, cadres=40)
    token = demo.root_token(SECRET, org)
    sent, skipped = await demo.load(registry.client, token, org)
    assert skipped == 0
    events = await registry.service.pool.fetchval("SELECT count(*) FROM events")
    assert sent == events
    assert await registry.service.pool.fetchval("SELECT count(*) FROM cadres") == 40
    assert await registry.service.pool.fetchval("SELECT count(*) FROM org_units") == len(org.units)

    again_sent, again_skipped = await demo.load(registry.client, token, org)
    assert again_sent == 0
    assert again_skipped == sent
    assert await registry.service.pool.fetchval("SELECT count(*) FROM events") == events
    assert await registry.service.store.verify_chain() is None
