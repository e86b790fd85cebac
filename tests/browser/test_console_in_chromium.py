"""The console in headless Chromium (Debian's), driven by Playwright, signing in through a real Keycloak.

Every screen is photographed into tests/artifacts/screens/ and checked with axe-core: no
serious or critical accessibility violation. Services run in this process against the
real Kafka and PostgreSQL; the console listens on a real port for the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from fastapi import FastAPI
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright

from contracts.envelope import Role
from deploy.local.keycloak import DEMO_PASSWORD
from runtime import clock
from services.registry import demo
from tests.integration.test_console import console_for
from tests.support import Launch

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screens"
PHONE: ViewportSize = {"width": 390, "height": 844}
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip


def chromium() -> str:
    """Debian's Chromium (./dev test installs it when it is missing)."""
    for candidate in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed (./dev test installs it with apt-get)")
    return found


class Served(Protocol):
    """Anything that holds a console app (a whole stack, or one level's console)."""

    @property
    def app(self) -> FastAPI: ...


@contextlib.asynccontextmanager
async def serving(stack: Served, port: int) -> AsyncIterator[None]:
    """The console on its real port (the provider redirects the browser there)."""
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await task


class Screens:
    """Photographs and checks every screen it is shown."""

    def __init__(self) -> None:
        self.axe = Axe()
        self.checked: list[str] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def check(self, page: Page, name: str) -> None:
        """At a desk's width and at a phone's (390 px): photographed, axe-clean, nothing wider than the screen."""
        desk = page.viewport_size
        for width, suffix in ((None, ""), (PHONE["width"], "-390")):
            if width is not None:
                await page.set_viewport_size(PHONE)
            await page.wait_for_load_state("networkidle")
            assert CSP_REFUSALS == [], f"{name}{suffix}: the page's policy refused {CSP_REFUSALS}"
            await page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
            results = await self.axe.run(page)
            serious = [v for v in results.response["violations"] if v["impact"] in {"serious", "critical"}]
            assert serious == [], f"{name}{suffix}: " + "; ".join(
                f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in serious
            )
            if width is not None:
                overflow = await page.evaluate(
                    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{name} scrolls sideways at {width} px by {overflow} px"
        if desk is not None:
            await page.set_viewport_size(desk)
        self.checked.append(name)


CSP_REFUSALS: list[str] = []
"""What Chromium refused to run or load under the console's Content-Security-Policy (none, on every screen)."""


def _note_csp_refusal(message: ConsoleMessage) -> None:
    if "Content Security Policy" in message.text:
        CSP_REFUSALS.append(message.text[:300])


async def sign_in(browser: Browser, base: str, username: str, lands: str = "/pool", start: str = "/pool") -> Page:
    """Open `start`, sign in through the provider's form; the console sends the person to `lands`."""
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("console", _note_csp_refusal)
    await page.goto(f"{base}{start}")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#kc-login")
    await page.wait_for_url(f"{base}{lands}**")
    return page


async def test_people_work_in_the_console_in_chromium(  # noqa: PLR0915 - one visit through every screen
    launch: Launch, keycloak: str, console_port: int
) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    visited: set[tuple[str, str]] = set()
    async with console_for(launch, keycloak, console_port, cadres=80) as stack, serving(stack, console_port):
        before = clock.now() - timedelta(seconds=1)
        people = {p.user_id: p for p in demo.people(stack.org)}
        county = people["organizer.county"].unit
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                # A county organizer signs in through Keycloak and sees only the county.
                page = await sign_in(browser, base, "organizer.county")
                await page.wait_for_selector("#count-in_pool:not(:empty)")
                await screens.check(page, "pool")
                units = await page.locator("#pool tbody tr td:nth-child(6) span").evaluate_all(
                    "spans => spans.map(s => [s.title, s.textContent])"
                )
                assert units
                named = {unit.code: unit.name for unit in stack.org.units}
                assert all(code == county.code or code.startswith(f"{county.code}_") for code, _ in units), units
                assert all(name == named[code] for code, name in units), units  # names shown, the code on hover

                # Nominate through the form, with the entry rules shown as the form fills.
                await page.click("a[href='/nominate']")
                await page.fill("input[name=full_name]", "Gao Ming")
                await page.select_option("select[name=org_code]", county.code)
                await page.fill("input[name=current_position]", "Deputy section chief")
                await page.fill("input[name=years_of_service]", "8")
                await page.fill("input[name=birth_date]", "1992-05-04")
                await page.select_option("select[name=education]", "master")
                await page.wait_for_selector("#entry-checks li[data-rule=max_age].pass")
                await screens.check(page, "nominate")
                await page.click("#nominate button[type=submit]")
                await page.wait_for_url(f"{base}/cadres/**")
                cadre_url = page.url
                assert await page.locator("h1").inner_text() == "Gao Ming · 在库"
                assert "推荐入库" in await page.locator("#timeline").inner_text()
                await screens.check(page, "cadre")
                await page.goto(f"{base}/pool?name=Gao")
                assert await page.locator("#pool tbody a", has_text="Gao Ming").count() == 1

                # Another county's cadre, by URL: not found.
                other = next(c for c in stack.org.cadres if not c.unit.path.startswith(county.path))
                response = await page.goto(f"{base}/cadres/{other.cadre_id}")
                assert response is not None
                assert response.status == 404

                for screen in ("assessment", "statistics", "due", "responsibility"):
                    await page.goto(f"{base}/{screen}")
                    await screens.check(page, screen)

                # Switch language, then sign out.
                await page.goto(cadre_url)
                await page.click("a[lang=en]")
                await page.wait_for_selector("html[lang=en]")
                assert "Timeline" in await page.locator("main").inner_text()
                await screens.check(page, "cadre-en")
                await page.click("form[action='/signout'] button")
                await page.wait_for_selector("text=You are signed out")
                await screens.check(page, "signed-out")
                await page.goto(f"{base}/pool")
                await page.wait_for_selector("#kc-login")  # the provider asks again
                await page.context.close()

                # An auditor: the pool as of a past moment, and the difference to now.
                page = await sign_in(browser, base, "auditor.province")
                moment = before.astimezone(clock.current().zone).strftime("%Y-%m-%dT%H:%M:%S")
                for _ in range(60):  # the archive hears of the nomination through Kafka
                    await page.goto(f"{base}/audit?at={moment}&since={moment}")
                    if await page.locator("#joined li", has_text="Gao Ming").count():
                        break
                    await asyncio.sleep(0.5)
                assert await page.locator("#joined li", has_text="Gao Ming").count() == 1
                assert "Gao Ming" not in await page.locator("table").first.inner_text()  # not in the pool back then
                await screens.check(page, "audit")
                await page.click("#joined a")
                await page.click("a[href^='/audit/events/']")
                assert await page.locator("#verification .pass").count() >= 1
                await screens.check(page, "audit-event")
                await page.context.close()

                # A viewer is offered no write action.
                page = await sign_in(browser, base, "viewer.city")
                assert await page.locator("a[href='/nominate']").count() == 0
                await page.click("#pool tbody a >> nth=0")
                await page.wait_for_url(f"{base}/cadres/**")
                assert await page.locator("#actions, form[action*='/cadres/']").count() == 0
                await screens.check(page, "cadre-viewer")
                await page.context.close()

                # A mentor has a page of their own: the mentees and what each needs.
                mentor = next(p for p in people.values() if p.user_id.startswith("mentor."))
                page = await sign_in(browser, base, mentor.user_id)
                await page.click("a[href='/mentees']")
                await page.wait_for_selector("#mentees")
                await screens.check(page, "mentees")
                await page.context.close()

                # Every demo person, at every level, opens every screen offered, at a phone's width: none errs.
                for person in people.values():
                    home = "/me" if person.role is Role.CADRE else "/pool"  # a cadre's own grant: their page only
                    page = await sign_in(browser, base, person.login, home)
                    await page.set_viewport_size(PHONE)
                    offered = await page.locator("header nav a").evaluate_all("links => links.map(a => a.pathname)")
                    assert home in offered, person.user_id
                    for screen in offered:
                        response = await page.goto(f"{base}{screen}")
                        assert response is not None
                        assert response.status == 200, (person.user_id, screen, response.status)
                        await page.wait_for_load_state("networkidle")
                        overflow = await page.evaluate(
                            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
                        )
                        assert overflow <= 0, (person.user_id, screen, overflow)
                        visited.add((person.role.value, screen))
                    await page.context.close()
            finally:
                await browser.close()
    assert len(screens.checked) == 13
    assert {"/assessment", "/mentees", "/responsibility", "/audit"} <= {screen for _, screen in visited}
    assert {role for role, _ in visited} == {"organizer", "auditor", "viewer", "cadre"}
    assert {screen for role, screen in visited if role == "cadre"} == {"/me"}
