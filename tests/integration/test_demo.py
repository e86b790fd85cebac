"""The demo organization loads through the registry's API, and loading it again changes nothing."""

from __future__ import annotations

import pytest

from runtime.demo import LATE_REASON
from services.registry import demo
from tests.support import SECRET, Running

pytestmark = pytest.mark.dates


async def test_demo_loads_idempotently(registry: Running) -> None:
    org = demo.plan(seed=3, cadres=40)
    token = demo.root_token(SECRET, org)
    sent, skipped = await demo.load(registry.client, token, org)
    assert skipped == 0
    events = await registry.service.pool.fetchval("SELECT count(*) FROM events")
    commands = "SELECT count(*) FROM events WHERE event_type <> 'LateEntryDeclared'"
    assert sent == await registry.service.pool.fetchval(commands)
    # The demo's history is entered late, on purpose and saying so: each command beyond the window is declared.
    late = await registry.service.pool.fetch(
        "SELECT DISTINCT body::jsonb -> 'payload' ->> 'reason' AS reason FROM events"
        " WHERE event_type = 'LateEntryDeclared'"
    )
    assert [row["reason"] for row in late] == [LATE_REASON]
    assert await registry.service.pool.fetchval("SELECT count(*) FROM cadres") == 40
    assert await registry.service.pool.fetchval("SELECT count(*) FROM org_units") == len(org.units)

    again_sent, again_skipped = await demo.load(registry.client, token, org)
    assert again_sent == 0
    assert again_skipped == sent
    assert await registry.service.pool.fetchval("SELECT count(*) FROM events") == events
    assert await registry.service.store.verify_chain() is None
