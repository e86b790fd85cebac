"""A cadre's own page and the leader's page in Chromium (ADR 0028): report self-study, an organizer confirms it.

The cadre signs in with their own grant, sees their page and reports self-study with an evidence
document; it counts toward nothing until the county's organizer confirms it on the cadre's page;
then the cadre's hours include it. The county's main leader sees the county's cadres by mentor.
Every screen is checked as in test_console_in_chromium (axe-core, 390 px, the page's policy).
"""

from __future__ import annotations

import asyncio

from playwright.async_api import FilePayload, Page, async_playwright

from contracts.envelope import Role
from services.registry import demo
from tests.browser.test_console_in_chromium import CHROMIUM_FLAGS, Screens, chromium, serving, sign_in
from tests.integration.test_console import console_for
from tests.support import Launch


async def hours_on(page: Page) -> int:
    return int(await page.locator("#hours").get_attribute("data-hours") or "-1")


async def test_a_cadre_reports_self_study_an_organizer_confirms_it_and_it_counts(  # noqa: PLR0915 - one visit
    launch: Launch, keycloak: str, console_port: int
) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    async with console_for(launch, keycloak, console_port, cadres=80) as stack, serving(stack, console_port):
        people = demo.people(stack.org)
        own = next(p for p in people if p.role is Role.CADRE)
        leader = next(p for p in people if p.user_id.startswith("leader."))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                # The cadre signs in and lands on their own page: only that page is offered.
                page = await sign_in(browser, base, own.login, "/me", start="/signin")
                offered = await page.locator("header nav a").evaluate_all("links => links.map(a => a.pathname)")
                assert offered == ["/me"]
                assert own.name in await page.locator("h1").inner_text()
                for _ in range(60):  # training hears of the cadre through Kafka
                    if await page.locator("#report").count():
                        break
                    await asyncio.sleep(0.5)
                    await page.reload()
                await screens.check(page, "me")
                before = await hours_on(page)

                # Another cadre, by URL: not found; the pool is not theirs to see.
                other = next(c for c in stack.org.cadres if str(c.cadre_id) != own.user_id)
                response = await page.goto(f"{base}/cadres/{other.cadre_id}")
                assert response is not None
                assert response.status == 404
                await page.goto(f"{base}/pool")
                await page.wait_for_url(f"{base}/me")

                # They report self-study with an evidence document.
                await page.fill("#report input[name=topic]", "乡村振兴政策网络专题班")
                await page.select_option("#report select[name=kind]", "online_course")
                await page.fill("#report input[name=hours]", "12")
                await page.set_input_files(
                    "#report input[name=evidence]",
                    files=[FilePayload(name="certificate.pdf", mimeType="application/pdf", buffer=b"%PDF-1.4 done")],
                )
                await page.click("#report button[type=submit]")
                await page.wait_for_url(f"{base}/me")
                row = page.locator("#reports tbody tr", has_text="乡村振兴政策网络专题班")
                assert "待确认" in await row.inner_text()
                assert await hours_on(page) == before  # reported, not confirmed: it counts toward nothing
                await screens.check(page, "me-reported")
                cadre_context = page.context

                # The county's organizer sees it waiting on the cadre's page and confirms it.
                page = await sign_in(browser, base, "organizer.county", start="/signin")
                await page.goto(f"{base}/due")
                assert "乡村振兴政策网络专题班" in await page.locator("main").inner_text()
                await page.goto(f"{base}/cadres/{own.user_id}")
                await page.wait_for_selector("#waiting-reports")
                await screens.check(page, "cadre-waiting-report")
                await page.click("#waiting-reports form[action$='/confirmation'] button")
                await page.wait_for_url(f"{base}/cadres/{own.user_id}")
                assert await page.locator("#waiting-reports").count() == 0
                await page.context.close()

                # Now the hours count, on the cadre's own page.
                page = await cadre_context.new_page()
                await page.goto(f"{base}/me")
                assert await hours_on(page) == before + 12
                assert (
                    "已确认" in await page.locator("#reports tbody tr", has_text="乡村振兴政策网络专题班").inner_text()
                )
                await cadre_context.close()

                # The county's main leader: the county's cadres by mentor, and what each mentor has overdue.
                page = await sign_in(browser, base, leader.login, start="/signin")
                await page.click("a[href='/leader']")
                await page.wait_for_selector("#summary")
                assert await page.locator("a[href='/responsibility']").count() >= 1
                assert await page.locator("section.mentor").count() >= 1
                await screens.check(page, "leader")
                await page.context.close()
            finally:
                await browser.close()
    assert screens.checked == ["me", "me-reported", "cadre-waiting-report", "leader"]
