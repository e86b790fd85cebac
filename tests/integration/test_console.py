"""The console against real services and a real Keycloak: sign-in, scope, CSRF, sign-out, the front door."""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from deploy.local.signin import Browserish, console_sign_in
from exchange import lrmx
from runtime import clock, guard
from runtime.settings import DEV_SESSION_KEY, settings_class
from services import asyncapi as documents
from services.console.app import create_app as console_app
from services.console.session import Sealer
from services.console.settings import ConsoleSettings
from services.registry import demo
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from tests.support import SECRET, Launch, Running, auth, eventually


@dataclass
class ConsoleStack:
    client: Browserish
    org: demo.DemoOrg
    url: str
    app: FastAPI
    services: dict[str, Running] = field(default_factory=dict)
    """Each service by name (to lay out data through its own API)."""


@contextlib.asynccontextmanager
async def console_for(
    launch: Launch, keycloak: str, console_port: int, *, cadres: int = 60
) -> AsyncIterator[ConsoleStack]:
    """Every service (the registry with the demo) and the console in this process; its client signs in for real."""
    registry = await launch(registry_app, RegistrySettings, "registry", oidc_issuer=keycloak)
    transports: dict[str, httpx.AsyncBaseTransport] = {"registry": httpx.ASGITransport(app=registry.app)}
    services = {"registry": registry}
    for name in ("training", "assessment", "selection", "notify", "audit"):
        module = importlib.import_module(f"services.{name}.app")
        service = await launch(module.create_app, settings_class(module), name, oidc_issuer=keycloak)
        transports[name] = httpx.ASGITransport(app=service.app)
        services[name] = service
    org = demo.plan(cadres=cadres)
    await demo.load(registry.client, demo.root_token(SECRET, org), org)
    url = f"http://127.0.0.1:{console_port}"
    settings = ConsoleSettings(public_url=url, oidc_issuer=keycloak)
    app = console_app(settings, transports=transports)
    client = Browserish(transport=httpx.ASGITransport(app=app), base_url=url)
    async with app.router.lifespan_context(app):
        await eventually(
            lambda: registry.client.get("/access", headers=auth("demo.organizer", org.root.path)),
            until=lambda r: len(r.json()) >= len(demo.people(org)),
        )
        await eventually(  # every unit's team answers (selection knows the units from registry.events)
            lambda: services["selection"].client.get(f"/teams/{org.units[-1].code}", headers=auth("u", org.root.path)),
            until=lambda r: r.status_code == 200,
        )
        try:
            yield ConsoleStack(client, org, url, app, services)
        finally:
            await client.aclose()


@pytest.fixture
async def console(launch: Launch, keycloak: str, console_port: int) -> AsyncIterator[ConsoleStack]:
    async with console_for(launch, keycloak, console_port) as stack:
        yield stack


async def test_a_county_organizer_signs_in_and_sees_only_the_county(console: ConsoleStack) -> None:
    page = await console_sign_in(console.client, "organizer.county")
    assert page.status_code == 200, page.text[:500]
    assert str(page.url).endswith("/pool")
    county = next(p for p in demo.people(console.org) if p.user_id == "organizer.county").unit
    assert "Wang Fang" in page.text
    in_county = [c for c in console.org.cadres if c.unit.path.startswith(county.path) and not c.retirement]
    outside = [c for c in console.org.cadres if not c.unit.path.startswith(county.path)]
    assert in_county
    assert outside
    for cadre in in_county:
        assert str(cadre.cadre_id) in page.text
    for cadre in outside:
        assert str(cadre.cadre_id) not in page.text
    counts = await console.client.get(f"/pool/counts?under={county.code}", headers={"HX-Request": "true"})
    assert f'id="count-in_pool" hx-swap-oob="true">({len(in_county)})' in counts.text

    exported = await console.client.get("/pool/export?status=in_pool&format=csv")
    assert exported.status_code == 200
    lines = exported.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 1 + len(in_county)  # a header, then every cadre the list shows (all its pages)
    workbook = await console.client.get("/pool/export?status=in_pool")
    assert workbook.content[:2] == b"PK"  # an XLSX (a zip), for Excel

    # The structure statistics as of a date: the demo's categories counted, the table as XLSX, no date to come.
    figures = await console.client.get(f"/statistics?on={clock.today().isoformat()}")
    assert figures.status_code == 200, figures.text[-500:]
    assert 'id="ethnicity-h"' in figures.text
    assert 'id="reserve_kind-h"' in figures.text
    assert "not_recorded" not in figures.text  # a word, not the code
    assert any(c.categories.get("reserve_kind", "-") in figures.text for c in in_county)
    table = await console.client.get("/statistics/export")
    assert table.content[:2] == b"PK"
    tomorrow = (clock.today() + timedelta(days=1)).isoformat()
    assert 400 <= (await console.client.get(f"/statistics?on={tomorrow}")).status_code < 500
    assert (await console.client.get("/statistics?on=someday")).status_code == 422


