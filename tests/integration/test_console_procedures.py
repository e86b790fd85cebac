"""The procedures in the console (httpx, real services and Keycloak): the board's scope, refusals, read-only roles."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.registry import OrgLevel
from deploy.local.signin import console_sign_in
from runtime import clock
from services.registry import demo
from tests.integration.test_console import ConsoleStack, console_for
from tests.support import Launch, auth

ENTRY = {
    "kind": "entry", "reserve_kind": "county deputy", "full_name": "Sun Li", "gender": "female",
    "birth_date": "1990-03-02", "education": "master", "current_position": "Section chief",
    "years_of_service": "10", "grassroots_months": "36", "reason": "Recommended by the county",
}  # fmt: skip


@pytest.fixture
async def console(launch: Launch, keycloak: str, console_port: int) -> AsyncIterator[ConsoleStack]:
    async with console_for(launch, keycloak, console_port, cadres=40) as stack:
        yield stack


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf_token" value="')[1].split('"')[0]


async def test_the_board_shows_the_subtree_only_and_refusals_are_the_services_reasons(  # noqa: PLR0915 - one visit
    console: ConsoleStack,
) -> None:
    people = {p.user_id: p for p in demo.people(console.org)}
    county = people["organizer.county"].unit
    other = next(
        u for u in console.org.units if u.level is OrgLevel.COUNTY and not u.path.startswith(county.path + ".")
        and u.path != county.path
    )  # fmt: skip
    # Another county's procedure, opened at the province through the selection service's API.
    selection = console.services["selection"]
    province = auth("demo.organizer", console.org.root.path)
    theirs = await selection.client.post(
        "/procedures",
        json={"kind": "entry", "org_code": other.code, "reserve_kind": "county deputy",
              "candidate": {"full_name": "Qian Wei", "gender": "male", "birth_date": "1989-01-01",
                            "education": "bachelor", "current_position": "Deputy head", "years_of_service": 9,
                            "grassroots_months": 24}},
        headers=province,
    )  # fmt: skip
    assert theirs.status_code == 201, theirs.text
    theirs_id = str(theirs.json()["stream_id"]).removeprefix("procedure-")

    # The county's organizer opens one through the console's form.
    page = await console_sign_in(console.client, "organizer.county")
    assert page.status_code == 200
    board = await console.client.get("/procedures")
    assert board.status_code == 200
    assert 'href="/procedures/new"' in board.text
    assert 'href="/procedures"' in board.text  # in the header's nav
    form = await console.client.get("/procedures/new")
    assert form.status_code == 200
    opened = await console.client.post(
        "/procedures/new", data={**ENTRY, "org_code": county.code, "csrf_token": _csrf(form)}
    )
    assert opened.status_code == 303, opened.text[-1500:]
    mine = opened.headers["location"]
    shown = await console.client.get(mine)
    assert shown.status_code == 200
    assert 'id="form-recommendation"' in shown.text  # the next step is offered, and only it (and stopping)
    assert 'id="form-inspection"' not in shown.text
    assert 'id="form-decision"' not in shown.text
    assert 'id="form-stop"' in shown.text
    assert 'id="verification"' in shown.text
    assert 'class="pass"' in shown.text.split('id="verification"')[1]

    # The board: the county's candidate, not the other county's; that procedure is not found by URL either.
    board = await console.client.get("/procedures")
    assert "Sun Li" in board.text
    assert "Qian Wei" not in board.text
    assert theirs_id not in board.text
    assert f'<span title="{county.code}">{county.name}</span>' in board.text  # the unit by name, the code on hover
    assert (await console.client.get(f"/procedures/{theirs_id}")).status_code == 404
    assert (await console.client.get(f"/procedures/{theirs_id}/file")).status_code == 404
    outside = await console.client.get(f"/procedures?under={other.code}")
    assert outside.status_code in {403, 404}
    assert "Qian Wei" not in outside.text
    stop_theirs = await console.client.post(
        f"/procedures/{theirs_id}/stop", data={"reason": "not ours", "csrf_token": _csrf(shown)}
    )
    assert stop_theirs.status_code == 404
    # The province sees both.
    everything = await selection.client.get("/procedures", headers=province)
    assert {r["candidate_name"] for r in everything.json()} >= {"Sun Li", "Qian Wei"}

    # A tally that does not add up: the service's reasons on the page (422), what was typed kept, nothing recorded.
    ballot = {
        "held_on": clock.today().isoformat(), "eligible": "40", "present": "38", "ballots_cast": "38",
        "valid_ballots": "30",
        "invalid_ballots": "2", "seats": "1", "votes": "25", "interviewed": "20", "in_favour": "15",
        "csrf_token": _csrf(shown), "version": "1",
    }  # fmt: skip
    refused = await console.client.post(f"{mine}/recommendation", data=ballot)
    assert refused.status_code == 422, refused.text[-1500:]
    assert 'id="refused"' in refused.text
    assert (
        "30 valid and 2 invalid ballots are not the 38 cast" in refused.text.split('id="refused"')[1].split("</div>")[0]
    )
    assert 'value="30"' in refused.text
    assert (await console.client.get(mine)).text.count('data-event="') == 1
    # Out of order: a decision before the recommendation is a 409 with the service's reason.
    early = await console.client.post(
        f"{mine}/decision",
        data={"held_on": clock.today().isoformat(), "members": "9", "present": "9", "votes_for": "9",
              "votes_against": "0", "abstentions": "0", "minutes_title": "minutes", "minutes_sha256": "a" * 64,
              "csrf_token": _csrf(shown)},
    )  # fmt: skip
    assert early.status_code == 409
    assert "out of order" in early.text
    # An unknown step, a malformed id: a 4xx, never a 500.
    assert (await console.client.post(f"{mine}/teleport", data={"csrf_token": _csrf(shown)})).status_code == 404
    assert (await console.client.get("/procedures/not-an-id")).status_code == 422

    # A viewer of the city reads the county's procedure and its file, and is offered no form.
    await console.client.post("/signout", data={"csrf_token": _csrf(shown)})
    await console_sign_in(console.client, "viewer.city")
    board = await console.client.get("/procedures")
    assert board.status_code == 200
    assert "Sun Li" in board.text
    assert 'href="/procedures/new"' not in board.text
    page = await console.client.get(mine)
    assert page.status_code == 200
    assert 'id="next"' not in page.text
    assert "<form" not in page.text.split('<main id="main">')[1].split("</main>")[0]
    printable = await console.client.get(f"{mine}/file")
    assert printable.status_code == 200
    assert 'id="verification"' in printable.text
    assert (await console.client.get("/procedures/new")).status_code == 403
