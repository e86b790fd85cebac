"""The cadre's own page and the leader's page, through the console with a real Keycloak sign-in (ADR 0028)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.envelope import Role
from deploy.local.signin import Browserish, console_sign_in
from services.registry import demo
from tests.integration.test_console import ConsoleStack, console_for
from tests.support import Launch


@pytest.fixture
async def console(launch: Launch, keycloak: str, console_port: int) -> AsyncIterator[ConsoleStack]:
    async with console_for(launch, keycloak, console_port) as stack:
        yield stack


def browser_for(console: ConsoleStack) -> Browserish:
    """A second browser on the same console (its own cookies)."""
    return Browserish(transport=httpx.ASGITransport(app=console.app), base_url=console.url)


async def test_the_leader_sees_the_units_cadres_by_mentor_with_what_is_overdue(console: ConsoleStack) -> None:
    leader = next(p for p in demo.people(console.org) if p.user_id.startswith("leader."))
    signed_in = await console_sign_in(console.client, leader.login)
    assert signed_in.status_code == 200, signed_in.text[:500]
    assert 'href="/leader"' in signed_in.text  # offered to the unit's responsible leader
    page = await console.client.get("/leader")
    assert page.status_code == 200, page.text[:500]
    assert 'href="/responsibility"' in page.text
    in_unit = [c for c in console.org.cadres if c.unit.path.startswith(leader.unit.path) and not c.retirement]
    outside = [c for c in console.org.cadres if not c.unit.path.startswith(leader.unit.path)]
    assert in_unit
    for cadre in in_unit:
        assert f"/cadres/{cadre.cadre_id}" in page.text
    for cadre in outside:
        assert str(cadre.cadre_id) not in page.text
    mentors = {c.mentor for c in in_unit if c.mentor}
    assert mentors
    for mentor in mentors:
        assert f'title="{mentor}"' in page.text  # each mentor's group, the user id on hover
    assert 'id="summary"' in page.text

    # Someone who leads no unit is not offered the page.
    other = browser_for(console)
    try:
        organizer = await console_sign_in(other, "organizer.county")
        assert 'href="/leader"' not in organizer.text
    finally:
        await other.aclose()


async def test_a_cadre_is_offered_only_their_own_page(console: ConsoleStack) -> None:
    own = next(p for p in demo.people(console.org) if p.role is Role.CADRE)
    signed_in = await console_sign_in(console.client, own.login)
    assert signed_in.status_code == 200, signed_in.text[:500]
    assert str(signed_in.url).endswith("/me")
    assert own.name in signed_in.text
    assert 'href="/pool"' not in signed_in.text
    assert 'href="/me"' in signed_in.text
    pool = await console.client.get("/pool", follow_redirects=False)
    assert pool.status_code == 303
    assert pool.headers["location"] == "/me"
    other = next(c for c in console.org.cadres if str(c.cadre_id) != own.user_id)
    assert (await console.client.get(f"/cadres/{other.cadre_id}")).status_code == 404
    for screen in ("/due", "/statistics", "/responsibility"):
        assert (await console.client.get(screen)).status_code == 403, screen
