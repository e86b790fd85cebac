"""Offline links: signed bundles between a county and its city, each its own deployment (ADR 0016).

Both deployments run their services in this process against the test's Kafka and PostgreSQL,
each in a namespace of its own on the one Kafka cluster and with databases of its own: nothing
links them but the bundles the tests carry (the mirrored topics their sync services create stay
empty; the bundle's path into the receiver is its sync database, then the released relays of
its own namespace). The online link and the two paths mixed are tested with MirrorMaker 2
elsewhere; `carry` is the step those tests call.

"Changes nothing" is checked literally: every table of the receiver's sync and registry
databases, row by row (a digest of each table's rows), before and after each refused bundle.
A refused bundle leaves a log line and the metric `cadre_sync_bundles_total`, no row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from pydantic import SecretStr

from contracts.envelope import Role
from runtime import bundle as signed
from runtime import checkpoint
from runtime.settings import ServiceSettings
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from services.sync import bundles
from services.sync.app import SyncSettings
from services.sync.app import create_app as sync_app
from services.sync.ingest import Ingest
from tests.integration.test_registry_api import nomination
from tests.support import ActorHeaders, Launch, Queryable, Running, auth, carry_bundle, eventually

CITY = auth("bh-organizer", "cn.qs.bh")
COUNTY = auth("ly-organizer", "cn.qs.bh.bh_ly")
COUNTY_VIEWER = auth("ly-viewer", "cn.qs.bh.bh_ly", Role.VIEWER)
CITY_ROOT = "cn.qs.bh"
COUNTY_ROOT = "cn.qs.bh.bh_ly"


def seed() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Level:
    """One deployment: its registry and its sync service, and an organizer of its root unit."""

    name: str
    registry: Running
    sync: Running
    organizer: ActorHeaders


@dataclass
class Levels:
    city: Level
    county: Level


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(running: Running) -> AsyncIterator[str]:
    """Serve an in-process service over real HTTP as well (what another service calls it by): its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(running.app, host="127.0.0.1", port=port, lifespan="off", log_level="error"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    try:
        await eventually(started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def start_levels(
    launch: Launch,
    namespace: str,
    *,
    county_urls: Callable[[Running], Awaitable[str]] | None = None,
    **city_settings: Any,
) -> Levels:
    """A city deployment and a county deployment below it, each with its own key, topics and databases."""
    city_seed, county_seed = seed(), seed()
    city: dict[str, Any] = {
        "deployment_id": "city",
        "deployment_root": CITY_ROOT,
        "child_deployments": {
            "county": {"root": COUNTY_ROOT, "public_key": checkpoint.public_key_b64(county_seed)},
        },
        "checkpoint_signing_key": SecretStr(city_seed),
        "checkpoint_interval_seconds": 1.0,  # the top level signs its directives for the level below
        "topic_namespace": f"{namespace}.city.",
        **city_settings,
    }
    county: dict[str, Any] = {
        "deployment_id": "county",
        "deployment_root": COUNTY_ROOT,
        "parent_deployment": "city",
        "parent_public_key": checkpoint.public_key_b64(city_seed),
        "checkpoint_signing_key": SecretStr(county_seed),
        "topic_namespace": f"{namespace}.county.",
    }
    city_registry = await launch(registry_app, RegistrySettings, "city_registry", **city)
    county_registry = await launch(registry_app, RegistrySettings, "county_registry", **county)
    urls = {"registry": await county_urls(county_registry)} if county_urls is not None else {}
    city_sync = await launch(sync_app, SyncSettings, "city_sync", **city)
    county_sync = await launch(sync_app, SyncSettings, "county_sync", service_urls=urls, **county)
    levels = Levels(
        city=Level("city", city_registry, city_sync, CITY), county=Level("county", county_registry, county_sync, COUNTY)
    )
    units = [
        (levels.city, CITY, {"code": "bh", "name": "Baihe City", "level": "municipal", "parent_code": "qs"}),
        (levels.county, COUNTY, {"code": "bh_ly", "name": "Liuyang County", "level": "county", "parent_code": "bh"}),
    ]
    for level, headers, body in units:
        response = await level.registry.client.post("/org-units", json=body, headers=headers)
        assert response.status_code == 201, response.text
    return levels


@pytest.fixture
async def levels(launch: Launch, namespace: str) -> Levels:
    return await start_levels(launch, namespace)


async def nominate(county: Level, name: str) -> str:
    response = await county.registry.client.post("/cadres", json=nomination(full_name=name), headers=COUNTY)
    assert response.status_code == 201, response.text
    return str(response.json()["stream_id"]).removeprefix("cadre-")


async def signed_and_published(*services: Running) -> None:
    """Wait until each service's chain ends with a checkpoint signing all before it, published by its relay.

    A checkpoint may sign less than all before it (an event committed while it was being signed):
    the next round signs again, so wait for that one.
    """
    for service in services:
        pool, topic = service.service.pool, service.service.settings.own_topic

        async def head(pool: Any = pool, topic: str = topic) -> tuple[Any, Any]:
            last = await pool.fetchrow(
                "SELECT position, event_type, (body::jsonb -> 'payload' ->> 'position')::bigint AS signs"
                " FROM events ORDER BY position DESC LIMIT 1"
            )
            sent = await pool.fetchval("SELECT position FROM relay_cursor WHERE topic = $1", topic)
            return last, sent

        await eventually(
            head,
            until=lambda h: (
                h[0] is not None
                and h[0]["event_type"] == "ChainCheckpointed"
                and h[0]["signs"] == h[0]["position"] - 1
                and h[1] == h[0]["position"]
            ),
        )


async def carry(sender: Level, receiver: Level) -> bundles.Imported:
    """One offline round through the sync APIs: ack at the receiver, export at the sender, import at the receiver."""
    ack = await receiver.sync.client.get("/bundles/ack", headers=receiver.organizer)
    assert ack.status_code == 200, ack.text
    since = [f"{c['deployment']}:{c['source']}:{c['position']}" for c in ack.json()["chains"]]
    exported = await sender.sync.client.get(
        "/bundles", params={"to": receiver.name, "since": since}, headers=sender.organizer
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "application/zip"
    imported = await receiver.sync.client.post(
        "/bundles", content=exported.content, headers={**receiver.organizer, "content-type": "application/zip"}
    )
    assert imported.status_code == 200, imported.text
    return bundles.Imported.model_validate(imported.json())


async def city_lists(levels: Levels, *names: str) -> None:
    async def listed() -> set[str]:
        response = await levels.city.registry.client.get("/cadres", params={"under": "bh"}, headers=CITY)
        assert response.status_code == 200, response.text
        return {c["full_name"] for c in response.json()["items"]}

    await eventually(listed, until=lambda found: found == set(names))


async def test_a_county_bundle_brings_its_cadres_to_the_city_once_and_then_what_is_new(
    levels: Levels, tmp_path: Path
) -> None:
    await nominate(levels.county, "Li Wei")
    await signed_and_published(levels.county.registry)

    first = await carry(levels.county, levels.city)
    county_events = int(await levels.county.registry.service.pool.fetchval("SELECT count(*) FROM events"))
    assert first.exporter == "county"
    assert first.events == first.arrived == county_events  # the registry's chain; the county's sync has none yet
    assert first.released >= county_events - 1  # all the last checkpoint signs (and the checkpoint, where released)
    assert first.refused == []
    await city_lists(levels, "Li Wei")  # through registry.received, into the city's own projection

    async def kept() -> int:
        return int(
            await levels.city.registry.service.pool.fetchval(
                "SELECT count(*) FROM received_events WHERE deployment = 'county'"
            )
        )

    await eventually(kept, until=lambda count: count == first.released)

    again = await carry(levels.county, levels.city)  # the ack says everything is there: nothing to send
    assert (again.events, again.arrived, again.released) == (0, 0, 0)

    # The same bundle imported twice: the second time, every event is a repeat.
    bundle = await levels.county.sync.client.get("/bundles", params={"to": "city"}, headers=COUNTY)
    repeat = await levels.city.sync.client.post("/bundles", content=bundle.content, headers=CITY)
    assert repeat.status_code == 200, repeat.text
    assert (repeat.json()["arrived"], repeat.json()["repeats"]) == (0, county_events)

    # The next round from the command line, since what the city acknowledges.
    await nominate(levels.county, "Zhang Min")
    await signed_and_published(levels.county.registry)
    ack, path = tmp_path / "ack.json", tmp_path / "bundle.zip"
    run_cli(levels.city.sync, "ack", "--out", str(ack))
    run_cli(levels.county.sync, "export", "--to", "city", "--since", str(ack), "--out", str(path))
    manifest = signed.unpack(path.read_bytes()).manifest
    (chain,) = manifest["chains"]  # only what the city lacks: the new nomination and its checkpoint
    assert (chain["deployment"], chain["source"], chain["first"], chain["count"]) == (
        "county",
        "registry",
        county_events + 1,
        2,
    )
    county_key = levels.county.sync.service.settings.checkpoint_signing_key.get_secret_value()
    assert signed.verify(str(path), checkpoint.public_key_b64(county_key)) == []  # offline, with the one file
    printed = run_cli(levels.city.sync, "import", str(path))
    assert "from county, 2 events: 2 new, 0 repeats" in printed
    await city_lists(levels, "Li Wei", "Zhang Min")


def run_cli(sync: Running, *args: str) -> str:
    environment = {**os.environ, **settings_environment(sync.service.settings)}
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "services.sync.cli", *args],
        capture_output=True, text=True, timeout=120, check=False, env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def settings_environment(settings: ServiceSettings) -> dict[str, str]:
    """The environment a process of the same service and deployment reads."""
    values = settings.model_dump(mode="json")
    environment = {}
    for name, dumped in values.items():
        raw = getattr(settings, name)
        value = raw.get_secret_value() if isinstance(raw, SecretStr) else dumped
        environment[name.upper()] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return environment


async def snapshot(*databases: Queryable) -> list[dict[str, str]]:
    """Every table of each database: its rows' count and a digest of all of them."""
    found = []
    for pool in databases:
        assert not isinstance(pool, str)
        tables = [
            r["tablename"] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        rows = {}
        for table in sorted(tables):
            rows[table] = str(
                await pool.fetchval(
                    f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')"
                    f' FROM "{table}" t'
                )
            )
        found.append(rows)
    return found


async def quiet(*databases: Queryable) -> list[dict[str, str]]:
    """A snapshot once the services' own work after starting (links vouched, relays caught up) is done."""
    previous = await snapshot(*databases)
    while True:
        await asyncio.sleep(1.5)
        now = await snapshot(*databases)
        if now == previous:
            return now
        previous = now


def rezip(good: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


REGISTRY_FILE = "chains/county.registry.jsonl"
LIMIT = 256 * 1024


def edit_line(files: dict[str, bytes]) -> None:
    files[REGISTRY_FILE] = files[REGISTRY_FILE].replace(b"Li Wei", b"Li Wai", 1)


def flip_a_byte(files: dict[str, bytes]) -> None:
    data = bytearray(files[REGISTRY_FILE])
    data[len(data) // 2] ^= 0x01
    files[REGISTRY_FILE] = bytes(data)


def remove_a_line(files: dict[str, bytes]) -> None:
    lines = files[REGISTRY_FILE].splitlines(keepends=True)
    files[REGISTRY_FILE] = b"".join(lines[:1] + lines[2:])


def reorder(files: dict[str, bytes]) -> None:
    lines = files[REGISTRY_FILE].splitlines(keepends=True)
    files[REGISTRY_FILE] = b"".join([lines[1], lines[0], *lines[2:]])


def edit_manifest(files: dict[str, bytes]) -> None:
    manifest = orjson.loads(files[signed.MANIFEST])
    manifest["chains"][0]["count"] -= 1
    manifest["chains"][0]["last"] -= 1
    files[signed.MANIFEST] = orjson.dumps(manifest)


def add_a_file(files: dict[str, bytes]) -> None:
    files["chains/county.training.jsonl"] = files[REGISTRY_FILE]


def resign(good: bytes, key: Any) -> bytes:
    read = signed.unpack(good)
    manifest = {k: v for k, v in read.manifest.items() if k not in {"files", "key_id", "signature"}}
    return signed.pack(manifest, read.files, key)


def damage(good: bytes) -> bytes:
    """Flip a byte inside the compressed data of the zip's first file."""
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        first = archive.infolist()[0]
    data = bytearray(good)
    data[first.header_offset + 30 + len(first.filename) + first.compress_size // 2] ^= 0xFF
    return bytes(data)


async def test_a_changed_bundle_is_refused_whole_with_its_reason_and_changes_nothing(
    launch: Launch, namespace: str
) -> None:
    levels = await start_levels(launch, namespace, bundle_max_bytes=LIMIT)
    await nominate(levels.county, "Li Wei")
    await nominate(levels.county, "Zhang Min")
    await signed_and_published(levels.county.registry)
    response = await levels.county.sync.client.get("/bundles", params={"to": "city"}, headers=COUNTY)
    assert response.status_code == 200, response.text
    good = response.content
    county_settings = levels.county.sync.service.settings
    gap = await bundles.export(
        county_settings,
        checkpoint.private_key(county_settings.checkpoint_signing_key.get_secret_value()),
        to="city",
        since={("county", "registry"): 2},
    )
    tampered = {
        "a changed event": (rezip(good, edit_line), "is not the file the manifest signed (SHA-256 differs)"),
        "a byte": (rezip(good, flip_a_byte), "is not the file the manifest signed (SHA-256 differs)"),
        "a line removed": (rezip(good, remove_a_line), "is not the file the manifest signed (SHA-256 differs)"),
        "lines reordered": (rezip(good, reorder), "is not the file the manifest signed (SHA-256 differs)"),
        "an edited manifest": (rezip(good, edit_manifest), "the manifest's signature does not verify"),
        "a file added": (rezip(good, add_a_file), "chains/county.training.jsonl is in the zip but not in the manifest"),
        "a wrong key": (resign(good, checkpoint.private_key(seed())), "not with the expected key"),
        "a damaged zip": (damage(good), "the zip is damaged"),
        "not a zip": (b"not a bundle at all", "not a bundle (zip)"),
        "a gap before its first event": (gap, "a gap before the first event of chain county/registry"),
    }
    city_databases = (levels.city.sync.service.pool, levels.city.registry.service.pool)
    before = await quiet(*city_databases)
    for what, (data, reason) in tampered.items():
        answer = await levels.city.sync.client.post("/bundles", content=data, headers=CITY)
        assert answer.status_code == 422, (what, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert reason in answer.json()["detail"], (what, answer.json()["detail"])
        assert await snapshot(*city_databases) == before, what

    # A bundle for the city imported where it does not belong: refused too.
    elsewhere = await levels.county.sync.client.post("/bundles", content=good, headers=COUNTY)
    assert elsewhere.status_code == 422
    assert "is not linked to county with a pinned key" in elsewhere.json()["detail"]

    # An import cut short (after every event was taken, before the commit) leaves nothing either ...
    settings = levels.city.sync.service.settings

    async def crash(done: int, total: int) -> None:
        assert done == total
        msg = "the power went out"
        raise RuntimeError(msg)

    ingest = Ingest(settings.topology, settings.parent_public_key)
    with pytest.raises(RuntimeError, match="the power went out"):
        await bundles.take(levels.city.sync.service.pool, ingest, settings.topology, good, progress=crash)
    assert await snapshot(*city_databases) == before

    # ... and is simply run again.
    answer = await levels.city.sync.client.post("/bundles", content=good, headers=CITY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["released"] > 0
    await city_lists(levels, "Li Wei", "Zhang Min")

    # Organizers of the deployment's root only; and no more than the size it accepts.
    county = levels.county.sync.client
    assert (await county.get("/bundles", params={"to": "city"}, headers=COUNTY_VIEWER)).status_code == 403
    township = auth("ly-town-organizer", "cn.qs.bh.bh_ly.town")
    assert (await county.get("/bundles", params={"to": "city"}, headers=township)).status_code == 404
    assert (await county.post("/bundles", content=good, headers=township)).status_code == 404
    assert (await county.get("/bundles", params={"to": "elsewhere"}, headers=COUNTY)).status_code == 404
    assert (await county.get("/bundles", params={"to": "city", "since": "x"}, headers=COUNTY)).status_code == 400

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // 4096 + 1):
            yield b"\0" * 4096

    for body in (b"\0" * (LIMIT + 1), chunks()):  # declared, and sent without a length
        too_big = await levels.city.sync.client.post("/bundles", content=body, headers=CITY)
        assert too_big.status_code == 413, too_big.text
        assert too_big.headers["content-type"] == "application/problem+json"
    assert await snapshot(*city_databases) != before  # (the good bundle above)


async def test_a_directive_goes_down_by_bundle_is_applied_once_and_its_outcome_comes_back_up(
    launch: Launch, namespace: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:

        async def url_of(registry: Running) -> str:
            return await stack.enter_async_context(served(registry))

        levels = await start_levels(launch, namespace, county_urls=url_of)
        cadre = await nominate(levels.county, "Li Wei")
        await signed_and_published(levels.county.registry)
        await carry(levels.county, levels.city)
        await city_lists(levels, "Li Wei")

        directive = {
            "target_deployment": "county",
            "cadre_id": cadre,
            "kind": "confirm_exit",
            "body": {"reason": "withdrew"},
            "note": "confirmed by the city",
        }
        issued = await levels.city.sync.client.post("/directives", json=directive, headers=CITY)
        assert issued.status_code == 201, issued.text
        directive_id = issued.headers["Location"].rsplit("/", 1)[-1]
        await signed_and_published(levels.city.sync)

        down = await carry(levels.city, levels.county)
        assert down.released > 0
        again = await carry(levels.city, levels.county)
        assert again.arrived == 0

        async def county_directive() -> Any:
            return await levels.county.sync.service.pool.fetchrow(
                "SELECT status, outcome FROM directives WHERE directive_id = $1", directive_id
            )

        decided = await eventually(county_directive, until=lambda row: row is not None and row["status"] != "issued")
        assert decided["status"] == "applied", decided
        cadre_there = await levels.county.registry.client.get(f"/cadres/{cadre}", headers=COUNTY)
        assert cadre_there.json()["status"] == "retired"

        await signed_and_published(levels.county.registry, levels.county.sync)
        up = await carry_bundle(levels.county.sync.service.settings, levels.city.sync.service.settings)
        assert up.events == up.arrived == 4  # the retirement and the outcome, each with its chain's checkpoint

        async def city_directive() -> Any:
            response = await levels.city.sync.client.get("/directives", headers=CITY)
            return next(d for d in response.json() if d["directive_id"] == directive_id)

        outcome = await eventually(city_directive, until=lambda d: d["status"] != "issued")
        assert outcome["status"] == "applied"

        async def seen_at_the_city() -> str:
            response = await levels.city.registry.client.get(f"/cadres/{cadre}", headers=CITY)
            return str(response.json()["status"])

        await eventually(seen_at_the_city, until=lambda status: status == "retired")
