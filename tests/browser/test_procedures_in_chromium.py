"""The procedures in headless Chromium: an organizer runs an entry procedure from opening to admission.

The organizer of a county opens the procedure through the console, records each step with
its tallies and evidence (a file the console hashes, or a typed SHA-256), publishes the
notice, closes it once its working days are over (the platform's clock moves on, as the
services read it) and records the outcome; the registry then has the candidate in the pool.
A second procedure stops at a substantiated objection. Then an appointment: the organizer
finds a cadre of the pool by name in the form, chooses them and a post of the county's team,
takes the procedure through the same steps to its outcome, and the team page shows the cadre
holding the post by that procedure. Every screen is checked as in test_console_in_chromium
(axe-clean, no sideways scroll at 390 px, nothing refused by the CSP).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import date, timedelta

from playwright.async_api import FilePayload, Page, async_playwright

from deploy.local.keycloak import DEMO_PASSWORD
from runtime import clock
from services.registry import demo
from tests.browser.test_console_in_chromium import CHROMIUM_FLAGS, Screens, chromium, serving, sign_in
from tests.integration.test_console import console_for
from tests.integration.test_selection_console import lay_out
from tests.support import Launch

REPORT = b"%PDF-1.4 the inspection report of the county's candidate\n"
MINUTES = b"%PDF-1.4 the minutes of the standing committee\n"


async def visit(page: Page, url: str) -> None:
    """Open `url`, signing in again when the console asks (the platform's clock moved past the session's end)."""
    await page.goto(url)
    if await page.locator("#kc-login").count():
        await page.fill("#password", DEMO_PASSWORD)
        await page.click("#kc-login")
    await page.wait_for_url(f"{url.split('#', maxsplit=1)[0]}**")


async def open_entry(page: Page, base: str, unit: str, name: str, screens: Screens | None = None) -> str:
    """Open an entry procedure through the form; the procedure page's URL."""
    await page.goto(f"{base}/procedures/new")
    await page.fill("input[name=full_name]", name)
    await page.select_option("select[name=gender]", "female")
    await page.fill("input[name=birth_date]", "1990-03-02")
    await page.select_option("select[name=education]", "master")
    await page.fill("input[name=current_position]", "Section chief")
    await page.fill("input[name=years_of_service]", "10")
    await page.fill("input[name=grassroots_months]", "36")
    await page.select_option("#open-procedure select[name=org_code]", unit)
    await page.fill("input[name=reserve_kind]", "county deputy")
    return await submit_opening(page, screens, "procedure")


async def open_appointment(
    page: Page, cadre: demo.DemoCadre, screens: Screens, *, unit: str, post: str, holder: str
) -> str:
    """Open an appointment procedure from the board, as a person would: the cadre found by name among the
    pool's and chosen, the post chosen among its unit's team's (each shown with its holder); the procedure
    page's URL."""
    await page.click("header nav a[href='/procedures']")
    await page.click("main a[href='/procedures/new']")
    await page.click(".tabs a[href^='/procedures/new?kind=appointment']")
    await page.wait_for_selector("#find-cadre")
    await page.fill("#find-cadre input[name=name]", cadre.full_name)
    await page.click("#find-cadre button[type=submit]")
    await page.wait_for_url("**name=**")
    choice = page.locator(f"#choose-cadre option[value='{cadre.cadre_id}']")
    assert cadre.full_name in await choice.inner_text()  # the name, the position and the unit
    await screens.check(page, "appointment-choose")
    await page.select_option("#choose-cadre select[name=cadre]", str(cadre.cadre_id))
    await page.click("#choose-cadre button[type=submit]")
    await page.wait_for_selector("#open-procedure")
    assert cadre.full_name in await page.locator("#candidate").inner_text()
    picker = "form.filters select[name=org_code]"  # the post's unit: the cadre's own at first
    if await page.input_value(picker) != unit:
        await page.select_option(picker, unit)
        await page.click("form.filters button[type=submit]")
        await page.wait_for_url(f"**org_code={unit}**")
    option = page.locator("#open-procedure select[name=post_id] option", has_text=post)
    assert holder in await option.inner_text()
    await page.select_option("#open-procedure select[name=post_id]", await option.get_attribute("value"))
    await page.fill("#open-procedure textarea[name=motion_reason]", "The post falls vacant; the successor is ready")
    return await submit_opening(page, screens, "appointment")


async def submit_opening(page: Page, screens: Screens | None, name: str) -> str:
    """The opening form filled: checked, sent; the procedure page's URL (its first step's form offered)."""
    if screens is not None:
        await screens.check(page, f"{name}-open")
    await page.click("#open-procedure button[type=submit]")
    await page.wait_for_selector("#form-recommendation")
    return page.url.split("#")[0]


