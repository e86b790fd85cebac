"""Teams and succession in headless Chromium: team, strength, 9-box and pool use, axe-clean, at 390 px too.

A county team, a cycle with a grade and a potential are laid out through the services' APIs
(the demo has no posts); the county's organizer opens the four screens, each photographed and
checked at a desk's width and a phone's; the auditor and a city viewer open them for the county.
"""

from __future__ import annotations

from playwright.async_api import async_playwright

from services.registry import demo
from tests.browser.test_console_in_chromium import CHROMIUM_FLAGS, PHONE, Screens, chromium, serving, sign_in
from tests.integration.test_console import console_for
from tests.integration.test_selection_console import lay_out
from tests.support import Launch

SCREENS = ("team", "strength", "nine-box", "pool-use")


async def test_succession_screens_in_chromium(launch: Launch, keycloak: str, console_port: int) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    async with console_for(launch, keycloak, console_port) as stack, serving(stack, console_port):
        laid = await lay_out(stack)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                page = await sign_in(browser, base, "organizer.county")
                await page.click("header nav a[href='/team']")
                await page.wait_for_selector("h1")
                assert "Gao Jian" in await page.locator("main").inner_text()
                await screens.check(page, "team")
                # The organizer's forms, opened (axe-checked), and a successor named through one of them.
                for summary in await page.locator("details.inline-form summary").all():
                    await summary.click()
                await screens.check(page, "team-forms")
                schools = page.locator("tr", has_text="Deputy head for schools")
                await schools.locator("select[name=readiness]").select_option("three_plus_years")
                await schools.locator("input[name=reason]").fill("Runs the county's schools office")
                await schools.locator("button[type=submit]").click()
                await page.wait_for_url(f"{base}/team?unit={laid['county']}")
                assert "三年以上可接任" in await page.locator("main").inner_text()
                for screen in SCREENS[1:]:
                    await page.click(f"main nav a[href='/{screen}']")  # the tabs between the four
                    await page.wait_for_url(f"{base}/{screen}")
                    await screens.check(page, screen)
                box = page.locator(".ninebox .box-9")
                await page.goto(f"{base}/nine-box")
                assert laid["rated"] in await box.inner_text()
                # The unit picker: by name, the code on hover.
                await page.goto(f"{base}/team?unit={laid['county']}")
                county = next(u for u in stack.org.units if u.code == laid["county"])
                option = page.locator(f"select[name=unit] option[value='{county.code}']")
                assert county.name in await option.inner_text()
                assert await option.get_attribute("title") == county.code
                await page.context.close()

                # The auditor and a city viewer read the county's screens, in English, at a phone's width.
                people = {p.user_id: p for p in demo.people(stack.org)}
                for who in ("auditor.province", "viewer.city"):
                    page = await sign_in(browser, base, who)
                    await page.click("a[lang=en]")
                    await page.wait_for_selector("html[lang=en]")
                    await page.set_viewport_size(PHONE)
                    for screen in SCREENS:
                        key = "unit" if screen == "team" else "under"
                        response = await page.goto(f"{base}/{screen}?{key}={laid['county']}")
                        assert response is not None
                        assert response.status == 200, (who, screen, response.status)
                        await screens.check(page, f"{screen}-{people[who].role.value}")
                    await page.context.close()
            finally:
                await browser.close()
    assert len(screens.checked) == 13