async def test_forms_without_their_csrf_token_are_refused(console: ConsoleStack) -> None:
    await console_sign_in(console.client, "organizer.county")
    refused = await console.client.post("/csrf-probe", data={"_": "x"})
    assert refused.status_code == 403
    pool = await console.client.get("/pool")
    token = pool.text.split('name="csrf_token" value="')[1].split('"')[0]
    accepted = await console.client.post("/csrf-probe", data={"csrf_token": token})
    assert accepted.status_code == 200
    assert accepted.json() == {"ok": "organizer.county"}
    assert (await console.client.post("/csrf-probe", data={"csrf_token": token[::-1]})).status_code == 403


async def test_session_cookies_are_sealed_and_sign_out_ends_the_provider_session(console: ConsoleStack) -> None:
    page = await console_sign_in(console.client, "viewer.city")
    assert page.status_code == 200
    cookie = console.client.jar["127.0.0.1:" + console.url.rsplit(":", 1)[1]]["cadre_session"]
    assert "viewer.city" not in cookie  # sealed, not merely signed
    signed_in = await console.client.get("/pool")
    token = signed_in.text.split('name="csrf_token" value="')[1].split('"')[0]
    out = await console.client.post("/signout", data={"csrf_token": token})
    assert out.status_code == 200
    assert "cadre_session" not in console.client.jar.get("127.0.0.1:" + console.url.rsplit(":", 1)[1], {})
    again = await console.client.get("/pool")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/signin")
    provider = await console.client.follow(await console.client.get(again.headers["location"]))
    assert 'id="kc-form-login"' in provider.text  # the provider asks for the password again


async def test_a_copy_of_the_cookie_opens_nothing_after_sign_out(console: ConsoleStack) -> None:
    """Issue 22, hole 3: the old cookie opened pages and passed CSRF-checked posts until its token expired."""
    await console_sign_in(console.client, "organizer.county")
    host = console.url.removeprefix("http://")
    copy = console.client.jar[host]["cadre_session"]  # its access token still has minutes to live
    page = await console.client.get("/pool")
    assert page.status_code == 200
    csrf = _csrf(page)
    assert (await console.client.post("/signout", data={"csrf_token": csrf})).status_code == 200
    console.client.jar[host]["cadre_session"] = copy
    again = await console.client.get("/pool")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/signin")
    post = await console.client.post("/csrf-probe", data={"csrf_token": csrf})
    assert post.status_code == 303
    # The registry knows the session only by its hash, and as ended.
    sealed = Sealer(DEV_SESSION_KEY).session(copy)
    assert sealed is not None
    headers = {"Authorization": f"Bearer {sealed.access_token}"}
    registry = console.app.state.console.apis.clients["registry"]
    assert (await registry.get(f"/sessions/{sealed.sid}", headers=headers)).status_code == 404
    # Signing in again opens a new session, which the registry holds open.
    await console_sign_in(console.client, "organizer.county")
    assert (await console.client.get("/pool")).status_code == 200


async def test_tampered_session_cookies_count_as_none(console: ConsoleStack) -> None:
    await console_sign_in(console.client, "organizer.county")
    host = "127.0.0.1:" + console.url.rsplit(":", 1)[1]
    value = console.client.jar[host]["cadre_session"]
    console.client.jar[host]["cadre_session"] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    assert (await console.client.get("/pool")).status_code == 303


async def test_the_front_door_routes_each_service_api(console: ConsoleStack) -> None:
    # The API documents are for signed-in people (or programs with a token), not for anyone.
    assert (await console.client.get("/api/registry/openapi.json")).status_code == 303  # to the sign-in
    assert (await console.client.get("/api/registry/docs")).status_code == 303
    assert (await console.client.get("/api/registry/asyncapi")).status_code == 303
    await console_sign_in(console.client, "organizer.county")
    document = (await console.client.get("/api/registry/openapi.json")).json()
    assert document["servers"] == [{"url": "/api/registry"}]
    assert "/cadres" in document["paths"]
    events = (await console.client.get("/api/registry/asyncapi")).json()  # what the registry sends and reads
    assert events == json.loads((documents.DOCUMENT_DIR / "registry.json").read_text())
    assert events["channels"]["registry-events"]["address"] == "registry.events"
    docs = await console.client.get("/api/registry/docs")
    assert "/vendor/swagger-ui-dist@" in docs.text
    assert "cdn" not in docs.text.lower()
    headers = auth("script", console.org.root.path)
    answer = await console.client.get("/api/registry/cadres?limit=5", headers=headers)
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == 5
    assert (await console.client.get("/api/registry/cadres")).status_code == 401  # the session cookie is not passed on
    assert (await console.client.get("/api/nosuch/x")).status_code == 404


