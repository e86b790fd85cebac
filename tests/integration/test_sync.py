"""Three levels, three stacks, one record: a province, a city and a county, linked by MirrorMaker 2.

Each level runs its own Kafka, PostgreSQL and every service as processes (deploy/local/levels.py,
the same launcher as `./dev up --levels 3`), one MirrorMaker 2 process links them. The tests share
the topology (starting it takes a minute) and each works on cadres of its own; the test that
rewrites the county's history comes last, as nothing is trusted from the county after it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import topics
from contracts.envelope import Actor, Role, canonical_json, chain_hash
from deploy.local import levels as local_levels
from deploy.local import stack as local_stack
from deploy.local.mirrormaker import forget_source
from runtime import checkpoint, clock, verify
from runtime.auth import issue_token
from runtime.kafka import topic_ends
from runtime.settings import DEV_AUTH_SECRET
from services.sync import bundles
from services.sync.app import SyncSettings
from tests.integration.test_registry_api import nomination
from tests.support import carry_bundle, eventually, read_topic

T = TypeVar("T")
pytestmark = pytest.mark.timeout(900)  # the first test also brings the three levels up

PROVINCE, CITY, COUNTY = "qs", "bh", "bh_c1"
COUNTY_UNIT = "bh_c1_t1"  # a township of the county: the county's own part of the tree


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_levels.Running]:
    """The three levels, their demo parts loaded (a few cadres each), and MirrorMaker running."""
    workdir: Path = tmp_path_factory.mktemp("levels")
    with local_levels.run_levels(workdir, 3) as running:
        try:
            for level in running.levels:
                stack = running.stacks[level.name]
                asyncio.run(local_stack.load_demo(stack, seed=11, cadres=30, part=running.demo_part(level)))
            yield running
        finally:
            # Every level's services stopped together (each still SIGTERM, then SIGKILL after its timeout):
            # run_levels stops them one after another, level by level, and then finds them stopped.
            if running.mirror is not None:
                running.mirror.stop()
            stop_together([s for stack in running.stacks.values() for s in stack.services.values()])


def stop_together(services: list[local_stack.ServiceProcess]) -> None:
    """Stop these service processes at the same time (SIGTERM each, wait for all)."""
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        list(pool.map(local_stack.ServiceProcess.stop, services))


def headers(path: str, role: Role = Role.ORGANIZER, user: str = "tester") -> dict[str, str]:
    token = issue_token(DEV_AUTH_SECRET, Actor(user=user, org_path=path, role=role))
    return {"Authorization": f"Bearer {token}"}


AT_PROVINCE = headers("qs")
AT_CITY = headers("qs.bh")
AT_COUNTY = headers("qs.bh.bh_c1")


@pytest.fixture
async def clients(levels: local_levels.Running) -> AsyncIterator[dict[str, dict[str, httpx.AsyncClient]]]:
    """level → service → an HTTP client to it."""
    opened: dict[str, dict[str, httpx.AsyncClient]] = {}
    for level, stack in levels.stacks.items():
        opened[level] = {name: httpx.AsyncClient(base_url=url, timeout=30) for name, url in stack.urls().items()}
    try:
        yield opened
    finally:
        for services in opened.values():
            for client in services.values():
                await client.aclose()


async def settle(probe: Callable[[], Awaitable[T]], until: Callable[[T], bool]) -> T:
    """Wait for something to cross the levels (a hop is MirrorMaker, a checkpoint and the ingest)."""
    return await eventually(probe, until=until, timeout=90)


async def nominate(registry: httpx.AsyncClient, name: str) -> str:
    body = nomination(org_code=COUNTY_UNIT, full_name=name, cadre_id=str(uuid.uuid4()))
    response = await registry.post("/cadres", json=body, headers=AT_COUNTY)
    assert response.status_code == 201, response.text
    return str(body["cadre_id"])


def ok(code: int) -> bool:
    return code == 200


async def listed(registry: httpx.AsyncClient, at: dict[str, str], cadre_id: str) -> int:
    return (await registry.get(f"/cadres/{cadre_id}", headers=at)).status_code


async def sql(levels: local_levels.Running, level: str, service: str, query: str, *args: Any) -> list[Any]:
    stack = levels.stacks[level]
    dsn = local_stack.database_dsn(stack.postgres_dsn, local_stack.database_name(stack.namespace, service))
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def both_sides(
    levels: local_levels.Running, at: str = PROVINCE
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The county registry's events, and those level `at` released from the county: position, id, hash."""
    county = await sql(levels, COUNTY, "registry", "SELECT position, event_id, hash FROM events ORDER BY position")
    province = await sql(
        levels,
        at,
        "sync",
        "SELECT r.position, r.event_id, a.hash FROM released r JOIN arrivals a USING (deployment, source, position)"
        " WHERE r.deployment = $1 AND r.source = 'registry' ORDER BY r.position",
        COUNTY,
    )
    return [tuple(r) for r in county], [tuple(r) for r in province]


async def archived_from_county(levels: local_levels.Running) -> list[Any]:
    """The province's audit archive of the county registry's events: (rows, distinct event ids)."""
    return await sql(
        levels,
        PROVINCE,
        "audit",
        "SELECT count(*), count(DISTINCT event_id) FROM archive WHERE deployment = $1 AND source = 'registry'",
        COUNTY,
    )


