"""The rules of docs/security.md, tried as an outsider would, against services on the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import jwt
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from contracts.audit import LateEntryDeclared
from contracts.envelope import Actor, Role
from deploy.local.ports import free_port
from runtime import clock, db, egress, http, problems
from runtime.auth import ALGORITHM, ISSUER, Permission, issue_token
from runtime.settings import DEV_AUTH_SECRET
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.notify.channels import DeliveryError, Message, WebhookChannel
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from tests.integration.test_registry_api import CITY, OTHER_CITY, PROVINCE, build_tree, nomination
from tests.support import Launch, Running, eventually

HX = {"org_code": "hx"}


def bearer(actor: Actor, **options: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(DEV_AUTH_SECRET, actor, **options)}"}


async def nominated(client: Any, headers: Any, **overrides: Any) -> str:
    answer = await client.post("/cadres", json=nomination(**overrides), headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["stream_id"]).removeprefix("cadre-")


async def test_a_query_that_forgets_its_filter_sees_only_the_actors_subtree(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    for n in range(2):
        await nominated(client, CITY, full_name=f"Baihe {n}")
    await nominated(client, OTHER_CITY, full_name="Hexi 0", **HX)
    pool = registry.service.pool

    baihe = db.Scoped(pool, Actor(user="bh-viewer", org_path="cn.qs.bh", role=Role.VIEWER))
    hexi = db.Scoped(pool, Actor(user="hx-viewer", org_path="cn.qs.hx", role=Role.VIEWER))
    # No WHERE at all: PostgreSQL itself keeps each to its subtree.
    assert sorted(r["full_name"] for r in await baihe.fetch("SELECT full_name FROM cadres")) == ["Baihe 0", "Baihe 1"]
    assert [r["full_name"] for r in await hexi.fetch("SELECT full_name FROM cadres")] == ["Hexi 0"]
    assert {r["path"] for r in await baihe.fetch("SELECT path FROM org_units")} == {"cn.qs.bh", "cn.qs.bh.bh_ly"}
    assert all(r["org_path"].startswith("cn.qs.hx") for r in await hexi.fetch("SELECT org_path FROM events"))
    assert await hexi.fetchval("SELECT count(*) FROM events") == 2  # its unit registered, its cadre nominated
    assert await hexi.fetchval("SELECT count(*) FROM chain_head") == 0  # the store's machinery: nothing
    # The system's own work sees everything (the projections, the relay).
    assert await pool.fetchval("SELECT count(*) FROM cadres") == 3

    # And cannot be turned off from the service's side.
    async with baihe.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET row_security = off; SELECT * FROM cadres")
    async with baihe.acquire() as conn:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("DELETE FROM cadre_counts")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the service owns no table
        await pool.execute("ALTER TABLE cadres DISABLE ROW LEVEL SECURITY")
    assert await pool.fetchval("SELECT current_user") == "cadre_service"
    async with pool.acquire() as conn:
        assert await db.unsecured_tables(conn) == []


async def test_an_id_from_another_subtree_is_not_found_not_a_conflict(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    cadre_id = await nominated(client, CITY)
    before = await registry.service.pool.fetchval("SELECT count(*) FROM events")
    reuse = await client.post("/cadres", json=nomination(cadre_id=cadre_id, **HX), headers=OTHER_CITY)
    assert reuse.status_code == 404, reuse.text
    assert cadre_id not in reuse.text
    assert "version" not in reuse.text
    again = await client.post("/cadres", json=nomination(cadre_id=cadre_id), headers=CITY)
    assert again.status_code == 409  # in one's own subtree, the conflict is told
    assert await registry.service.pool.fetchval("SELECT count(*) FROM events") == before


async def test_a_grant_does_not_tell_whether_an_identity_acts_in_another_subtree(registry: Running) -> None:
    """Issue 22, hole 9: a 409 "already acts as another user" told across subtrees who has access."""
    await build_tree(registry.client)
    person = {"subject": "sub-of-li", "name": "Li", "org_code": "bh_ly", "role": "viewer"}
    granted = await registry.client.put("/access/li.bh", json=person, headers=CITY)
    assert granted.status_code == 200, granted.text

    async def projected() -> object:  # every service projects the grants from the registry's topic
        return await registry.service.pool.fetchval("SELECT 1 FROM access_grants WHERE user_id = 'li.bh'")

    await eventually(projected)
    elsewhere = {**person, "org_code": "hx"}
    hidden = await registry.client.put("/access/li.hx", json=elsewhere, headers=OTHER_CITY)
    assert hidden.status_code == 404, hidden.text
    unknown = await registry.client.put(
        "/access/li.hx", json={**elsewhere, "subject": "sub-of-nobody"}, headers=OTHER_CITY
    )
    assert unknown.status_code == 200, unknown.text  # the same question about an identity not granted: answered
    # Inside the actor's own subtree the conflict is told as it is.
    mine = await registry.client.put("/access/li.bh2", json=person, headers=CITY)
    assert mine.status_code == 409, mine.text


async def test_a_session_opens_only_for_a_granted_person_and_its_id_is_never_taken_over(registry: Running) -> None:
    """A session of someone with no grant counted for nothing yet was answered 204 (the fuzzer's ST302); an id
    already another person's session was silently kept as theirs."""
    await build_tree(registry.client)
    ends_at = (clock.now() + timedelta(hours=8)).isoformat()
    session = {"session_id": "s" * 40, "ends_at": ends_at}
    nobody = bearer(Actor(user="no.grant", org_path="cn.qs.bh", role=Role.ORGANIZER))
    refused = await registry.client.post("/sessions", json=session, headers=nobody)
    assert refused.status_code == 403, refused.text
    assert await registry.service.pool.fetchval("SELECT count(*) FROM console_sessions") == 0
    for user in ("li.bh", "wang.bh"):
        person = {"subject": f"sub-of-{user}", "name": user, "org_code": "bh_ly", "role": "viewer"}
        assert (await registry.client.put(f"/access/{user}", json=person, headers=CITY)).status_code == 200

    async def projected() -> object:
        return await registry.service.pool.fetchval("SELECT count(*) = 2 FROM access_grants")

    await eventually(projected)
    li = bearer(Actor(user="li.bh", org_path="cn.qs.bh.bh_ly", role=Role.VIEWER))
    wang = bearer(Actor(user="wang.bh", org_path="cn.qs.bh.bh_ly", role=Role.VIEWER))
    for _ in range(2):  # opening one's own session again is harmless
        opened = await registry.client.post("/sessions", json=session, headers=li)
        assert opened.status_code == 204, opened.text
    taken = await registry.client.post("/sessions", json=session, headers=wang)
    assert taken.status_code == 409, taken.text
    assert (await registry.client.get(f"/sessions/{session['session_id']}", headers=li)).status_code == 204
    assert (await registry.client.get(f"/sessions/{session['session_id']}", headers=wang)).status_code == 404


async def test_control_characters_are_refused_with_4xx_everywhere(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    for path in ("/cadres?name=%00", "/cadres?name=a%0Db", "/org-units/bh%00", f"/cadres/{uuid.uuid4()}%00"):
        answer = await client.get(path, headers=CITY)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    for name in ("Li\x00Wei", "Li\r\nBcc: all@example.org", "Li\x1bWei"):
        answer = await client.post("/cadres", json=nomination(full_name=name), headers=CITY)
        assert answer.status_code == 422, (name, answer.text)
    nul_user = bearer(Actor(user="x\x00y", org_path="cn.qs.bh", role=Role.ORGANIZER))
    assert (await client.get("/cadres", headers=nul_user)).status_code == 401
    for cursor in ("%00", base64.urlsafe_b64encode(b"[1, 2]").decode(), base64.urlsafe_b64encode(b'["a\\u0000", "x"]')):
        answer = await client.get("/cadres", params={"cursor": cursor}, headers=CITY)
        assert answer.status_code == 400, (cursor, answer.text)
    assert await registry.service.pool.fetchval("SELECT count(*) FROM cadres") == 0


async def test_every_answer_says_not_to_sniff_or_keep_it_and_docs_and_metrics_are_not_open(registry: Running) -> None:
    client = registry.client
    await build_tree(client)
    cadre_id = await nominated(client, CITY)
    answer = await client.get(f"/cadres/{cadre_id}", headers=CITY)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert (await client.get("/metrics")).status_code == 404  # on a port of its own
    assert (await client.get("/docs")).status_code == 404  # the console shows them to people signed in
    assert (await client.get("/openapi.json")).status_code == 401
    assert (await client.get("/asyncapi")).status_code == 401
    assert (await client.get("/asyncapi", headers=CITY)).json()["asyncapi"] == "3.0.0"
    document = (await client.get("/openapi.json", headers=CITY)).json()
    one = document["paths"]["/cadres/{cadre_id}"]["get"]["responses"]
    assert set(one) >= {"200", "400", "401", "403", "404", "422", "429", "500"}
    assert "application/problem+json" in one["404"]["content"]
    assert "application/json" not in one["422"]["content"]


async def test_a_body_too_large_is_refused_before_the_token_is_read(launch: Launch) -> None:
    registry = await launch(registry_app, RegistrySettings, "registry", max_request_bytes=4096)
    big = orjson.dumps(nomination(reason="x" * 10_000))
    answer = await registry.client.post("/cadres", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text  # not 401: nothing was read

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(10):
            yield b"x" * 1000

    streamed = await registry.client.post("/cadres", content=chunks(), headers=dict(CITY))
    assert streamed.status_code == 413


async def test_tokens_living_too_long_are_refused(registry: Running) -> None:
    actor = Actor(user="bh-organizer", org_path="cn.qs.bh", role=Role.ORGANIZER)
    forever = bearer(actor, ttl=timedelta(days=365 * 1000))
    answer = await registry.client.get("/cadres", headers=forever)
    assert answer.status_code == 401
    assert "longer" in answer.json()["detail"]
    assert (await registry.client.get("/cadres", headers=bearer(actor))).status_code == 200


async def test_tokens_whose_times_are_not_finite_numbers_are_refused(registry: Running) -> None:
    """Issue 22, hole 2: a NaN `exp` (JSON NaN or the string "nan") passed every lifetime check."""
    now = clock.now().timestamp()
    base = {"sub": "bh-organizer", "org": "cn.qs.bh", "role": "organizer", "iss": ISSUER, "iat": now, "exp": now + 60}
    for claim in ("exp", "iat"):
        for value in (float("nan"), float("inf"), "nan", "Infinity"):
            token = jwt.encode({**base, claim: value}, DEV_AUTH_SECRET, algorithm=ALGORITHM)
            answer = await registry.client.get("/cadres", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (claim, value, answer.text)
    sound = jwt.encode(base, DEV_AUTH_SECRET, algorithm=ALGORITHM)
    assert (await registry.client.get("/cadres", headers={"Authorization": f"Bearer {sound}"})).status_code == 200


async def test_a_body_of_many_unknown_fields_gets_a_short_refusal(registry: Running) -> None:
    """Issue 22, hole 5: 100,000 unknown fields got a 9 MB 422 after seconds; now a short one, at once."""
    await build_tree(registry.client)
    wide = {**nomination(), **{f"f{n}": n for n in range(100_000)}}
    answer = await registry.client.post("/cadres", json=wide, headers=CITY)
    assert answer.status_code == 422, answer.text[:200]
    assert len(answer.content) < 1024
    some = await registry.client.post("/cadres", json={**nomination(), **{f"f{n}": n for n in range(40)}}, headers=CITY)
    assert some.status_code == 422
    assert len(some.json()["errors"]) == problems.MAX_VALIDATION_ERRORS
    assert some.json()["errors_count"] == 40
    assert (await registry.client.get("/cadres", headers=CITY)).json()["items"] == []  # nothing was recorded


async def test_commands_and_expensive_reads_have_a_share_per_actor(launch: Launch) -> None:
    registry = await launch(
        registry_app,
        RegistrySettings,
        "registry",
        rate_limit_writes_burst=7,
        rate_limit_writes_per_second=0.01,
        rate_limit_expensive_burst=1,
        rate_limit_expensive_per_minute=0.6,
    )
    client = registry.client
    await build_tree(client)  # five units: five commands, three of them by other actors
    answers = [await client.post("/entry-checks", json=entry_check(), headers=CITY) for _ in range(7)]
    assert [a.status_code for a in answers].count(429) >= 1
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.post("/entry-checks", json=entry_check(), headers=PROVINCE)).status_code == 200
    assert (await client.get("/cadres", params={"format": "csv"}, headers=CITY)).status_code == 200
    assert (await client.get("/cadres", params={"format": "csv"}, headers=CITY)).status_code == 429
    assert (await client.get("/cadres", headers=CITY)).status_code == 200  # plain reads are not counted


def entry_check() -> dict[str, Any]:
    body = nomination()
    return {k: body[k] for k in ("org_code", "birth_date", "education", "years_of_service")}


async def test_backdating_is_bounded_and_a_late_entry_is_declared_and_shown(registry: Running, launch: Launch) -> None:
    audit = await launch(audit_app, AuditSettings, "audit")
    client = registry.client
    await build_tree(client)
    now = clock.now()
    organizer = Actor(user="bh-organizer", org_path="cn.qs.bh", role=Role.ORGANIZER)
    within = {**CITY, "X-Occurred-At": (now - timedelta(days=10)).isoformat()}
    assert (await client.post("/cadres", json=nomination(), headers=within)).status_code == 201

    long_ago = (now - timedelta(days=400)).isoformat()
    plain = {**bearer(organizer), "X-Occurred-At": long_ago}
    assert (await client.post("/cadres", json=nomination(), headers=plain)).status_code == 403
    permitted = {**bearer(organizer, permissions=[Permission.LATE_ENTRY]), "X-Occurred-At": long_ago}
    no_reason = await client.post("/cadres", json=nomination(), headers=permitted)
    assert no_reason.status_code == 422, no_reason.text
    reason = "档案补录: paper file found in the county archive"
    late = await client.post("/cadres", json=nomination(), headers={**permitted, "X-Late-Entry-Reason": quote(reason)})
    assert late.status_code == 201, late.text
    cadre_id = late.json()["stream_id"].removeprefix("cadre-")
    [declaration] = [
        e for e in await registry.service.store.read_cadre(uuid.UUID(cadre_id)) if e.event_type == "LateEntryDeclared"
    ]
    declared = LateEntryDeclared.model_validate(declaration.payload)
    assert (declared.reason, declared.permission, declared.stream_id) == (reason, "late_entry", f"cadre-{cadre_id}")
    assert declaration.actor.user == "bh-organizer"

    auditor = bearer(Actor(user="bh-auditor", org_path="cn.qs.bh", role=Role.AUDITOR))

    async def timeline() -> list[dict[str, Any]]:
        answer = await audit.client.get(f"/cadres/{cadre_id}/timeline", headers=auditor)
        return list(answer.json()) if answer.status_code == 200 else []

    entries = await eventually(timeline, until=lambda t: any(e["event_type"] == "CadreNominated" for e in t))
    nomination_entry = next(e for e in entries if e["event_type"] == "CadreNominated")
    assert nomination_entry["entered_late"] is True
    assert nomination_entry["late_entry"]["reason"] == reason
    assert nomination_entry["late_entry"]["permission"] == "late_entry"


async def test_a_server_error_is_a_problem_and_keeps_the_connection() -> None:
    app = FastAPI()
    http.install(app, service="test")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"ok": "yes"}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.closing(writer):
            answers = []
            for path in ("/broken", "/fine"):  # one connection, two requests
                writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                             .split(b":")[1])  # fmt: skip
                answers.append((head, await reader.readexactly(length)))
        assert answers[0][0].startswith(b"HTTP/1.1 500")
        assert b"application/problem+json" in answers[0][0]
        assert orjson.loads(answers[0][1])["status"] == 500
        assert answers[1][0].startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        await task


async def test_a_webhook_is_checked_again_when_sent_to_the_address_it_resolves_to() -> None:
    """A name set while it pointed elsewhere (or allowed then) is resolved and checked again at sending time."""
    connections: list[bool] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(True)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    message = Message(uuid.uuid4(), "Li Wei", "subject", "body", "en")
    async with server:
        refusing = WebhookChannel("secret")
        with pytest.raises(DeliveryError) as refused:
            await refusing.send(message, f"http://localhost:{port}/hook", {})
        assert refused.value.permanent
        assert "loopback" in str(refused.value)
        assert connections == []  # nothing was sent there
        await refusing.close()
        allowed = WebhookChannel("secret", allow=egress.Allowlist.parse(["127.0.0.0/8"]))
        await allowed.send(message, f"http://localhost:{port}/hook", {})
        assert connections == [True]
        await allowed.close()
    for address in (
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",  # noqa: S104 - an address refused, not bound
        "::1",
        "fe80::1",
    ):
        assert egress.refusal(ipaddress.ip_address(address)) is not None, address
    assert egress.refusal(ipaddress.ip_address("93.184.216.34")) is None