async def recommend(page: Page, votes: str, valid: str = "36") -> None:
    counts = {"eligible": "40", "present": "38", "ballots_cast": "38", "valid_ballots": valid,
              "invalid_ballots": "2", "votes": votes, "interviewed": "20", "in_favour": "15"}  # fmt: skip
    for field, value in counts.items():
        await page.fill(f"#form-recommendation input[name={field}]", value)
    await page.click("#form-recommendation button[type=submit]")


async def to_notice(page: Page, screens: Screens | None = None, name: str = "procedure") -> None:
    """From the recommendation to the published notice, each step through its form."""
    await recommend(page, "30")
    await page.wait_for_selector("#form-inspection")
    if screens is not None:
        await screens.check(page, f"{name}-inspection")
    await page.fill("#form-inspection input[name=team]", "Zhao Gang, Qian Hong")
    await page.fill("#form-inspection input[name=interviewed]", "25")
    await page.select_option("#form-inspection select[name=conclusion]", "fit")
    await page.fill("#form-inspection input[name=report_title]", "Inspection report")
    await page.set_input_files(
        "#form-inspection input[name=report_file]",
        files=[FilePayload(name="report.pdf", mimeType="application/pdf", buffer=REPORT)],
    )
    await page.fill("#form-inspection input[name=clean_record_title]", "Clean-record letter")
    await page.fill("#form-inspection input[name=clean_record_sha256]", "c" * 64)
    await page.click("#form-inspection button[type=submit]")
    await page.wait_for_selector("#form-decision")
    if screens is not None:
        await screens.check(page, f"{name}-decision")
    for field, value in (("members", "9"), ("present", "9"), ("votes_for", "8"), ("votes_against", "1"),
                         ("abstentions", "0"), ("minutes_title", "Minutes")):  # fmt: skip
        await page.fill(f"#form-decision input[name={field}]", value)
    await page.set_input_files(
        "#form-decision input[name=minutes_file]",
        files=[FilePayload(name="minutes.pdf", mimeType="application/pdf", buffer=MINUTES)],
    )
    await page.click("#form-decision button[type=submit]")
    await page.wait_for_selector("#form-notice")
    await page.fill("#form-notice input[name=where]", "the county's notice board")
    await page.click("#form-notice button[type=submit]")
    await page.wait_for_selector("#form-objection")


async def conclude(page: Page, url: str, document_number: str, screens: Screens, name: str) -> None:
    """The notice's working days pass (the services read the platform's clock): closed, the outcome recorded."""
    await page.goto(url)
    ends_on = date.fromisoformat(str(await page.get_attribute("#notice", "data-ends-on")))
    clock.use(clock.current().at(clock.start_of(ends_on + timedelta(days=1))))
    await visit(page, url)
    await page.click("#form-close button[type=submit]")
    await page.wait_for_selector("#form-outcome")
    await page.fill("#form-outcome input[name=document_number]", document_number)
    await screens.check(page, f"{name}-outcome")
    await page.click("#form-outcome button[type=submit]")
    await page.wait_for_selector("#step[data-step=concluded]")
    assert await page.locator("#next").count() == 0
    assert await page.locator("#verification .pass").count() == 1
    await screens.check(page, f"{name}-concluded")