async def test_a_county_nomination_reaches_the_city_and_the_province(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    cadre_id = await nominate(clients[COUNTY]["registry"], "Lin Qiao")
    # One hop: the city's registry lists the county's cadre; two hops: the province's does too.
    await settle(lambda: listed(clients[CITY]["registry"], AT_CITY, cadre_id), until=lambda code: code == 200)
    await settle(lambda: listed(clients[PROVINCE]["registry"], AT_PROVINCE, cadre_id), until=lambda code: code == 200)
    page = (await clients[PROVINCE]["registry"].get("/cadres", params={"under": COUNTY}, headers=AT_PROVINCE)).json()
    assert cadre_id in {c["cadre_id"] for c in page["items"]}
    # The province's audit timeline shows the event as the county recorded it.
    auditor = headers("qs", Role.AUDITOR, "auditor.zhou")
    timeline = await settle(
        lambda: clients[PROVINCE]["audit"].get(f"/cadres/{cadre_id}/timeline", headers=auditor),
        until=lambda r: r.status_code == 200 and bool(r.json()),
    )
    [entry] = [e for e in timeline.json() if e["event_type"] == "CadreNominated"]
    assert entry["deployment"] == COUNTY
    # The city cannot change what the county owns: it is told who does.
    refused = await clients[CITY]["registry"].patch(
        f"/cadres/{cadre_id}", json={"current_position": "Head"}, headers=AT_CITY
    )
    assert refused.status_code == 409
    assert refused.json()["owner"] == COUNTY


async def county_registry(levels: local_levels.Running, query: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await sql(levels, COUNTY, "registry", query, *args)]


async def lose_the_county_registry(levels: local_levels.Running) -> None:
    """The county's disk and its Kafka are gone: the registry's database and its topic, MirrorMaker's memory of it."""
    county = levels.stacks[COUNTY]
    conn = await asyncpg.connect(county.postgres_dsn)
    try:
        await conn.execute(f'DROP DATABASE "{local_stack.database_name(county.namespace, "registry")}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=county.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topics.REGISTRY])
        await eventually(admin.list_topics, until=lambda names: topics.REGISTRY not in names, timeout=60)
    finally:
        await admin.close()
    # The county's topics start again at offset 0: the offsets the city's MirrorMaker remembers mean nothing now.
    assert await forget_source(levels.stacks[CITY].kafka_bootstrap, COUNTY)


async def restore_county_registry(levels: local_levels.Running, last_bundle: Path) -> str:
    """`./dev restore --from-log` in the county registry's environment, from the city's copy and the bundle."""
    command = [sys.executable, "-m", "deploy.local", "restore", "--service", "registry", "--from-log"]
    command += ["--from-parent", levels.stacks[CITY].kafka_bootstrap, "--bundle", str(last_bundle)]
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        env=local_stack.service_env(levels.stacks[COUNTY], "registry", 0),
        cwd=local_stack.REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def start_stopped(stack: local_stack.Stack) -> None:
    """Start again, in the stack's order, each service whose process has ended."""
    for name in list(stack.services):
        if stack.services[name].process.poll() is not None:
            local_stack.wait_ready(local_stack.restart_service(stack, name))


async def test_a_county_stack_is_rebuilt_from_its_city(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]], tmp_path: Path
) -> None:
    # The county's registry loses its database and its topic. It is rebuilt from the city's mirrored copy of that
    # topic and, for what the mirror had not copied yet, from the county's last signed bundle (ADR 0041); then it
    # serves again and its relay publishes everything anew (same positions, same bytes): repeats at the city.
    assert levels.mirror is not None
    county = levels.stacks[COUNTY]
    registry = clients[COUNTY]["registry"]
    synced = [await nominate(registry, f"Rebuilt {n}") for n in range(3)]
    for cadre_id in synced:
        await settle(functools.partial(listed, clients[CITY]["registry"], AT_CITY, cadre_id), until=ok)
    levels.mirror.stop()
    try:
        lagging = [await nominate(registry, f"Lagging {n}") for n in range(2)]  # the mirror never copied these
        [(last,)] = await county_registry(
            levels, "SELECT max(position) FROM events WHERE cadre_id = ANY($1::uuid[])", lagging
        )
        await settle(  # published on the county's topic, so the bundle made from it holds them
            lambda: county_registry(levels, "SELECT position FROM relay_cursor WHERE topic = $1", topics.REGISTRY),
            until=lambda rows: bool(rows) and rows[0][0] >= last,
        )
        await asyncio.to_thread(stop_together, list(county.services.values()))  # the county goes down whole
        before = await county_registry(levels, "SELECT position, event_id, hash, event_type FROM events ORDER BY 1")
        county_sync = sync_settings(levels, COUNTY)
        key = checkpoint.private_key(county_sync.checkpoint_signing_key.get_secret_value())
        last_bundle = tmp_path / "bh_c1-to-bh.zip"
        last_bundle.write_bytes(await bundles.export(county_sync, key, to=CITY))
        await lose_the_county_registry(levels)

        output = await restore_county_registry(levels, last_bundle)
        assert "registry: restored and verified" in output
        assert "last signed checkpoint verified" in output
        from_bundle = re.search(r"(\d+) of them from a bundle", output)
        assert from_bundle is not None, output
        assert int(from_bundle[1]) >= len(lagging)  # the nominations only the bundle held (the mirror lagged)
        after = await county_registry(levels, "SELECT position, event_id, hash, event_type FROM events ORDER BY 1")
        # Every event the county's topic had published is back: the same ids, positions and hashes, in one chain.
        assert after == before[: len(after)]
        assert [row[3] for row in before[len(after) :]] in ([], ["ChainCheckpointed"])  # at most an unsent one
        assert all(row[0] > last for row in before[len(after) :])
        report = await verify.verify_dsn(
            local_stack.database_dsn(county.postgres_dsn, local_stack.database_name(county.namespace, "registry")),
            service="registry",
            public_keys=[key.public_key()],
        )
        assert report.ok, report.findings
        assert report.checkpoints_verified >= 1
    finally:
        await asyncio.to_thread(start_stopped, county)  # the registry first; the others read its topic made anew
        levels.mirror.start()
    # The county serves again, its consumers read the registry's topic made anew from its beginning (their
    # watermarks drop the repeats), and its relay publishes the whole record anew: the city takes what it
    # lacked (the lagging nominations), drops the rest as repeats, and releases each event once; so does the
    # province.
    for cadre_id in [*synced, *lagging]:
        await settle(functools.partial(listed, clients[CITY]["registry"], AT_CITY, cadre_id), until=ok)
    after_rebuild = await nominate(registry, "After The Rebuild")
    await settle(functools.partial(listed, clients[CITY]["registry"], AT_CITY, after_rebuild), until=ok)
    await settle(functools.partial(listed, clients[PROVINCE]["registry"], AT_PROVINCE, after_rebuild), until=ok)
    for level in (CITY, PROVINCE):
        county_side, level_side = await settle(
            functools.partial(both_sides, levels, level), until=lambda sides: sides[0] == sides[1]
        )
        assert level_side == county_side
        assert len({row[0] for row in level_side}) == len(level_side)
    ids = [*synced, *lagging, after_rebuild]
    nominated = await sql(
        levels, CITY, "registry", "SELECT count(*) FROM received_events WHERE cadre_id = ANY($1::uuid[])", ids
    )
    assert nominated[0][0] == len(ids)  # one nomination each, however many times it crossed
    archived = await sql(
        levels, CITY, "audit", "SELECT count(*), count(DISTINCT event_id) FROM archive WHERE deployment = $1", COUNTY
    )
    assert archived[0][0] == archived[0][1]
    # The county's own consumers follow the topic made anew: its training pool takes the new cadre, once.
    await settle(
        lambda: sql(
            levels, COUNTY, "training", "SELECT count(*) FROM pool_cadres WHERE cadre_id = $1", uuid.UUID(after_rebuild)
        ),
        until=lambda rows: rows[0][0] == 1,
    )
    on_topic = await verify.verify_dsn(
        local_stack.database_dsn(county.postgres_dsn, local_stack.database_name(county.namespace, "registry")),
        service="registry",
        public_keys=[checkpoint.private_key(local_levels.development_key(COUNTY)).public_key()],
        bootstrap=county.kafka_bootstrap,
        topic=topics.REGISTRY,
    )
    assert on_topic.ok, on_topic.findings  # the table and the topic made anew hold the same record


