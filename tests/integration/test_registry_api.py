"""The registry end to end: HTTP command → event store → Kafka topic → query API."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import httpx
import orjson

from contracts.audit import ChainCheckpointed
from contracts.envelope import Envelope, Role
from runtime import checkpoint, clock
from runtime.settings import DEV_CHECKPOINT_SEED
from tests.infra import Infra
from tests.support import Running, auth, eventually, in_view, read_topic

ROOT = auth("root-admin", "cn")
PROVINCE = auth("qs-organizer", "cn.qs")
CITY = auth("bh-organizer", "cn.qs.bh")
OTHER_CITY = auth("hx-organizer", "cn.qs.hx")


async def build_tree(client: httpx.AsyncClient) -> None:
    units = [
        (ROOT, {"code": "cn", "name": "Central", "level": "central"}),
        (ROOT, {"code": "qs", "name": "Qingshan Province", "level": "provincial", "parent_code": "cn"}),
        (PROVINCE, {"code": "bh", "name": "Baihe City", "level": "municipal", "parent_code": "qs"}),
        (PROVINCE, {"code": "hx", "name": "Hexi City", "level": "municipal", "parent_code": "qs"}),
        (CITY, {"code": "bh_ly", "name": "Liuyang County", "level": "county", "parent_code": "bh"}),
    ]
    for headers, body in units:
        response = await client.post("/org-units", json=body, headers=headers)
        assert response.status_code == 201, response.text


def nomination(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "org_code": "bh_ly",
        "full_name": "Li Wei",
        "gender": "female",
        "birth_date": date(clock.today().year - 34, 5, 17).isoformat(),  # 33 or 34: within every age limit
        "education": "master",
        "current_position": "Deputy head, county poverty alleviation office",
        "years_of_service": 8,
        "grassroots_months": 30,
        "reason": "Led the county's rural road programme",
        "email": "li.wei@example.org",
    }
    body.update(overrides)
    return body


async def nominate(
    registry: Running, headers: Mapping[str, str] = CITY, *, seen_by: Iterable[Running] = (), **overrides: Any
) -> str:
    """Nominate `nomination(**overrides)` through the registry's API: the new cadre's id.

    With `seen_by`, once each of those services' copies of the pool has the cadre.
    """
    response = await registry.client.post("/cadres", json=nomination(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    cadre_id = str(response.json()["stream_id"]).removeprefix("cadre-")
    for view in seen_by:
        await in_view(view, cadre_id)
    return cadre_id


async def six_signed(registry: Running) -> ChainCheckpointed:
    """The tree, six cadres nominated, and a checkpoint signed with the development key over them."""
    await build_tree(registry.client)
    for n in range(6):
        await nominate(registry, full_name=f"Cadre {n}")
    signer = checkpoint.Checkpointer(
        registry.service.pool, registry.service.store, checkpoint.private_key(DEV_CHECKPOINT_SEED)
    )
    signed = await signer.checkpoint()
    assert signed is not None
    return signed


async def event_count(service: Running) -> int:
    return int(await service.service.pool.fetchval("SELECT count(*) FROM events"))


async def test_nomination_reaches_the_topic_and_the_query_api(registry: Running, infra: Infra, namespace: str) -> None:
    client = registry.client
    await build_tree(client)

    response = await client.post("/cadres", json=nomination(), headers=CITY)
    assert response.status_code == 201, response.text
    accepted = response.json()
    cadre_id = accepted["stream_id"].removeprefix("cadre-")
    assert accepted["version"] == 1
    assert response.headers["ETag"] == '"1"'

    # Visible at once in the query API of its own service (projection in the same transaction).
    cadre = (await client.get(f"/cadres/{cadre_id}", headers=PROVINCE)).json()
    assert cadre["full_name"] == "Li Wei"
    assert cadre["org_path"] == "cn.qs.bh.bh_ly"
    assert cadre["status"] == "in_pool"
    page = (await client.get("/cadres", params={"under": "bh"}, headers=CITY)).json()
    assert [c["cadre_id"] for c in page["items"]] == [cadre_id]

    # On the topic: keyed by cadre id, with the full envelope and a hash chain over all events.
    records = await read_topic(infra.kafka_bootstrap, f"{namespace}.registry.events", count=6)
    by_key = {r.key: r for r in records}
    record = by_key[cadre_id.encode()]
    envelope = Envelope.from_bytes(record.value)
    assert envelope.event_type == "CadreNominated"
    assert envelope.schema_version == 2
    assert str(envelope.cadre_id) == cadre_id
    assert envelope.stream_id == f"cadre-{cadre_id}"
    assert envelope.stream_version == 1
    assert envelope.org_path == "cn.qs.bh.bh_ly"
    assert envelope.actor.user == "bh-organizer"
    assert envelope.actor.role is Role.ORGANIZER
    assert envelope.source == "registry"
    assert envelope.payload["full_name"] == "Li Wei"
    envelopes = sorted((Envelope.from_bytes(r.value) for r in records), key=lambda e: e.position)
    assert [e.position for e in envelopes] == [1, 2, 3, 4, 5, 6]
    for before, after in itertools.pairwise(envelopes):
        assert after.prev_hash == before.hash
    for e in envelopes:
        fields = orjson.loads(e.to_bytes())
        assert fields["hash"] == e.hash
    assert await registry.service.store.verify_chain() is None

    # The registry serves no history of its own (the audit service's timeline does, restricted and recorded).
    assert (await client.get(f"/cadres/{cadre_id}/events", headers=CITY)).status_code == 404


async def test_out_of_scope_actor_can_neither_see_nor_change(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    cadre_id = (await client.post("/cadres", json=nomination(), headers=CITY)).json()["stream_id"][6:]
    before = await event_count(registry)

    assert (await client.get(f"/cadres/{cadre_id}", headers=OTHER_CITY)).status_code == 404
    assert (await client.get("/cadres", params={"under": "bh"}, headers=OTHER_CITY)).status_code == 404
    assert (await client.get("/cadres", headers=OTHER_CITY)).json()["items"] == []
    change = await client.patch(f"/cadres/{cadre_id}", json={"current_position": "Head"}, headers=OTHER_CITY)
    assert change.status_code == 404
    assert change.headers["content-type"] == "application/problem+json"
    nominate_elsewhere = await client.post("/cadres", json=nomination(full_name="Zhao Min"), headers=OTHER_CITY)
    assert nominate_elsewhere.status_code == 404
    retire = await client.post(f"/cadres/{cadre_id}/retirement", json={"reason": "withdrew"}, headers=OTHER_CITY)
    assert retire.status_code == 404

    viewer = auth("bh-viewer", "cn.qs.bh", Role.VIEWER)
    assert (await client.get(f"/cadres/{cadre_id}", headers=viewer)).status_code == 200
    forbidden = await client.put(f"/cadres/{cadre_id}/mentor", json={"user_id": "m1", "name": "Mentor"}, headers=viewer)
    assert forbidden.status_code == 403
    assert (await client.get("/cadres")).status_code == 401
    assert (await client.get("/cadres", headers={"Authorization": "Bearer forged"})).status_code == 401
    assert await event_count(registry) == before


async def test_invalid_bodies_change_nothing(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    before = await event_count(registry)

    bad_bodies = [
        nomination(birth_date="not a date"),
        nomination(education="kindergarten"),
        nomination(full_name=""),
        nomination(unexpected="field"),
        nomination(org_code="Not-A-Code"),
        {"org_code": "bh_ly"},
    ]
    for body in bad_bodies:
        response = await client.post("/cadres", json=body, headers=CITY)
        assert response.status_code == 422, body
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 422
        assert problem["errors"]
    raw = await client.post("/cadres", content=b"{not json", headers={**CITY, "content-type": "application/json"})
    assert raw.status_code == 422

    too_old = await client.post("/cadres", json=nomination(birth_date="1960-01-01"), headers=CITY)
    assert too_old.status_code == 422
    assert any("above the limit" in v for v in too_old.json()["violations"])
    unknown_unit = await client.post("/cadres", json=nomination(org_code="nowhere"), headers=CITY)
    assert unknown_unit.status_code == 404
    misplaced = await client.post(
        "/org-units", json={"code": "x1", "name": "X", "level": "provincial", "parent_code": "bh"}, headers=CITY
    )
    assert misplaced.status_code == 422
    assert await event_count(registry) == before


async def test_commands_through_the_cadre_life_and_conflicts(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    cadre_id = str(uuid.uuid4())
    first = await client.post("/cadres", json=nomination(cadre_id=cadre_id), headers=CITY)
    assert first.status_code == 201
    again = await client.post("/cadres", json=nomination(cadre_id=cadre_id), headers=CITY)
    assert again.status_code == 409

    mentor = {"user_id": "zhang.qiang", "name": "Zhang Qiang", "email": "zq@example.org"}
    assigned = await client.put(f"/cadres/{cadre_id}/mentor", json=mentor, headers={**CITY, "If-Match": '"1"'})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["version"] == 2
    stale = await client.patch(
        f"/cadres/{cadre_id}", json={"current_position": "Head"}, headers={**CITY, "If-Match": '"1"'}
    )
    assert stale.status_code == 409
    assert stale.json()["actual_version"] == 2
    same_mentor = await client.put(f"/cadres/{cadre_id}/mentor", json=mentor, headers=CITY)
    assert same_mentor.json()["events"] == []

    leader = {"user_id": "wang.fang", "name": "Wang Fang", "email": "wf@example.org"}
    designated = await client.put("/org-units/bh_ly/responsible-leader", json=leader, headers=CITY)
    assert designated.status_code == 200
    unit = (await client.get("/org-units/bh_ly", headers=CITY)).json()
    assert unit["leader"]["user_id"] == "wang.fang"

    no_post = await client.post(f"/cadres/{cadre_id}/retirement", json={"reason": "appointed"}, headers=CITY)
    assert no_post.status_code == 422
    retired = await client.post(
        f"/cadres/{cadre_id}/retirement",
        json={"reason": "appointed", "appointed_to": "Deputy county head"},
        headers=CITY,
    )
    assert retired.status_code == 200
    cadre = (await client.get(f"/cadres/{cadre_id}", headers=CITY)).json()
    assert cadre["status"] == "retired"
    assert cadre["retired_reason"] == "appointed"
    assert cadre["mentor"]["user_id"] == "zhang.qiang"
    twice = await client.post(f"/cadres/{cadre_id}/retirement", json={"reason": "withdrew"}, headers=CITY)
    assert twice.status_code == 409
    in_pool = (await client.get("/cadres", headers=CITY)).json()["items"]
    assert cadre_id not in [c["cadre_id"] for c in in_pool]
    everyone = await eventually(lambda: client.get("/cadres", params={"status": "any"}, headers=CITY))
    assert cadre_id in [c["cadre_id"] for c in everyone.json()["items"]]


async def test_the_correlation_id_travels_from_the_request_into_the_event(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    correlation = str(uuid.uuid4())
    response = await client.post("/cadres", json=nomination(), headers={**CITY, "X-Correlation-ID": correlation})
    assert response.headers["X-Correlation-ID"] == correlation
    cadre_id = response.json()["stream_id"].removeprefix("cadre-")
    [event] = await registry.service.store.read_cadre(uuid.UUID(cadre_id))
    assert str(event.correlation_id) == correlation
    generated = await client.get("/cadres", headers=CITY)
    assert uuid.UUID(generated.headers["X-Correlation-ID"])
