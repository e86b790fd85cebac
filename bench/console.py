"""Time to a usable pool page of 50 on a generated province of 1,000,000 cadres, in the server and in Chromium.

The registry runs in this process on the generated tables; the console calls it as it
always does (its HTTP API, here over an in-process transport for the server figures and
real loopback HTTP for the browser). The session is a sealed cookie holding a service
token of the province's organizer: the provider's part (sign-in) is not what is timed.
Baseline, same run: the registry's own `GET /cadres` page of 50 under the same units.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta

import httpx
import uvicorn

from bench import datagen
from bench.harness import Clock, Figure, Report, Stack, percentile
from contracts.envelope import Actor, Role
from deploy.local.ports import free_port
from runtime import clock
from runtime.auth import issue_token
from runtime.settings import DEV_AUTH_SECRET
from services.console.app import create_app as console_app
from services.console.session import SESSION_COOKIE, Sealer, Session
from services.console.settings import ConsoleSettings
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app

PAGES_PER_LEVEL = 100


def _session_cookie(settings: ConsoleSettings) -> str:
    token = issue_token(
        DEV_AUTH_SECRET, Actor(user="bench", org_path="qs", role=Role.ORGANIZER), ttl=timedelta(hours=2)
    )
    far = clock.now().timestamp() + 7200
    session = Session("bench", "Bench", "organizer", "qs", "qs", "Province", token, "", far, far)
    return Sealer(settings.session_key.get_secret_value()).seal_session(session)


async def run(stack: Stack, report: Report, *, cadres: int) -> None:
    """Generate the province, then time pool pages through the console against the registry's own API."""
    dsn = await stack.fresh_database("bench_console")
    with Clock() as generated:
        await datagen.load_registry_tables(dsn, cadres=cadres)
    print(f"  generated {cadres:,} cadres in {generated.seconds:.0f} s", flush=True)
    registry = registry_app(RegistrySettings(database_url=dsn, kafka_bootstrap_servers=stack.kafka,
                                             topic_namespace="benchconsole."))  # fmt: skip
    settings = ConsoleSettings(cookie_secure=False)
    console = console_app(settings, transports={"registry": httpx.ASGITransport(app=registry)})
    cookie = {SESSION_COOKIE: _session_cookie(settings)}
    bench_actor = Actor(user="bench", org_path="qs", role=Role.ORGANIZER)
    service_token = {"Authorization": f"Bearer {issue_token(DEV_AUTH_SECRET, bench_actor)}"}
    tree = datagen.units()
    rng = random.Random(11)
    async with registry.router.lifespan_context(registry), console.router.lifespan_context(console):
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=registry), base_url="http://registry")
        pages = httpx.AsyncClient(transport=httpx.ASGITransport(app=console), base_url="http://console", cookies=cookie)
        async with api, pages:
            await pages.get("/pool")  # warm: templates compiled, connections open
            for depth in (1, 2, 3, 4):
                codes = [code for code, _, _, _, path in tree if len(path.split(".")) == depth]
                page_ms, api_ms, count_ms = [], [], []
                for _ in range(PAGES_PER_LEVEL if depth > 1 else 30):
                    code = rng.choice(codes)
                    started = time.perf_counter()
                    answer = await api.get("/cadres", params={"under": code, "limit": 50}, headers=service_token)
                    api_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    page = await pages.get("/pool", params={"under": code})
                    page_ms.append((time.perf_counter() - started) * 1000)
                    assert page.status_code == 200, page.text[:300]
                    assert answer.status_code == 200
                    started = time.perf_counter()
                    await pages.get("/pool/counts", params={"under": code})
                    count_ms.append((time.perf_counter() - started) * 1000)
                report.add(
                    Figure(
                        name=f"console pool page of 50, {datagen.LEVELS[depth]} root, server p95",
                        value=percentile(page_ms, 95),
                        unit="ms",
                        baseline_name="registry GET /cadres page of 50, p95",
                        baseline=percentile(api_ms, 95),
                        target="<= 300 ms",
                        notes=f"p50 {percentile(page_ms, 50):.1f} ms; status counts (loaded after) p95 "
                        f"{percentile(count_ms, 95):.0f} ms; {len(page_ms)} pages",
                    )
                )
            await _in_the_browser(console, cookie, report)


async def _in_the_browser(console: object, cookie: dict[str, str], report: Report) -> None:
    """Chromium opens the province's pool page: until the list is there, and what the first load transfers."""
    from playwright.async_api import async_playwright  # noqa: PLC0415

    from tests.browser.test_console_in_chromium import CHROMIUM_FLAGS, chromium  # noqa: PLC0415

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(console, host="127.0.0.1", port=port, log_config=None, lifespan="off"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            context = await browser.new_context()
            await context.add_cookies(
                [{"name": k, "value": v, "url": f"http://127.0.0.1:{port}"} for k, v in cookie.items()]
            )
            page = await context.new_page()
            usable, weights = [], []
            for _ in range(12):
                started = time.perf_counter()
                await page.goto(f"http://127.0.0.1:{port}/pool", wait_until="domcontentloaded")
                await page.wait_for_selector("#pool tbody tr")
                usable.append((time.perf_counter() - started) * 1000)
                await page.wait_for_load_state("load")
                weights.append(await page.evaluate(
                    "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                    ".reduce((n, e) => n + (e.transferSize || 0), 0)"
                ))  # fmt: skip
            await browser.close()
    finally:
        server.should_exit = True
        await task
    first = weights[0]
    report.add(
        Figure(
            name="console pool page of 50, provincial root, in Chromium (navigation to the list shown), p95",
            value=percentile(usable[1:], 95),
            unit="ms",
            target="<= 300 ms",
            notes=f"p50 {percentile(usable[1:], 50):.0f} ms over {len(usable) - 1} loads after a first (cold) one"
            f" of {usable[0]:.0f} ms",
        ),
        Figure(
            name="console pool page, first load: bytes transferred (HTML, CSS, htmx; gzip)",
            value=first / 1024,
            unit="KiB",
            notes=f"later loads {weights[-1] / 1024:.1f} KiB (htmx cached: immutable, versioned URL)",
        ),
    )