async def test_the_front_door_keeps_each_services_security_headers_and_pages_restrict_scripts(
    console: ConsoleStack,
) -> None:
    """Issue 22, holes 7 and 8: pages send a script policy; API answers keep the service's own headers."""
    headers = auth("script", console.org.root.path)
    answer = await console.client.get("/api/registry/cadres?limit=1", headers=headers)
    assert answer.status_code == 200
    for name, value in guard.API_HEADERS:
        assert answer.headers[name.decode()] == value.decode(), name
    cadre_id = answer.json()["items"][0]["cadre_id"]
    # The printable appointment form: HTML at the console's origin, under the registry's own policy.
    form = await console.client.get(f"/api/registry/cadres/{cadre_id}/appointment-form?format=html", headers=headers)
    assert form.status_code == 200, form.text[:200]
    assert form.headers["content-type"].startswith("text/html")
    assert form.headers["content-security-policy"] == lrmx.PRINTABLE_CSP
    assert "script-src" not in form.headers["content-security-policy"]  # default-src 'none': no script at all
    assert form.headers["x-content-type-options"] == "nosniff"
    # A refusal passes through with its headers too.
    refused = await console.client.get(f"/api/registry/cadres/{cadre_id}")
    assert refused.status_code == 401
    assert refused.headers["content-security-policy"] == dict(guard.API_HEADERS)[b"content-security-policy"].decode()
    # The console's own pages: scripts from its own address only.
    await console_sign_in(console.client, "organizer.county")
    page = await console.client.get("/pool")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    docs = await console.client.get("/api/registry/docs")
    assert "script-src 'self' 'sha256-" in docs.headers["content-security-policy"]


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf_token" value="')[1].split('"')[0]


async def test_screens_offer_only_what_the_role_may_do_and_show_only_the_subtree(  # noqa: PLR0915 - one visit
    console: ConsoleStack,
) -> None:
    pool = await console_sign_in(console.client, "organizer.county")
    county = next(p for p in demo.people(console.org) if p.user_id == "organizer.county").unit
    mine = next(c for c in console.org.cadres if c.unit.path.startswith(county.path) and not c.retirement)
    other = next(c for c in console.org.cadres if not c.unit.path.startswith(county.path))
    page = await console.client.get(f"/cadres/{mine.cadre_id}")
    assert page.status_code == 200, page.text[-800:]
    assert 'id="timeline"' in page.text
    assert 'id="actions"' in page.text
    assert (await console.client.get(f"/cadres/{other.cadre_id}")).status_code == 404

    checks = await console.client.post(
        "/nominate/check",
        data={"org_code": county.code, "birth_date": "1960-01-01", "education": "secondary", "years_of_service": "1",
              "csrf_token": _csrf(pool)},
    )  # fmt: skip
    assert checks.text.count('class="fail"') == 3  # too old, too little education, too few years
    assert 'data-rule="min_age"' in checks.text
    form = {
        "csrf_token": _csrf(pool), "org_code": county.code, "full_name": "Gao Ming", "gender": "male",
        "birth_date": "1992-05-04", "education": "master", "current_position": "Deputy section chief",
        "years_of_service": "8", "grassroots_months": "24", "reason": "Recommended by the county",
    }  # fmt: skip
    nominated = await console.client.post("/nominate", data=form)
    assert nominated.status_code == 303
    cadre_page = await console.client.get(nominated.headers["location"])
    assert "Gao Ming" in cadre_page.text
    listed = await console.client.get("/pool?name=Gao+Ming")
    assert nominated.headers["location"].removeprefix("/cadres/") in listed.text
    refused = await console.client.post("/nominate", data={**form, "birth_date": "1950-01-01"})
    assert refused.status_code == 422
    assert "entry rules" in refused.text
    for screen in ("/assessment", "/statistics", "/due", "/audit"):
        assert (await console.client.get(screen)).status_code == 200, screen

    # People are picked, not typed: the mentor among those who hold a grant; units by name, the code on hover.
    mentor = next(p for p in demo.people(console.org) if p.user_id.startswith("mentor."))
    assert f'<option value="{mentor.user_id}">{mentor.name} · ' in page.text
    typed = await console.client.post(
        f"/cadres/{mine.cadre_id}/mentor", data={"csrf_token": _csrf(pool), "user_id": "someone.else"}
    )
    assert typed.status_code == 422
    picked = await console.client.post(
        f"/cadres/{mine.cadre_id}/mentor", data={"csrf_token": _csrf(pool), "user_id": mentor.user_id}
    )
    assert picked.status_code == 303
    assert f"<dd>{mentor.name}" in (await console.client.get(f"/cadres/{mine.cadre_id}")).text
    assert f'<span title="{mine.unit.code}">{mine.unit.name}</span>' in (await console.client.get("/pool")).text

    # The organizer's responsibility report names the mentor, on screen and as XLSX.
    report = await eventually(
        lambda: console.client.get("/responsibility"), until=lambda r: f'title="{mentor.user_id}"' in r.text
    )
    assert report.status_code == 200
    workbook = await console.client.get("/responsibility/export?format=xlsx")
    assert workbook.status_code == 200
    assert workbook.content[:2] == b"PK"

    # The mentor signs in and finds the mentee on a page of their own, with what is due.
    await console.client.post("/signout", data={"csrf_token": _csrf(report)})
    own = await console_sign_in(console.client, mentor.user_id)
    assert own.status_code == 200
    mentees = await console.client.get("/mentees")
    assert mentees.status_code == 200
    expected = {str(c.cadre_id) for c in console.org.cadres if c.mentor == mentor.user_id and not c.retirement}
    for cadre_id in expected | {str(mine.cadre_id)}:
        assert f'href="/cadres/{cadre_id}"' in mentees.text
    assert mentees.text.count('href="/cadres/') == len(expected | {str(mine.cadre_id)})
    assert f'<span title="{mine.unit.code}">{mine.unit.name}</span>' in mentees.text

    # The mentor (a viewer) records a check-in with the mentee: allowed to the cadre's own mentor only.
    today = clock.today().isoformat()
    held = await console.client.post(
        "/mentees/check-in",
        data={"csrf_token": _csrf(mentees), "cadre_id": str(mine.cadre_id), "held_on": today, "work": "on track"},
    )
    assert held.status_code == 303, held.text[-500:]
    file = await console.client.get(f"/cadres/{mine.cadre_id}")
    assert f"· {mentor.user_id}" in file.text  # on the timeline, held by the mentor
    stranger = next(
        c for c in console.org.cadres
        if c.unit.path.startswith(county.path) and not c.retirement and c.mentor != mentor.user_id and c != mine
    )  # fmt: skip
    refused = await console.client.post(
        "/mentees/check-in",
        data={"csrf_token": _csrf(mentees), "cadre_id": str(stranger.cadre_id), "held_on": today},
    )
    assert refused.status_code == 403