async def test_a_cut_link_converges_with_nothing_lost_or_doubled(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    assert levels.mirror is not None
    levels.mirror.stop()
    try:
        # Both sides keep working while the link is cut.
        ids = [await nominate(clients[COUNTY]["registry"], f"Cut {n}") for n in range(15)]
        city_unit = await clients[CITY]["registry"].post(
            "/cadres", json=nomination(org_code="bh_c2", full_name="City Side"), headers=AT_CITY
        )
        assert city_unit.status_code == 201, city_unit.text
        await asyncio.sleep(3)
        assert await listed(clients[CITY]["registry"], AT_CITY, ids[-1]) == 404
    finally:
        levels.mirror.start()
    for cadre_id in ids:
        await settle(functools.partial(listed, clients[PROVINCE]["registry"], AT_PROVINCE, cadre_id), until=ok)
    # What the county recorded is what the province holds: the same ids and hashes, each once.
    county, province = await settle(functools.partial(both_sides, levels), until=lambda sides: sides[0] == sides[1])
    assert province == county
    archived = await archived_from_county(levels)
    assert archived[0][0] == archived[0][1] == len(province)


async def test_a_level_killed_and_frozen_under_load_ends_with_each_event_once(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    # The faults of docs/reliability.md across the links: while the county nominates, the
    # city's sync (which verifies and passes the county's events on) is killed with -9 and
    # restarted, and the province's is frozen past its consumer session, then woken.
    city_sync, province_sync = levels.stacks[CITY], levels.stacks[PROVINCE]

    async def nominate_many() -> list[str]:
        return [await nominate(clients[COUNTY]["registry"], f"Fault {n}") for n in range(30)]

    sending = asyncio.create_task(nominate_many())
    await asyncio.sleep(1)
    killed = city_sync.services["sync"].process
    os.killpg(killed.pid, signal.SIGKILL)
    await asyncio.to_thread(killed.wait)
    await asyncio.to_thread(local_stack.wait_ready, local_stack.restart_service(city_sync, "sync"))
    frozen = province_sync.services["sync"].process.pid
    os.killpg(frozen, signal.SIGSTOP)
    try:
        await asyncio.sleep(14)  # past aiokafka's 10 s session timeout: its group rebalances
    finally:
        os.killpg(frozen, signal.SIGCONT)
    ids = await sending
    for cadre_id in ids:
        await settle(functools.partial(listed, clients[PROVINCE]["registry"], AT_PROVINCE, cadre_id), until=ok)
    # Every event the county recorded, at the province once, with the county's ids and hashes.
    county, province = await settle(functools.partial(both_sides, levels), until=lambda sides: sides[0] == sides[1])
    assert province == county
    archived = await archived_from_county(levels)
    assert archived[0][0] == archived[0][1] == len(county)


async def test_a_directive_is_applied_once_and_its_outcome_comes_back(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    cadre_id = await nominate(clients[COUNTY]["registry"], "Posted Up")
    await settle(lambda: listed(clients[CITY]["registry"], AT_CITY, cadre_id), until=lambda code: code == 200)
    directive_id = str(uuid.uuid4())
    posting = {
        "kind": "upward",
        "host_org_code": COUNTY,
        "position": "Section member, city development and reform commission",
        "starts_on": (clock.today() - timedelta(days=10)).isoformat(),
        "planned_end_on": (clock.today() + timedelta(days=180)).isoformat(),
        "purpose": "A year at a higher authority",
    }
    issued = await clients[CITY]["sync"].post(
        "/directives",
        json={
            "directive_id": directive_id,
            "target_deployment": COUNTY,
            "cadre_id": cadre_id,
            "kind": "assign_posting",
            "body": posting,
            "note": "decided by the city's standing committee",
        },
        headers=AT_CITY,
    )
    assert issued.status_code == 201, issued.text

    async def status_at_city() -> str | None:
        rows = (await clients[CITY]["sync"].get("/directives", headers=AT_CITY)).json()
        return next((d["status"] for d in rows if d["directive_id"] == directive_id), None)

    assert await settle(status_at_city, until=lambda s: s == "applied") == "applied"
    postings = (await clients[COUNTY]["training"].get(f"/cadres/{cadre_id}/postings", headers=AT_COUNTY)).json()
    assert [p["kind"] for p in postings] == ["upward"]

    # The directive delivered a second time (the mirror copies it again): no second effect.
    mirrored = f"{CITY}.{topics.SYNC}"
    county_kafka = levels.stacks[COUNTY].kafka_bootstrap
    held = sum((await topic_ends(county_kafka, [mirrored])).values())
    copy = next(r for r in await read_topic(county_kafka, mirrored, count=held) if directive_id.encode() in r.value)
    producer = AIOKafkaProducer(bootstrap_servers=county_kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            mirrored, copy.value, key=copy.key, partition=copy.partition, headers=list(copy.headers)
        )
    finally:
        await producer.stop()
    await asyncio.sleep(5)
    outcomes = await sql(
        levels, COUNTY, "sync", "SELECT count(*) FROM events WHERE stream_id = $1", f"directive-{directive_id}"
    )
    assert outcomes[0][0] == 1
    postings = (await clients[COUNTY]["training"].get(f"/cadres/{cadre_id}/postings", headers=AT_COUNTY)).json()
    assert len(postings) == 1


async def test_a_handover_moves_the_single_writer(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    cadre_id = await nominate(clients[COUNTY]["registry"], "Moving Up")
    await settle(lambda: listed(clients[CITY]["registry"], AT_CITY, cadre_id), until=lambda code: code == 200)
    change = {"current_position": "Deputy director"}
    before = await clients[CITY]["registry"].patch(f"/cadres/{cadre_id}", json=change, headers=AT_CITY)
    assert before.status_code == 409  # the new owner's write before the handover: refused
    assert before.json()["owner"] == COUNTY
    handed = await clients[COUNTY]["registry"].post(
        f"/cadres/{cadre_id}/handover", json={"to_deployment": CITY, "reason": "posted to the city"}, headers=AT_COUNTY
    )
    assert handed.status_code == 200, handed.text

    async def city_write() -> httpx.Response:
        return await clients[CITY]["registry"].patch(f"/cadres/{cadre_id}", json=change, headers=AT_CITY)

    after = await settle(city_write, until=lambda r: r.status_code != 409)
    assert after.status_code == 200, after.text  # after the handover arrived: the city writes
    late = await clients[COUNTY]["registry"].patch(f"/cadres/{cadre_id}", json=change, headers=AT_COUNTY)
    assert late.status_code == 409  # the old owner's later write: refused, naming the new owner
    assert late.json()["owner"] == CITY
    # The county's training handed its stream of the cadre over too.
    handovers = await settle(
        lambda: sql(
            levels,
            COUNTY,
            "training",
            "SELECT count(*) FROM events WHERE cadre_id = $1 AND event_type = 'StreamHandedOver'",
            uuid.UUID(cadre_id),
        ),
        until=lambda rows: rows[0][0] == 1,
    )
    assert handovers[0][0] == 1

    # A directive about a cadre the county no longer owns is refused there, with the reason.
    directive_id = str(uuid.uuid4())
    issued = await clients[CITY]["sync"].post(
        "/directives",
        json={
            "directive_id": directive_id,
            "target_deployment": COUNTY,
            "cadre_id": cadre_id,
            "kind": "confirm_exit",
            "body": {"reason": "withdrew"},
        },
        headers=AT_CITY,
    )
    assert issued.status_code == 201, issued.text

    async def outcome() -> dict[str, Any] | None:
        rows = (await clients[CITY]["sync"].get("/directives", headers=AT_CITY)).json()
        return next((d for d in rows if d["directive_id"] == directive_id and d["status"] != "issued"), None)

    decided = await settle(outcome, until=lambda d: d is not None)
    assert decided is not None
    assert decided["status"] == "refused"
    assert "owned by deployment bh" in decided["outcome"]["reason"]


async def resend(kafka: str, topic: str, *needles: str) -> None:
    """Send a record of `topic` again, headers and all (as a mirror or a relay does after a crash)."""
    held = sum((await topic_ends(kafka, [topic])).values())
    copy = next(r for r in await read_topic(kafka, topic, count=held) if all(n.encode() in r.value for n in needles))
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, copy.value, key=copy.key, partition=copy.partition, headers=list(copy.headers)
        )
    finally:
        await producer.stop()


async def a_reserve_and_a_post(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]], name: str, post_title: str
) -> tuple[str, date, dict[str, str]]:
    """A reserve of the county's township, the day of its nomination there, and a vacant post of its team.

    The county's selection knows the reserve (its registry's events) when this returns; the post's quota has
    room for it (the demo's team and the other tests may have filled posts there).
    """
    county_selection = clients[COUNTY]["selection"]
    cadre_id = await nominate(clients[COUNTY]["registry"], name)
    [seen] = await settle(
        lambda: sql(
            levels,
            COUNTY,
            "selection",
            "SELECT in_pool, nominated_on FROM pool_cadres WHERE cadre_id = $1",
            uuid.UUID(cadre_id),
        ),
        until=lambda rows: bool(rows) and rows[0]["in_pool"],
    )
    team = (await county_selection.get(f"/teams/{COUNTY_UNIT}", headers=AT_COUNTY)).json()
    deputies = sum(1 for p in team["posts"] if p["kind"] == "deputy")
    quota = {"kind": "deputy", "approved": deputies + 1, "document_number": f"BH C1 quota {deputies + 1}"}
    quota_set = await county_selection.post(f"/teams/{COUNTY_UNIT}/quotas", json=quota, headers=AT_COUNTY)
    assert quota_set.status_code == 200, quota_set.text
    post = {"post_id": str(uuid.uuid4()), "kind": "deputy", "title": f"Deputy head, {post_title}", "rank": "deputy"}
    created = await county_selection.post(f"/teams/{COUNTY_UNIT}/posts", json=post, headers=AT_COUNTY)
    assert created.status_code == 201, created.text
    return cadre_id, seen["nominated_on"], post


async def test_a_province_directive_appointing_a_county_cadre_is_applied_once_at_the_county(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    county_selection = clients[COUNTY]["selection"]
    cadre_id, seen_on, post = await a_reserve_and_a_post(levels, clients, "Appointed Above", "appointed above")
    nominated_on, post_id = seen_on.isoformat(), post["post_id"]

    # The province appoints the county's reserve: a directive to the county (passed on by the city).
    directive_id = str(uuid.uuid4())
    appointment = {
        "org_code": COUNTY_UNIT,
        "post_id": post_id,
        "appointed_on": nominated_on,
        "document_number": "QS Org appointment 12",
    }
    issued = await clients[PROVINCE]["sync"].post(
        "/directives",
        json={
            "directive_id": directive_id,
            "target_deployment": COUNTY,
            "cadre_id": cadre_id,
            "kind": "appoint",
            "body": appointment,
            "note": "decided by the province's standing committee",
        },
        headers=AT_PROVINCE,
    )
    assert issued.status_code == 201, issued.text

    async def at_province() -> dict[str, Any] | None:
        rows = (await clients[PROVINCE]["sync"].get("/directives", headers=AT_PROVINCE)).json()
        return next((d for d in rows if d["directive_id"] == directive_id), None)

    directive = await settle(at_province, until=lambda d: d is not None and d["status"] != "issued")
    assert directive is not None
    assert (directive["status"], directive["target"], directive["kind"]) == ("applied", COUNTY, "appoint"), directive
    # The post filled at the county, by the reserve, on the province's authority.
    team = (await county_selection.get(f"/teams/{COUNTY_UNIT}", headers=AT_COUNTY)).json()
    [filled] = [p for p in team["posts"] if p["post_id"] == post_id]
    assert filled["holder"]["cadre_id"] == cadre_id
    assert filled["holder"]["from_pool"] is True
    appointed = [uuid.UUID(e) for e in directive["outcome"]["events"]]
    [event] = await sql(levels, COUNTY, "selection", "SELECT body FROM events WHERE event_id = ANY($1)", appointed)
    envelope = orjson.loads(event["body"])
    assert envelope["event_type"] == "CadreAppointed"
    assert envelope["actor"]["org_path"] == "qs"
    assert envelope["actor"]["user"] == f"{CITY}:{PROVINCE}:tester"
    # The county's registry takes the cadre out of its pool as appointed.
    cadre = await settle(
        lambda: clients[COUNTY]["registry"].get(f"/cadres/{cadre_id}", headers=AT_COUNTY),
        until=lambda r: r.json()["status"] == "retired",
    )
    assert (cadre.json()["retired_reason"], cadre.json()["appointed_to"]) == ("appointed", post["title"])

    # Applied again (the directive delivered again; the command repeated after a crash): one appointment.
    await resend(levels.stacks[COUNTY].kafka_bootstrap, f"{CITY}.{topics.SYNC}", "DirectiveIssued", directive_id)
    repeated = await county_selection.post(
        f"/cadres/{cadre_id}/appointment", json=appointment, headers=headers("qs", user=f"{CITY}:{PROVINCE}:tester")
    )
    assert repeated.status_code == 201, repeated.text
    assert repeated.json()["events"] == []
    await asyncio.sleep(5)
    stream = f"directive-{directive_id}"
    recorded = await sql(levels, COUNTY, "sync", "SELECT event_type FROM events WHERE stream_id = $1", stream)
    assert [r["event_type"] for r in recorded] == ["DirectiveApplied"]
    appointments = await sql(
        levels,
        COUNTY,
        "selection",
        "SELECT count(*) FROM events WHERE event_type = 'CadreAppointed' AND strpos(body, $1) > 0",
        cadre_id,
    )
    assert appointments[0][0] == 1


MOVED: dict[tuple[str, str], clock.Clock] = {}
"""The clock each restarted service runs on, by level and service (a test begins on the real clock)."""


async def restart_on_clock(levels: local_levels.Running, level: str, service: str, moved: clock.Clock) -> None:
    """Stop a level's service and start it again on the clock `moved` (processes take the clock at start)."""
    stack = levels.stacks[level]
    process = stack.services[service].process
    os.killpg(process.pid, signal.SIGTERM)
    await asyncio.to_thread(process.wait)
    clock.use(moved)
    MOVED[level, service] = moved
    await asyncio.to_thread(local_stack.wait_ready, local_stack.restart_service(stack, service))


async def run_at_province(
    levels: local_levels.Running,
    selection: httpx.AsyncClient,
    opening: dict[str, Any],
    *,
    name: str = "Li Wei",
    document_date: date | None = None,
) -> None:
    """Open a procedure for `name` at the province and take it through every step to its outcome.

    The outcome's document is dated `document_date` (default: the province's today). The province's
    selection goes on past the notice's working days (it stays there: the later tests of this module
    do not use it), and so does this test's clock.
    """
    procedure_id = opening["procedure_id"]
    clock.use(MOVED.get((PROVINCE, "selection"), clock.current()))  # where a test before left that service
    signed = [headers("qs")]  # a token of the province selection's clock (the test's, which moves below)

    async def step(path: str, body: dict[str, Any]) -> None:
        response = await selection.post(f"/procedures/{procedure_id}{path}", json=body, headers=signed[-1])
        assert response.status_code == 200, response.text

    # The province's selection knows the county's township (its registry's events, through sync): it opens there.
    opened = await settle(
        lambda: selection.post("/procedures", json=opening, headers=signed[-1]),
        until=lambda r: r.status_code != 404,
    )
    assert opened.status_code == 201, opened.text
    doc = {"title": "report", "sha256": "c" * 64}
    meeting = {
        "held_on": clock.today().isoformat(),
        "eligible": 30,
        "present": 28,
        "ballots_cast": 28,
        "valid_ballots": 27,
        "invalid_ballots": 1,
        "tally": [{"candidate_name": name, "votes": 20}],
    }
    await step("/recommendation", {"meeting": meeting, "talks": {"interviewed": 15, "in_favour": 12}})
    inspection = {"team": ["Zhao", "Qian"], "interviewed": 22, "report": doc, "conclusion": "fit", "clean_record": doc}
    await step("/inspection", inspection)
    decision = {"held_on": clock.today().isoformat(), "members": 11, "present": 9, "votes_for": 8}
    await step("/decision", decision | {"votes_against": 1, "abstentions": 0, "minutes": doc})
    await step("/notice", {"where": "the province's notice board"})
    board = (await selection.get("/procedures", headers=signed[-1])).json()
    [ends_on] = [date.fromisoformat(r["notice_ends_on"]) for r in board if r["procedure_id"] == procedure_id]
    moved = clock.current().at(clock.start_of(ends_on + timedelta(days=1)))
    await restart_on_clock(levels, PROVINCE, "selection", moved)
    signed.append(headers("qs"))
    await step("/notice/close", {})
    dated = (document_date or clock.today()).isoformat()
    await step("/outcome", {"document_number": "QS Org [2026] 4", "document_date": dated})


async def test_a_province_procedure_admits_a_county_candidate_at_the_county(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    cadre_id, procedure_id = str(uuid.uuid4()), str(uuid.uuid4())
    person = nomination(full_name="Li Wei")
    person = {k: v for k, v in person.items() if k not in {"org_code", "reason", "email"}}
    opening = {
        "kind": "entry",
        "procedure_id": procedure_id,
        "org_code": COUNTY_UNIT,
        "candidate_id": cadre_id,
        "candidate": person,
        "reserve_kind": "township deputy",
    }
    await run_at_province(levels, clients[PROVINCE]["selection"], opening)

    # The outcome goes down as a directive (through the city) and the county's registry nominates the candidate.
    cadre = await settle(
        lambda: clients[COUNTY]["registry"].get(f"/cadres/{cadre_id}", headers=AT_COUNTY),
        until=lambda r: r.status_code == 200,
    )
    assert (cadre.json()["status"], cadre.json()["basis"]) == ("in_pool", "procedure")
    assert cadre.json()["procedure_id"] == procedure_id
    [nominated] = await sql(
        levels, COUNTY, "registry", "SELECT body FROM events WHERE stream_id = $1", f"cadre-{cadre_id}"
    )
    envelope = orjson.loads(nominated["body"])
    assert envelope["event_type"] == "CadreNominated"
    assert envelope["actor"]["org_path"] == "qs"  # on the province's authority
    assert envelope["actor"]["user"] == f"{CITY}:{PROVINCE}:tester"  # decided by the province, passed on by the city
    # The county's record of it reaches the province, and the directive shows applied there.
    await settle(lambda: listed(clients[PROVINCE]["registry"], AT_PROVINCE, cadre_id), until=ok)
    directive_id = str(uuid.uuid5(uuid.UUID(procedure_id), "admit"))

    async def at_province() -> dict[str, Any] | None:
        rows = (await clients[PROVINCE]["sync"].get("/directives", headers=AT_PROVINCE)).json()
        return next((d for d in rows if d["directive_id"] == directive_id), None)

    directive = await settle(at_province, until=lambda d: d is not None and d["status"] != "issued")
    assert directive is not None
    assert (directive["status"], directive["target"], directive["kind"]) == ("applied", COUNTY, "admit")
    assert [uuid.UUID(e) for e in directive["outcome"]["events"]] == [uuid.UUID(envelope["event_id"])]

    # Delivered again: the outcome at the province, the directive at the county. One directive, one nomination.
    await resend(levels.stacks[PROVINCE].kafka_bootstrap, topics.SELECTION, "ProcedureConcluded", procedure_id)
    await resend(levels.stacks[COUNTY].kafka_bootstrap, f"{CITY}.{topics.SYNC}", "DirectiveIssued", directive_id)
    await asyncio.sleep(5)
    stream = f"directive-{directive_id}"
    for level in (PROVINCE, CITY, COUNTY):
        recorded = await sql(levels, level, "sync", "SELECT event_type FROM events WHERE stream_id = $1", stream)
        expected = "DirectiveApplied" if level == COUNTY else "DirectiveIssued"
        assert [r["event_type"] for r in recorded] == [expected]
    nominations = await sql(
        levels, COUNTY, "registry", "SELECT count(*) FROM events WHERE stream_id = $1", f"cadre-{cadre_id}"
    )
    assert nominations[0][0] == 1
    # The province's own registry left the outcome to the county (before, it tried and was refused): no stream here.
    own = await sql(
        levels, PROVINCE, "registry", "SELECT count(*) FROM events WHERE stream_id = $1", f"cadre-{cadre_id}"
    )
    assert own[0][0] == 0


async def test_a_province_appointment_procedure_appoints_a_county_reserve_at_the_county(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    county_selection = clients[COUNTY]["selection"]
    cadre_id, nominated_on, post = await a_reserve_and_a_post(
        levels, clients, "Appointed By Procedure", "by the province's procedure"
    )
    procedure_id, post_id = str(uuid.uuid4()), post["post_id"]  # nominated_on: the county's today, no later
    # The province's selection knows the county's reserve and post (their events, through sync) before it opens.
    await settle(
        lambda: sql(
            levels,
            PROVINCE,
            "selection",
            "SELECT 1 FROM pool_cadres c, posts p WHERE c.cadre_id = $1 AND c.in_pool AND p.post_id = $2",
            uuid.UUID(cadre_id),
            uuid.UUID(post_id),
        ),
        until=bool,
    )

    # The province runs the appointment procedure for the county's post and concludes it.
    motion = {"post_id": post_id, "post_title": post["title"], "reason": "a vacancy in the township's team"}
    opening = {
        "kind": "appointment",
        "procedure_id": procedure_id,
        "org_code": COUNTY_UNIT,
        "candidate_id": cadre_id,
        "motion": motion,
    }
    await run_at_province(
        levels, clients[PROVINCE]["selection"], opening, name="Appointed By Procedure", document_date=nominated_on
    )
    at_province_selection = headers("qs")  # on the province selection's clock, moved past the notice

    # The outcome goes down as an `appoint` directive (through the city): the county's team records it.
    team = await settle(
        lambda: county_selection.get(f"/teams/{COUNTY_UNIT}", headers=AT_COUNTY),
        until=lambda r: any((p["holder"] or {}).get("cadre_id") == cadre_id for p in r.json()["posts"]),
    )
    [filled] = [p for p in team.json()["posts"] if p["post_id"] == post_id]
    assert filled["holder"]["from_pool"] is True
    assert (filled["holder"]["basis"], filled["holder"]["procedure_id"]) == ("procedure", procedure_id)
    assert filled["holder"]["starts_on"] == nominated_on.isoformat()
    directive_id = str(uuid.uuid5(uuid.UUID(procedure_id), "appoint"))

    async def at_province() -> dict[str, Any] | None:
        rows = (await clients[PROVINCE]["sync"].get("/directives", headers=AT_PROVINCE)).json()
        return next((d for d in rows if d["directive_id"] == directive_id), None)

    directive = await settle(at_province, until=lambda d: d is not None and d["status"] != "issued")
    assert directive is not None
    assert (directive["status"], directive["target"], directive["kind"]) == ("applied", COUNTY, "appoint"), directive
    [event] = await sql(
        levels,
        COUNTY,
        "selection",
        "SELECT body FROM events WHERE event_id = ANY($1)",
        [uuid.UUID(e) for e in directive["outcome"]["events"]],
    )
    envelope = orjson.loads(event["body"])
    assert envelope["event_type"] == "CadreAppointed"
    assert (envelope["payload"]["procedure_id"], envelope["payload"]["document_number"]) == (
        procedure_id,
        "QS Org [2026] 4",
    )
    assert envelope["actor"]["org_path"] == "qs"  # on the province's authority
    assert envelope["actor"]["user"] == f"{CITY}:{PROVINCE}:tester"  # decided by the province, passed on by the city
    # The county's registry takes the cadre out of its pool as appointed to the post.
    cadre = await settle(
        lambda: clients[COUNTY]["registry"].get(f"/cadres/{cadre_id}", headers=AT_COUNTY),
        until=lambda r: r.json()["status"] == "retired",
    )
    assert (cadre.json()["retired_reason"], cadre.json()["appointed_to"]) == ("appointed", post["title"])
    # The county's appointment comes up to the province, whose team shows it.
    province_team = await settle(
        lambda: clients[PROVINCE]["selection"].get(f"/teams/{COUNTY_UNIT}", headers=at_province_selection),
        until=lambda r: any((p["holder"] or {}).get("cadre_id") == cadre_id for p in r.json()["posts"]),
    )
    assert province_team.status_code == 200

    # Delivered again: the outcome at the province, the directive at the county. One directive, one appointment.
    await resend(levels.stacks[PROVINCE].kafka_bootstrap, topics.SELECTION, "ProcedureConcluded", procedure_id)
    await resend(levels.stacks[COUNTY].kafka_bootstrap, f"{CITY}.{topics.SYNC}", "DirectiveIssued", directive_id)
    await asyncio.sleep(5)
    stream = f"directive-{directive_id}"
    for level in (PROVINCE, CITY, COUNTY):
        recorded = await sql(levels, level, "sync", "SELECT event_type FROM events WHERE stream_id = $1", stream)
        expected = "DirectiveApplied" if level == COUNTY else "DirectiveIssued"
        assert [r["event_type"] for r in recorded] == [expected]
    appointed = "SELECT count(*) FROM events WHERE event_type = 'CadreAppointed' AND strpos(body, $1) > 0"
    assert (await sql(levels, COUNTY, "selection", appointed, cadre_id))[0][0] == 1
    # The province's own selection left the outcome to the county: no appointment of its own, none refused
    # (before, it tried to write the county's team and the store sent the outcome to the dead letters).
    assert (await sql(levels, PROVINCE, "selection", appointed, cadre_id))[0][0] == 0
    province_kafka, dead_letters = levels.stacks[PROVINCE].kafka_bootstrap, topics.dlq(topics.SELECTION)
    held = sum((await topic_ends(province_kafka, [dead_letters])).values())
    dead = await read_topic(province_kafka, dead_letters, count=held) if held else []
    assert not [r for r in dead if procedure_id.encode() in r.value]


def sync_settings(levels: local_levels.Running, level: str) -> SyncSettings:
    """The settings a level's sync service runs with (its topology, its key, its database)."""
    env = local_stack.service_env(levels.stacks[level], "sync", 0)
    with mock.patch.dict(os.environ, env, clear=True):
        return SyncSettings()


async def link_drained(levels: local_levels.Running, level: str, child: str, logical: str) -> bool:
    """Whether `level`'s link consumer has read all that MirrorMaker copied of `child`'s `logical` topic."""
    below = await topic_ends(levels.stacks[child].kafka_bootstrap, [logical])
    copied = await topic_ends(levels.stacks[level].kafka_bootstrap, [f"{child}.{logical}"])
    if sum(copied.values()) < sum(below.values()):
        return False  # MirrorMaker has not copied everything yet
    admin = AIOKafkaAdminClient(bootstrap_servers=levels.stacks[level].kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets("sync.ingest")
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= end for tp, end in copied.items() if end)


async def test_the_same_events_by_bundle_and_by_the_link_have_one_effect(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    assert levels.mirror is not None
    levels.mirror.stop()
    try:
        # The link is cut: the county's cadres go to the city by bundle first.
        ids = [await nominate(clients[COUNTY]["registry"], f"Carried {n}") for n in range(4)]
        county, city = sync_settings(levels, COUNTY), sync_settings(levels, CITY)

        async def carried() -> list[int]:
            await carry_bundle(county, city)  # idempotent: again until a checkpoint has signed them all
            return [await listed(clients[CITY]["registry"], AT_CITY, cadre_id) for cadre_id in ids]

        await settle(carried, until=lambda codes: all(code == 200 for code in codes))
    finally:
        levels.mirror.start()
    # Then the link brings the same events again: every one of them is a repeat.
    await settle(lambda: link_drained(levels, CITY, COUNTY, "registry.events"), until=lambda drained: drained)

    county_side, city_side = await settle(
        functools.partial(both_sides, levels, CITY), until=lambda sides: sides[0] == sides[1]
    )
    assert city_side == county_side  # each event released once, whichever path brought it first
    cadres = await sql(levels, CITY, "registry", "SELECT count(*) FROM cadres WHERE cadre_id = ANY($1::uuid[])", ids)
    assert cadres[0][0] == len(ids)
    nominated = await sql(
        levels,
        CITY,
        "registry",
        "SELECT count(*) FROM received_events WHERE cadre_id = ANY($1::uuid[])",
        ids,
    )
    assert nominated[0][0] == len(ids)  # one nomination each, however it came
    archived = await sql(
        levels,
        CITY,
        "audit",
        "SELECT count(*), count(DISTINCT event_id) FROM archive WHERE deployment = $1",
        COUNTY,
    )
    assert archived[0][0] == archived[0][1]


async def test_a_county_that_rewrites_its_history_is_refused_at_the_city(
    levels: local_levels.Running, clients: dict[str, dict[str, httpx.AsyncClient]]
) -> None:
    # Last in this module: after it nothing more is trusted from the county's registry.
    await nominate(clients[COUNTY]["registry"], "Before The Rewrite")
    stack = levels.stacks[COUNTY]
    dsn = local_stack.database_dsn(stack.postgres_dsn, local_stack.database_name(stack.namespace, "registry"))
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT position, body FROM events WHERE position >= 3 ORDER BY position")
        previous = await conn.fetchval("SELECT hash FROM events WHERE position = 2")
        async with conn.transaction():
            await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
            for row in rows:
                fields = orjson.loads(row["body"])
                fields.pop("hash")
                if row["position"] == 3:
                    fields["payload"]["full_name"] = "Someone Else"
                fields["prev_hash"] = previous
                previous = chain_hash(fields)
                fields["hash"] = previous
                await conn.execute(
                    "UPDATE events SET body = $2, hash = $3 WHERE position = $1",
                    row["position"],
                    canonical_json(fields).decode(),
                    previous,
                )
            await conn.execute("UPDATE chain_head SET hash = $1", previous)
            await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    finally:
        await conn.close()
    # The county goes on writing on its rewritten chain (and signs it with its own key).
    after = await nominate(clients[COUNTY]["registry"], "After The Rewrite")
    status = await settle(
        lambda: clients[CITY]["sync"].get("/status", headers=AT_CITY),
        until=lambda r: any(
            c["deployment"] == COUNTY and c["source"] == "registry" and c["broken"] for c in r.json()["chains"]
        ),
    )
    chain = next(c for c in status.json()["chains"] if c["deployment"] == COUNTY and c["source"] == "registry")
    assert "does not follow" in chain["broken"] or "rewritten" in chain["broken"]
    assert any(r["deployment"] == COUNTY for r in status.json()["refusals"])
    await asyncio.sleep(3)
    assert await listed(clients[CITY]["registry"], AT_CITY, after) == 404  # never projected
