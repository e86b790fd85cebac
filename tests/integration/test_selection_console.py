"""Teams and succession in the console (httpx, real services and Keycloak): team, strength, 9-box, pool use.

The demo has no posts: the test lays out a post with a holder about to leave and a successor, a
vacant post, an assessment cycle with grades and potential, through the services' own APIs, then
reads the four screens as the county's organizer (names, not codes), and as people who may not
see that county or who send bad input (a clear 4xx).
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import openpyxl

from deploy.local.signin import console_sign_in
from runtime import clock
from services.registry import demo
from tests.integration.test_console import ConsoleStack, console_for
from tests.support import Launch, Running, auth, eventually

SCORES = {"political_integrity": 90, "ability": 90, "diligence": 90, "performance": 90, "probity": 90}


async def sent(service: Running, path: str, body: dict[str, Any], headers: Any, status: int = 201) -> Any:
    response = await service.client.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def lay_out(stack: ConsoleStack) -> dict[str, str]:
    """A county team with a post falling vacant (one successor, ready now) and a vacant post; a 9-box."""
    selection, assessment = stack.services["selection"], stack.services["assessment"]
    county = next(p for p in demo.people(stack.org) if p.user_id == "organizer.county").unit
    organizer = auth("organizer.county", county.path)
    found = [c for c in stack.org.cadres if c.unit.path.startswith(county.path) and not c.retirement]
    ready, rated = found[:2]
    third = found[2] if len(found) > 2 else None  # for the rating form (a smaller demo may have two)
    today = clock.today()
    await sent(selection, f"/teams/{county.code}/quotas", {"kind": "deputy", "approved": 2, "document_number": "Q-1"},
               organizer, 200)  # fmt: skip
    for title in ("Deputy head for roads", "Deputy head for schools"):
        await sent(selection, f"/teams/{county.code}/posts", {"kind": "deputy", "title": title, "rank": "deputy"},
                   organizer)  # fmt: skip
    laid_out = (await selection.client.get(f"/teams/{county.code}", headers=organizer)).json()
    posts = {p["title"]: p["post_id"] for p in laid_out["posts"]}
    roads = posts["Deputy head for roads"]
    holder = {"holder_name": "Gao Jian", "starts_on": (today - timedelta(days=1500)).isoformat(),
              "ends_by": (today + timedelta(days=90)).isoformat()}  # fmt: skip
    await sent(selection, f"/teams/{county.code}/posts/{roads}/incumbent", holder, organizer)
    await eventually(
        lambda: selection.service.pool.fetchval("SELECT count(*) FROM pool_cadres WHERE cadre_id = $1", ready.cadre_id),
        until=lambda n: n == 1,
    )
    successor = {"cadre_id": str(ready.cadre_id), "readiness": "ready_now", "reason": "Two postings done well"}
    await sent(selection, f"/teams/{county.code}/posts/{roads}/successors", successor, organizer)

    cycle = {"org_code": county.code, "period": "annual", "name": f"County review {today.year}",
             "starts_on": today.isoformat(), "ends_on": (today + timedelta(days=30)).isoformat()}  # fmt: skip
    await eventually(
        lambda: assessment.service.pool.fetchval(
            "SELECT count(*) FROM pool_cadres WHERE cadre_id = $1", rated.cadre_id
        ),
        until=lambda n: n == 1,
    )
    cycle_id = str((await sent(assessment, "/cycles", cycle, organizer))["stream_id"]).removeprefix("cycle-")
    evaluation = {"cycle_id": cycle_id, "grade": "excellent", "scores": SCORES, "evaluator_name": "County team"}
    await sent(assessment, f"/cadres/{rated.cadre_id}/evaluations", evaluation, organizer)
    potential = {"potential": "high", "cycle": str(today.year), "reason": "Leads well under pressure"}
    await sent(selection, f"/cadres/{rated.cadre_id}/potential", potential, organizer)
    await eventually(
        lambda: selection.client.get("/nine-box", headers=organizer),
        until=lambda r: r.status_code == 200 and r.json()["placed"] == 1,
    )
    if third is not None:
        await eventually(
            lambda: assessment.service.pool.fetchval(
                "SELECT count(*) FROM pool_cadres WHERE cadre_id = $1", third.cadre_id
            ),
            until=lambda n: n == 1,
        )
    return {"county": county.code, "county_path": county.path, "ready": ready.full_name,
            "ready_id": str(ready.cadre_id), "rated": rated.full_name, "rated_id": str(rated.cadre_id),
            "third_id": str(third.cadre_id) if third else "",
            "cycle": cycle_id}  # fmt: skip


async def test_teams_strength_nine_box_and_pool_use_in_the_console(
    launch: Launch, keycloak: str, console_port: int
) -> None:
    async with console_for(launch, keycloak, console_port) as stack:
        laid = await lay_out(stack)
        client = stack.client
        await console_sign_in(client, "organizer.county")

        team = await client.get("/team")
        assert team.status_code == 200, team.text[:500]
        assert 'href="/team" aria-current="page"' in team.text  # in the header nav and the tabs
        assert "Deputy head for roads" in team.text
        assert "Gao Jian" in team.text
        assert laid["ready"] in team.text
        assert "可立即接任" in team.text  # readiness by name (Chinese is the default language)
        assert ">ready_now<" not in team.text  # (a form's option carries it as its value)

        strength = await client.get("/strength", params={"within_months": 6})
        assert strength.status_code == 200
        falling = strength.text.split("个月内将出缺")[1]
        assert "Deputy head for schools" in falling  # vacant, nobody named
        assert "Deputy head for roads" not in falling  # its holder leaves, but a successor is ready
        assert 'href="/posts/export" download' in strength.text
        workbook = await client.get("/posts/export")
        assert workbook.status_code == 200, workbook.text[:300]
        sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).active
        assert sheet is not None
        cells = {str(cell.value) for row in sheet.iter_rows() for cell in row}
        assert {"Deputy head for roads", "Deputy head for schools", "Gao Jian"} <= cells

        boxes = await client.get("/nine-box", headers={"Accept-Language": "en"})
        assert boxes.status_code == 200
        grid = boxes.text.split('class="box box-9"')[1].split("</div>")[0]
        assert laid["rated"] in grid  # excellent and high potential: box 9
        assert f"County review {clock.today().year}" in boxes.text
        assert "<script>" not in boxes.text  # the chart is a CSS grid, no inline script

        use = await client.get("/pool-use")
        assert use.status_code == 200
        assert "本期间无任用" in use.text  # no appointment yet this year

        # Bad input: a clear 4xx, never a 500.
        since, until = clock.today(), clock.today() - timedelta(days=1)
        backwards = await client.get("/pool-use", params={"since": since.isoformat(), "until": until.isoformat()})
        assert backwards.status_code == 400
        assert (await client.get("/strength", params={"within_months": 0})).status_code == 422
        assert (await client.get("/nine-box", params={"cycle": "not-a-cycle"})).status_code == 422
        assert (await client.get("/nine-box", params={"cycle": str(uuid.uuid4())})).status_code == 404
        other = next(u for u in stack.org.units if u.level.value == "county" and u.code != laid["county"])
        assert (await client.get("/team", params={"unit": other.code})).status_code == 404

        await use_the_forms(stack, laid, team.text)

        # A viewer of the city sees the county's 9-box and team, with the city's units to choose from.
        token = team.text.split('name="csrf_token" value="')[1].split('"', maxsplit=1)[0]
        assert (await client.post("/signout", data={"csrf_token": token})).status_code == 200
        await console_sign_in(client, "viewer.city")
        for path in ("/team", "/strength", "/nine-box", "/pool-use"):
            page = await client.get(path, params={"under": laid["county"]} if path != "/team" else None)
            assert page.status_code == 200, (path, page.text[:300])
        seen = await client.get("/nine-box", params={"under": laid["county"]})
        assert laid["rated"] in seen.text


async def use_the_forms(stack: ConsoleStack, laid: dict[str, str], page: str) -> None:
    """The county organizer, signed in, names a successor, reviews a readiness, rates a potential."""
    client = stack.client
    assert laid["third_id"], "the demo has a third cadre in the county, graded below and rated through the form"
    selection, assessment = stack.services["selection"], stack.services["assessment"]
    organizer = auth("organizer.county", laid["county_path"])
    token = page.split('name="csrf_token" value="')[1].split('"', maxsplit=1)[0]
    laid_out = await selection.client.get(f"/teams/{laid['county']}", headers=organizer)
    posts = {p["title"]: p["post_id"] for p in laid_out.json()["posts"]}
    assert f'action="/team/{laid["county"]}/posts/{posts["Deputy head for schools"]}/successors"' in page
    assert f'<option value="{laid["rated_id"]}">' in page  # the pool of the unit's subtree to choose from
    named = await client.post(
        f"/team/{laid['county']}/posts/{posts['Deputy head for schools']}/successors",
        data={"csrf_token": token, "cadre_id": laid["rated_id"], "readiness": "three_plus_years",
              "reason": "Runs the county's schools office"},
    )  # fmt: skip
    assert named.status_code == 303, named.text[:500]
    roads = posts["Deputy head for roads"]
    reviewed = await client.post(
        f"/team/{laid['county']}/posts/{roads}/successors/{laid['ready_id']}/review",
        data={"csrf_token": token, "readiness": "one_to_two_years", "reason": "A posting still to finish"},
    )
    assert reviewed.status_code == 303, reviewed.text[:500]
    history = await selection.client.get(
        f"/teams/{laid['county']}/posts/{roads}/successors/{laid['ready_id']}/history", headers=organizer
    )
    assert "A posting still to finish" in history.text
    shown = await eventually(
        lambda: client.get("/team"), until=lambda r: "三年以上可接任" in r.text and "一至两年内可接任" in r.text
    )
    assert laid["rated"] in shown.text.split("Deputy head for schools")[1]
    refused = await client.post(  # a reason of white space only: the service's 4xx, shown, nothing recorded
        f"/team/{laid['county']}/posts/{roads}/successors/{laid['ready_id']}/review",
        data={"csrf_token": token, "readiness": "ready_now", "reason": " "},
    )
    assert 400 <= refused.status_code < 500

    graded = await sent(assessment, f"/cadres/{laid['third_id']}/evaluations",
                        {"cycle_id": laid["cycle"], "grade": "competent", "scores": SCORES,
                         "evaluator_name": "County team"}, organizer)  # fmt: skip
    assert graded["events"]
    await eventually(lambda: client.get("/nine-box"), until=lambda r: "/nine-box/potential" in r.text)
    rated = await client.post(
        "/nine-box/potential",
        data={"csrf_token": token, "cadre_id": laid["third_id"], "cycle_id": laid["cycle"],
              "cycle": f"County review {clock.today().year}", "potential": "medium",
              "reason": "Steady, not yet tried in a crisis"},
    )  # fmt: skip
    assert rated.status_code == 303, rated.text[:500]
    assert rated.headers["location"] == f"/nine-box?cycle={laid['cycle']}"
    await eventually(
        lambda: selection.client.get("/nine-box", headers=organizer),
        until=lambda r: r.status_code == 200 and r.json()["placed"] == 2,
    )