async def test_a_viewer_is_offered_no_write_action(launch: Launch, keycloak: str, console_port: int) -> None:
    async with console_for(launch, keycloak, console_port, cadres=30) as stack:
        pool = await console_sign_in(stack.client, "viewer.city")
        assert pool.status_code == 200
        assert 'href="/nominate"' not in pool.text
        assert 'href="/audit"' not in pool.text
        cadre = next(c for c in stack.org.cadres if c.unit.path.startswith("qs.bh") and not c.retirement)
        page = await stack.client.get(f"/cadres/{cadre.cadre_id}")
        assert page.status_code == 200
        assert 'id="actions"' not in page.text
        assert (await stack.client.get("/nominate")).status_code == 403
        form = {"csrf_token": _csrf(pool), "user_id": "x", "name": "X"}
        assert (await stack.client.post(f"/cadres/{cadre.cadre_id}/mentor", data=form)).status_code == 403


async def test_an_expiring_access_token_is_refreshed_and_a_session_signed_out_stays_out(console: ConsoleStack) -> None:
    await console_sign_in(console.client, "organizer.county")
    host = console.url.removeprefix("http://")
    sealer = Sealer(DEV_SESSION_KEY)
    session = sealer.session(console.client.jar[host]["cadre_session"])
    assert session is not None
    stale = replace(session, access_expires=clock.now().timestamp() - 1)
    console.client.jar[host]["cadre_session"] = sealer.seal_session(stale)
    page = await console.client.get("/pool")
    assert page.status_code == 200
    fresh = sealer.session(console.client.jar[host]["cadre_session"])
    assert fresh is not None
    assert fresh.access_token != stale.access_token
    assert fresh.access_expires > clock.now().timestamp() + 60
    assert fresh.csrf == stale.csrf  # the forms already on screen stay valid
    await console.client.post("/signout", data={"csrf_token": _csrf(page)})
    console.client.jar[host]["cadre_session"] = sealer.seal_session(stale)  # a copy of the cookie someone kept
    again = await console.client.get("/pool")
    assert again.status_code == 303  # its refresh token died with the provider's session
    assert again.headers["location"].startswith("/signin")
