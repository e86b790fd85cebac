"""The links screen in headless Chromium: a city linked with its county, a bundle verified then imported.

The two levels are test_links_console's (test_bundles' deployments, the city's console in this
process, here on a real port); the browser carries the session a sign-in makes. Every screen is
checked as the console's other screens are: axe-clean, nothing wider than a phone, no refusal
under the page's policy.
"""

from __future__ import annotations

from playwright.async_api import FilePayload, async_playwright

from contracts.envelope import Role
from tests.browser.test_console_in_chromium import (
    CHROMIUM_FLAGS,
    Screens,
    _note_csp_refusal,
    chromium,
    serving,
)
from tests.integration.test_bundles import city_lists
from tests.integration.test_links_console import arrivals, city_console_at, county_bundle, signed_in
from tests.support import Launch


async def test_the_links_screen_verifies_then_imports_a_bundle_in_chromium(
    launch: Launch, namespace: str, console_port: int
) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    async with city_console_at(launch, namespace, base) as city, serving(city, console_port):
        levels = city.levels
        bundle = await county_bundle(levels)
        sealed = await signed_in(city.client, levels, "organizer.city", Role.ORGANIZER)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
                await context.add_cookies([{"name": "cadre_session", "value": sealed, "url": base}])
                page = await context.new_page()
                page.on("console", _note_csp_refusal)
                answer = await page.goto(f"{base}/links")
                assert answer is not None
                assert answer.status == 200
                await page.wait_for_selector("#links-status")
                await screens.check(page, "links")

                zipped: FilePayload = {"name": "county.zip", "mimeType": "application/zip", "buffer": bundle}
                await page.set_input_files("#bundle-form input[name=bundle]", files=[zipped])
                await page.click("#bundle-form button[type=submit]")
                await page.wait_for_selector("#bundle-result input[name=digest]", state="attached")
                assert await arrivals(levels) == 0  # shown verified, nothing applied
                await screens.check(page, "links-verified")

                await page.click("#bundle-result button[formaction='/links/import']")
                await page.wait_for_selector("#bundle-result h3.pass[role=status]")
                assert await arrivals(levels) > 0
                await city_lists(levels, "Li Wei")
                await screens.check(page, "links-imported")
                await context.close()
            finally:
                await browser.close()
    assert screens.checked == ["links", "links-verified", "links-imported"]
