"""`./dev up --levels`: each level its own console, its own people signing in there through one Keycloak.

The launcher is `./dev up --levels`'s own (deploy/local/levels.py with `consoles`): two levels
(the province and its city Baihe), each its own Kafka, PostgreSQL, services and console, linked
by MirrorMaker 2, the demo split; one Keycloak with a client per level's console.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deploy.local import __main__ as launcher
from deploy.local import levels as local_levels
from deploy.local import stack as local_stack
from deploy.local.keycloak import DEMO_PASSWORD
from deploy.local.signin import Browserish, submit_login

pytestmark = pytest.mark.timeout(1500)  # two levels and a Keycloak, on a shared machine

SEED, CADRES = 11, 30


async def sign_in(url: str, username: str, target: str) -> httpx.Response:
    """Sign in at the console at `url` through the provider's login form; the page it shows then."""
    client = Browserish(base_url=url)
    client.jar[url.removeprefix("http://")] = {"cadre_lang": "en"}
    try:
        started = await client.get(f"/signin?next={target}")
        assert started.status_code == 303, started.text[:300]
        back = await submit_login(client, await client.follow(started), username, DEMO_PASSWORD)
        return await client.follow(back)
    finally:
        await client.aclose()


def test_each_level_signs_its_own_people_in_at_its_own_console_and_shows_its_links(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with local_levels.run_levels(tmp_path_factory.mktemp("levels"), 2, consoles=True) as running:
        for level in running.levels:
            asyncio.run(
                local_stack.load_demo(
                    running.stacks[level.name], seed=SEED, cadres=CADRES, part=running.demo_part(level)
                )
            )
        consoles = {name: stack.console.url for name, stack in running.stacks.items() if stack.console is not None}
        assert sorted(consoles) == ["bh", "qs"]
        assert len(set(consoles.values())) == 2  # a port each

        province = asyncio.run(sign_in(consoles["qs"], "organizer.province", "/links"))
        assert province.status_code == 200, province.text[:500]
        assert 'href="/links" aria-current="page"' in province.text
        assert 'title="bh"' in province.text
        assert "level below" in province.text

        city = asyncio.run(sign_in(consoles["bh"], "organizer.city", "/links"))
        assert city.status_code == 200, city.text[:500]
        assert 'title="qs"' in city.text
        assert "level above" in city.text

        # The city's organizer signs in at the province's console too (one provider), but acts nowhere there.
        elsewhere = asyncio.run(sign_in(consoles["qs"], "organizer.city", "/pool"))
        assert elsewhere.status_code == 403
        assert "no access to this platform yet" in elsewhere.text

        launcher.console.width = 250  # one row a line
        launcher._print_level_consoles(running, seed=SEED, cadres=CADRES)
        printed = capsys.readouterr().out
        for name, user in (("qs", "organizer.province"), ("bh", "organizer.city")):
            line = next(line for line in printed.splitlines() if user in line)
            assert consoles[name] in line
        assert running.issuer in printed.replace("\n", "")
