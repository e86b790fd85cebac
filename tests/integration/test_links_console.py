"""The console's links screen at a city linked with its county: the links live, and offline bundles in and out.

The two deployments are test_bundles' (each its own registry and sync service in this process,
with keys, topics and databases of its own; nothing links them but what is carried). The
city's console runs in this process against the city's registry and sync service. Its session
is the one a sign-in makes (a sealed cookie with an access token, the session opened at the
registry): signing in through the provider is test_console's and test_levels_consoles' to test,
and a provider that starts slowly on a busy machine then fails only those.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.envelope import Actor, Role
from deploy.local.signin import Browserish
from runtime import clock
from runtime.auth import issue_token
from runtime.settings import DEV_SESSION_KEY
from services.console.app import create_app as console_app
from services.console.session import Sealer, Session
from services.console.settings import ConsoleSettings
from tests.integration.test_bundles import (
    CITY,
    CITY_ROOT,
    COUNTY,
    Levels,
    city_lists,
    edit_line,
    nominate,
    quiet,
    rezip,
    signed_and_published,
    start_levels,
)
from tests.support import SECRET, Launch, eventually

NOWHERE = "http://127.0.0.1:9"
"""The services this screen does not use: nothing answers there."""


@dataclass
class CityConsole:
    levels: Levels
    client: Browserish
    app: FastAPI


async def signed_in(client: Browserish, levels: Levels, user: str, role: Role) -> str:
    """What a sign-in leaves: the sealed session cookie (a token of `user` at the city's root), open at the registry.

    Also given back, for a browser to carry.
    """
    grant = {"subject": f"subject-{user}", "name": user, "org_code": "bh", "role": role.value}
    granted = await levels.city.registry.client.put(f"/access/{user}", json=grant, headers=CITY)
    assert granted.is_success, granted.text  # the registry keeps a session open only for someone granted
    token = issue_token(SECRET, Actor(user=user, org_path=CITY_ROOT, role=role))
    now = clock.now().timestamp()
    session = Session(user=user, name=user, role=role.value, org_path=CITY_ROOT, org_code="bh", org_name="Baihe City",
                      access_token=token, refresh_token="", access_expires=now + 3600, ends=now + 3600)  # fmt: skip
    ends_at = datetime.fromtimestamp(session.ends, tz=UTC).isoformat()
    bearer = {"Authorization": f"Bearer {token}"}
    # The grant reaches the table sessions are checked against through the registry's own topic: until it
    # has, the registry refuses to open a session (403), as it does for anyone with no grant.
    await eventually(
        lambda: levels.city.registry.client.post(
            "/sessions", json={"session_id": session.sid, "ends_at": ends_at}, headers=bearer
        ),
        until=lambda answer: answer.status_code == 204,
    )
    opened = await levels.city.registry.client.get(f"/sessions/{session.sid}", headers=bearer)
    assert opened.status_code == 204, opened.text
    sealed = Sealer(DEV_SESSION_KEY).seal_session(session)
    client.jar[client.base_url.removeprefix("http://")]["cadre_session"] = sealed
    return sealed


@contextlib.asynccontextmanager
async def city_console_at(launch: Launch, namespace: str, url: str) -> AsyncIterator[CityConsole]:
    """The city's console at `url` (the browser test serves it there), with the two levels behind it."""
    levels = await start_levels(launch, namespace)
    settings = ConsoleSettings(
        public_url=url, sync_url="http://sync", registry_url="http://registry",
        training_url=NOWHERE, assessment_url=NOWHERE, notify_url=NOWHERE, audit_url=NOWHERE, selection_url=NOWHERE,
    )  # fmt: skip
    transports: dict[str, httpx.AsyncBaseTransport] = {
        "registry": httpx.ASGITransport(app=levels.city.registry.app),
        "sync": httpx.ASGITransport(app=levels.city.sync.app),
    }
    app = console_app(settings, transports=transports)
    client = Browserish(transport=httpx.ASGITransport(app=app), base_url=url)
    client.jar[url.removeprefix("http://")] = {"cadre_lang": "en"}  # the screens in English here
    async with app.router.lifespan_context(app):
        try:
            yield CityConsole(levels, client, app)
        finally:
            await client.aclose()


@pytest.fixture
async def city_console(launch: Launch, namespace: str) -> AsyncIterator[CityConsole]:
    async with city_console_at(launch, namespace, "http://127.0.0.1:8080") as console:
        yield console


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def arrivals(levels: Levels) -> int:
    return int(await levels.city.sync.service.pool.fetchval("SELECT count(*) FROM arrivals"))


async def county_bundle(levels: Levels) -> bytes:
    """A bundle of the county's first nomination for the city, made by the county's sync service."""
    await nominate(levels.county, "Li Wei")
    await signed_and_published(levels.county.registry)
    answer = await levels.county.sync.client.get("/bundles", params={"to": "city"}, headers=COUNTY)
    assert answer.status_code == 200, answer.text
    return answer.content


def upload(token: str, bundle: bytes, **fields: str) -> dict[str, Any]:
    return {"data": {"csrf_token": token, **fields}, "files": {"bundle": ("county.zip", bundle, "application/zip")}}


async def test_the_city_organizer_sees_the_link_below_and_a_forged_bundle_is_refused_changing_nothing(
    city_console: CityConsole,
) -> None:
    levels, client = city_console.levels, city_console.client
    forged = rezip(await county_bundle(levels), edit_line)
    await signed_in(client, levels, "organizer.city", Role.ORGANIZER)
    page = await client.get("/links")
    assert page.status_code == 200, page.text[:500]
    assert 'href="/links" aria-current="page"' in page.text  # in the header, for an organizer
    assert 'hx-get="/links/status"' in page.text  # refreshed live
    assert 'title="county"' in page.text
    assert "nothing arrived yet" in page.text
    token = csrf(page)
    before = await quiet(levels.city.sync.service.pool, levels.city.registry.service.pool)

    refused = await client.post("/links/check", **upload(token, forged))
    assert refused.status_code == 422, refused.text[:500]
    assert "Bundle refused: nothing was applied" in refused.text
    forced = await client.post(
        "/links/import",
        **upload(token, forged, digest=hashlib.sha256(forged).hexdigest()),
        headers={"HX-Request": "true"},
    )
    assert forced.status_code == 200  # htmx swaps the verdict in below the form, whatever it says
    assert 'role="alert"' in forced.text
    assert "Bundle refused: nothing was applied" in forced.text
    assert await quiet(levels.city.sync.service.pool, levels.city.registry.service.pool) == before


async def test_a_good_bundle_is_shown_verified_then_imported_on_confirmation(city_console: CityConsole) -> None:
    levels, client = city_console.levels, city_console.client
    good = await county_bundle(levels)
    await signed_in(client, levels, "organizer.city", Role.ORGANIZER)
    token = csrf(await client.get("/links"))
    hx = {"HX-Request": "true"}

    checked = await client.post("/links/check", **upload(token, good), headers=hx)
    assert checked.status_code == 200, checked.text[:500]
    assert "The bundle verifies whole: nothing is applied yet" in checked.text
    digest = hashlib.sha256(good).hexdigest()
    assert f'name="digest" value="{digest}"' in checked.text
    assert 'hx-post="/links/import"' in checked.text
    county_events = int(await levels.county.registry.service.pool.fetchval("SELECT count(*) FROM events"))
    assert f'<td data-label="Events">{county_events}</td>' in checked.text
    assert await arrivals(levels) == 0

    other = rezip(good, edit_line)
    mismatch = await client.post("/links/import", **upload(token, other, digest=digest))
    assert mismatch.status_code == 409  # not the file that was checked
    unconfirmed = await client.post("/links/import", **upload(token, good))
    assert unconfirmed.status_code == 422
    assert await arrivals(levels) == 0

    imported = await client.post("/links/import", **upload(token, good, digest=digest), headers=hx)
    assert imported.status_code == 200, imported.text[:500]
    assert "Bundle imported" in imported.text
    assert await arrivals(levels) == county_events
    await city_lists(levels, "Li Wei")

    live = await client.get("/links/status", headers=hx)
    assert live.status_code == 200
    assert 'id="links-status"' in live.text
    row = re.search(r'<span title="registry">registry</span></td>\s*<td data-label="Received">(\d+)</td>', live.text)
    assert row, live.text[:2000]
    assert int(row.group(1)) == county_events

    # What the city holds, for the county to export since; a bundle down to the county (its directives).
    ack = await client.get("/links/ack")
    assert ack.status_code == 200
    assert ack.json()["deployment"] == "city"
    assert "attachment" in ack.headers["content-disposition"]
    down = await client.post("/links/export", data={"csrf_token": token, "to": "county"})
    assert down.status_code == 200, down.text[:500]
    assert down.content[:2] == b"PK"
    assert 'filename="cadre-sync-city-to-county.zip"' in down.headers["content-disposition"]
    nowhere = await client.post("/links/export", data={"csrf_token": token, "to": "elsewhere"})
    assert nowhere.status_code == 404


async def test_a_viewer_is_not_offered_the_links(city_console: CityConsole) -> None:
    client = city_console.client
    await signed_in(client, city_console.levels, "viewer.city", Role.VIEWER)
    page = await client.get("/links")
    assert page.status_code == 403
    assert 'href="/links"' not in page.text
    await signed_in(client, city_console.levels, "auditor.city", Role.AUDITOR)
    seen = await client.get("/links")
    assert seen.status_code == 200  # auditors see the links
    assert "Import a bundle" not in seen.text  # and carry no bundle