async def test_an_organizer_runs_an_entry_procedure_to_admission_and_an_objection_stops_another(  # noqa: PLR0915
    launch: Launch, keycloak: str, console_port: int
) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    async with console_for(launch, keycloak, console_port, cadres=40) as stack, serving(stack, console_port):
        county = next(p for p in demo.people(stack.org) if p.user_id == "organizer.county").unit
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                page = await sign_in(browser, base, "organizer.county")
                await page.click("header nav a[href='/procedures']")
                await page.wait_for_selector("#board")
                await screens.check(page, "procedures")
                url = await open_entry(page, base, county.code, "Sun Li", screens)
                await screens.check(page, "procedure")

                # A tally that does not add up: the service's reason, what was typed kept, nothing recorded.
                await recommend(page, "30", valid="30")
                await page.wait_for_selector("#refused")
                assert "are not the 38 cast" in await page.locator("#refused").inner_text()
                assert await page.input_value("#form-recommendation input[name=valid_ballots]") == "30"
                assert await page.locator("#steps > li").count() == 1
                await screens.check(page, "procedure-refused")

                await to_notice(page, screens)
                steps = page.locator("#steps")
                assert hashlib.sha256(REPORT).hexdigest() in await steps.inner_text()
                assert hashlib.sha256(MINUTES).hexdigest() in await steps.inner_text()
                assert "c" * 64 in await steps.inner_text()
                assert await page.locator("#form-close").count() == 0  # not before the notice's period ended
                await screens.check(page, "procedure-notice")
                await page.goto(f"{base}/procedures")
                assert await page.locator("#board .due-notice_ends").count() == 1
                await screens.check(page, "procedures-notice")

                await conclude(page, url, f"County Org [{clock.today().year}] 12", screens, "procedure")
                await page.click("a[href$='/file']")
                await page.wait_for_selector("article.file #verification .pass")
                await screens.check(page, "procedure-file")

                # The registry has nominated the candidate: Sun Li is in the county's pool.
                for _ in range(60):
                    await page.goto(f"{base}/pool?name=Sun+Li")
                    if await page.locator("#pool tbody a", has_text="Sun Li").count():
                        break
                    await asyncio.sleep(0.5)
                assert await page.locator("#pool tbody a", has_text="Sun Li").count() == 1

                # Another candidate: an objection during the notice, found substantiated, stops the procedure.
                await open_entry(page, base, county.code, "Zhou Min")
                await to_notice(page)
                await page.fill(
                    "#form-objection textarea[name=summary]", "A letter says the years of service are wrong"
                )
                await page.click("#form-objection button[type=submit]")
                await page.wait_for_selector("#form-conclusion")
                assert await page.locator("#form-close").count() == 0  # the open objection holds the procedure
                await screens.check(page, "procedure-objection")
                await page.select_option("#form-conclusion select[name=substantiated]", "true")
                await page.fill("#form-conclusion textarea[name=finding]", "The record was checked: it is so")
                await page.click("#form-conclusion button[type=submit]")
                await page.wait_for_selector("#step[data-step=stopped]")
                assert await page.locator("#next").count() == 0
                await page.goto(f"{base}/procedures?finished=true")
                stopped = page.locator("#board tr", has_text="Zhou Min")
                assert "已终止" in await stopped.inner_text()
                await screens.check(page, "procedures-finished")
                await page.goto(f"{base}/pool?name=Zhou+Min")
                assert await page.locator("#pool tbody a", has_text="Zhou Min").count() == 0
                await page.context.close()
            finally:
                await browser.close()
    assert len(screens.checked) == 13


async def test_an_organizer_runs_an_appointment_procedure_and_the_team_shows_the_post_filled(
    launch: Launch, keycloak: str, console_port: int
) -> None:
    base = f"http://127.0.0.1:{console_port}"
    screens = Screens()
    async with console_for(launch, keycloak, console_port, cadres=40) as stack, serving(stack, console_port):
        laid = await lay_out(stack)  # the county's team: roads held by Gao Jian (a successor ready), schools vacant
        county = next(p for p in demo.people(stack.org) if p.user_id == "organizer.county").unit
        successor = next(c for c in stack.org.cadres if str(c.cadre_id) == laid["ready_id"])
        roads = "Deputy head for roads"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            try:
                page = await sign_in(browser, base, "organizer.county")
                url = await open_appointment(page, successor, screens, unit=county.code, post=roads, holder="Gao Jian")
                procedure_id = url.rsplit("/", maxsplit=1)[-1]
                about = await page.locator("#steps li[data-event=ProcedureOpened]").inner_text()
                assert successor.full_name in about
                assert roads in about
                await screens.check(page, "appointment")

                await to_notice(page, screens, "appointment")
                assert await page.locator("#form-close").count() == 0  # not before the notice's period ended
                await screens.check(page, "appointment-notice")
                await page.goto(f"{base}/procedures")
                row = page.locator(f"#board tr[data-procedure='{procedure_id}']")
                assert roads in await row.inner_text()
                assert await row.locator(".due-notice_ends").count() == 1

                await conclude(page, url, f"County Org [{clock.today().year}] 13", screens, "appointment")

                # Selection records the appointment the outcome decided: the post's holder is the successor.
                post = page.locator("main table tr", has_text=roads)
                by_procedure = post.locator(f"a.by-procedure[href='/procedures/{procedure_id}']")
                for _ in range(60):
                    await visit(page, f"{base}/team")
                    if await by_procedure.count():
                        break
                    await asyncio.sleep(0.5)
                assert await by_procedure.count() == 1
                holder = post.locator("td").nth(2)
                assert await holder.locator(f"a[href='/cadres/{successor.cadre_id}']").count() == 1
                assert "Gao Jian" not in await post.inner_text()  # he left the post, succeeded
                await screens.check(page, "appointment-team")
                await by_procedure.click()
                await page.wait_for_selector("#step[data-step=concluded]")
                await page.context.close()
            finally:
                await browser.close()
    assert len(screens.checked) == 9
