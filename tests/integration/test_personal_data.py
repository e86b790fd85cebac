"""Personal data sealed per cadre, erased by destroying the key, granted to another deployment by choice.

Against the real Kafka and PostgreSQL: the plaintext never reaches the event store, the topic,
the audit archive or a signed bundle; after erasure nothing anywhere opens it again, while the
hash chain, the topic comparison and the signed bundle still verify.
"""

from __future__ import annotations

import base64
import io
import os
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from contracts import topics
from contracts.envelope import Envelope, Role, uuid7
from contracts.personal import Sealed
from runtime import bundle as signed_bundle
from runtime import checkpoint, clock, verify
from runtime.context import CommandContext
from runtime.keystore import GrantKey, KeyEraser, seal_grant
from runtime.settings import DEV_CHECKPOINT_SEED
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.registry import rules
from services.registry.app import RegistrySettings, create_app
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nominate
from tests.support import DatabaseFactory, Launch, Running, auth, events_in, eventually, read_topic, running

ID_NUMBER = "11010519900307123X"
SECRET_WORDS = ("11010519900307123X", "Chaoyang District, Beijing", "Li Daming", "Peking Union Hospital")
AUDITOR = auth("auditor.zhou", "cn.qs.bh", Role.AUDITOR)
VIEWER = auth("viewer.qian", "cn.qs.bh", Role.VIEWER)


def personal_file(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id_number": ID_NUMBER,
        "ethnicity": "汉族",
        "native_place": "Hebei Baoding",
        "health": "Treated at Peking Union Hospital in 2019; healthy",
        "address": "8 Jianguo Road, Chaoyang District, Beijing",
        "family": [
            {"relation": "father", "name": "Li Daming", "birth": "196003", "political_status": "CPC member"},
        ],
        "photo": base64.b64encode(b"\xff\xd8\xff\xe0 a tiny jpeg").decode(),
    }
    body.update(overrides)
    return body


def readable(text: str) -> list[str]:
    """The secret words that appear in `text` (plain or base64 of the plaintext would both count)."""
    return [word for word in SECRET_WORDS if word in text]


async def all_text(dsn: str, table: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT * FROM {table}")
    finally:
        await conn.close()
    return "\n".join(str(dict(row)) for row in rows)


async def test_personal_data_is_sealed_everywhere_and_erasure_leaves_a_verifiable_record(  # noqa: PLR0915 - one story
    launch: Launch, registry: Running, infra: Infra, namespace: str, tmp_path: Path
) -> None:
    audit = await launch(audit_app, AuditSettings, "audit")
    await build_tree(registry.client)
    cadre_id = await nominate(registry)

    recorded = await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    assert recorded.status_code == 200, recorded.text
    shown = await registry.client.get(f"/cadres/{cadre_id}/personal-data", headers=CITY)
    assert shown.status_code == 200, shown.text
    assert shown.json()["id_number"] == ID_NUMBER
    assert shown.json()["family"][0]["name"] == "Li Daming"
    assert (await registry.client.get(f"/cadres/{cadre_id}/personal-data", headers=VIEWER)).status_code == 403
    view = await registry.client.get(f"/cadres/{cadre_id}", headers=CITY)
    assert view.json()["personal_data"] == "recorded"

    # Only ciphertext left the command: store, projection, topic, archive.
    dsn = infra.database_dsn(f"{namespace}_registry")
    keys_dsn = infra.database_dsn(f"{namespace}_registry_keys")
    for table in ("events", "cadres"):
        assert readable(await all_text(dsn, table)) == [], table
    registry_events = int(await registry.service.pool.fetchval("SELECT count(*) FROM events"))
    topic = f"{namespace}.{topics.REGISTRY}"
    on_topic = await read_topic(infra.kafka_bootstrap, topic, count=registry_events)
    assert all(readable(record.value.decode()) == [] for record in on_topic)
    sealed_on_topic = next(
        Sealed.model_validate(envelope.payload["sealed"])
        for envelope in (Envelope.from_bytes(r.value) for r in on_topic)
        if envelope.event_type == "PersonalDataRecorded"
    )
    # The key is not in the service's database at all, but in a database of its own.
    assert "cadre_keys" not in await all_text(dsn, "pg_catalog.pg_tables WHERE schemaname = 'public'")
    assert await registry.service.keystore.open(UUID(cadre_id), sealed_on_topic) is not None

    refused = await registry.client.post(f"/cadres/{cadre_id}/erasure", json={"reason": ""}, headers=CITY)
    assert refused.status_code == 422
    erased = await registry.client.post(
        f"/cadres/{cadre_id}/erasure", json={"reason": "Request of 3 March under PIPL art. 47"}, headers=CITY
    )
    assert erased.status_code == 200, erased.text
    assert [e["event_type"] for e in erased.json()["events"]] == ["PersonalDataErased"]

    # Nothing opens the personal data any more, anywhere.
    gone = await registry.client.get(f"/cadres/{cadre_id}/personal-data", headers=CITY)
    assert gone.status_code == 410, gone.text
    assert (await registry.client.get(f"/cadres/{cadre_id}", headers=CITY)).json()["personal_data"] == "erased"
    assert await registry.service.keystore.open(UUID(cadre_id), sealed_on_topic) is None
    assert "cadre_keys" in await all_text(keys_dsn, "pg_catalog.pg_tables WHERE schemaname = 'public'")
    assert await all_text(keys_dsn, "cadre_keys") == ""
    again = await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    assert again.status_code == 410, again.text
    # The rest of the cadre's record stands.
    renamed = await registry.client.patch(f"/cadres/{cadre_id}", json={"full_name": "Li Weiwei"}, headers=CITY)
    assert renamed.status_code == 200, renamed.text

    # The record still verifies: chain, versions, the topic's copy, the signed checkpoint.
    signer = checkpoint.Checkpointer(
        registry.service.pool, registry.service.store, checkpoint.private_key(DEV_CHECKPOINT_SEED)
    )
    assert await signer.checkpoint() is not None
    await registry.stop()
    report = await verify.verify_dsn(
        dsn,
        service="registry",
        public_keys=[checkpoint.private_key(DEV_CHECKPOINT_SEED).public_key()],
        bootstrap=infra.kafka_bootstrap,
        topic=topic,
    )
    assert report.ok, report.findings
    assert report.checkpoints_verified == 1

    # The audit archive and its signed bundle hold the erasure and only ciphertext; the bundle verifies.
    async def archived() -> int:
        return int(await audit.service.pool.fetchval("SELECT count(*) FROM archive"))

    total = await events_in(dsn)
    await eventually(archived, until=lambda n: n >= total)
    archive_text = await all_text(infra.database_dsn(f"{namespace}_audit"), "archive")
    assert readable(archive_text) == []
    assert "PersonalDataErased" in archive_text
    bundle = await audit.client.get(
        "/export",
        params={
            "under": "bh",
            "since": (clock.now() - timedelta(hours=1)).isoformat(),
            "until": (clock.now() + timedelta(seconds=1)).isoformat(),
        },
        headers=AUDITOR,
    )
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        lines = archive.read("events.jsonl").decode()
    assert readable(lines) == []
    assert "PersonalDataRecorded" in lines
    assert "PersonalDataErased" in lines
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle.content)
    assert signed_bundle.verify(str(path), checkpoint.public_key_b64(DEV_CHECKPOINT_SEED)) == []


async def test_another_deployment_reads_only_what_it_was_granted_and_forgets_it_on_erasure(
    launch: Launch, database: DatabaseFactory, infra: Infra, namespace: str
) -> None:
    # The county's deployment (A) publishes as the province (B) would see it through MirrorMaker:
    # `<county>.registry.events` in the province's namespace.
    county_settings = RegistrySettings(
        database_url=await database("county_registry"),
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_namespace=f"{namespace}.county.",
        deployment_id="county",
    )
    province = await launch(
        create_app,
        RegistrySettings,
        "registry",
        deployment_id="province",
        personal_data_follow_topics=[f"county.{topics.REGISTRY}"],
    )
    assert any(isinstance(s.projection, KeyEraser) for s in province.service.subscribers)
    async with running(create_app(county_settings)) as county:
        await build_tree(county.client)
        granted, withheld = await nominate(county), await nominate(county)
        for cadre_id in (granted, withheld):
            response = await county.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
            assert response.status_code == 200, response.text

        recipient = (await province.client.get("/personal-data/grant-key", headers=CITY)).json()
        assert recipient["deployment"] == "province"
        grant = await county.client.post(f"/cadres/{granted}/personal-data/grants", json=recipient, headers=CITY)
        assert grant.status_code == 201, grant.text
        assert readable(grant.text) == []
        accepted = await province.client.post("/personal-data/keys", json=grant.json(), headers=CITY)
        assert accepted.status_code == 204, accepted.text
        # A grant is for one deployment only: the county cannot import what it sealed for the province.
        misdirected = await county.client.post("/personal-data/keys", json=grant.json(), headers=CITY)
        assert misdirected.status_code == 400

        # What the province receives: the county's events, sealed. It opens the granted cadre only.
        county_topic = f"{namespace}.county.{topics.REGISTRY}"
        count = int(await county.service.pool.fetchval("SELECT count(*) FROM events"))
        received = [
            Envelope.from_bytes(r.value) for r in await read_topic(infra.kafka_bootstrap, county_topic, count=count)
        ]
        sealed = {
            str(e.cadre_id): Sealed.model_validate(e.payload["sealed"])
            for e in received
            if e.event_type == "PersonalDataRecorded"
        }
        assert "PersonalDataKeyGranted" in {e.event_type for e in received}
        opened = await province.service.keystore.open(UUID(granted), sealed[granted])
        assert opened is not None
        assert ID_NUMBER in opened.decode()
        assert await province.service.keystore.open(UUID(withheld), sealed[withheld]) is None

        # The county erases: its event reaches the province, which destroys its copy of the key.
        erased = await county.client.post(f"/cadres/{granted}/erasure", json={"reason": "request"}, headers=CITY)
        assert erased.status_code == 200, erased.text

        async def province_opens() -> bool:
            return await province.service.keystore.open(UUID(granted), sealed[granted]) is not None

        await eventually(province_opens, until=lambda opens: not opens)
        stale = await province.client.post("/personal-data/keys", json=grant.json(), headers=CITY)
        assert stale.status_code == 410, stale.text
        assert await county.service.keystore.open(UUID(granted), sealed[granted]) is None
        # Erasing twice is refused; granting an erased cadre is refused.
        twice = await county.client.post(f"/cadres/{granted}/erasure", json={"reason": "again"}, headers=CITY)
        assert twice.status_code == 409
        late = await county.client.post(f"/cadres/{granted}/personal-data/grants", json=recipient, headers=CITY)
        assert late.status_code == 410


async def test_a_key_left_behind_by_a_stop_between_event_and_destruction_is_destroyed_at_start(
    launch: Launch, registry: Running
) -> None:
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    response = await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    assert response.status_code == 200, response.text
    keystore = registry.service.keystore
    # As if the process stopped after the event committed and before the key was destroyed:
    # append the erasure through the store only.
    history = await registry.service.store.read_stream(f"cadre-{cadre_id}")

    cadre = rules.Cadre.replay(
        [r.event for r in history], [clock.date_of(r.envelope.occurred_at) for r in history], "cn.qs.bh.bh_ly"
    )
    assert cadre is not None
    ctx = CommandContext(actor=CITY.actor, correlation_id=UUID(cadre_id))
    await registry.service.store.append(
        f"cadre-{cadre_id}",
        cadre.version,
        rules.erase_personal_data(cadre, "request"),
        ctx=ctx,
        org_path=cadre.org_path,
        cadre_id=cadre.cadre_id,
    )
    assert await keystore.key(cadre.cadre_id, cadre.personal_key_id) is not None  # type: ignore[arg-type]
    await registry.stop()

    restarted = await launch(create_app, RegistrySettings, "registry")

    async def key_held() -> bool:
        return await restarted.service.keystore.key(cadre.cadre_id, cadre.personal_key_id) is not None  # type: ignore[arg-type]

    await eventually(key_held, until=lambda held: not held)
    assert (await restarted.client.get(f"/cadres/{cadre_id}/personal-data", headers=CITY)).status_code == 410


async def test_no_grant_replaces_a_key_and_only_the_cadres_subtree_accepts_one(registry: Running) -> None:
    """Issue 22, hole 1: a forged grant of an organizer elsewhere (or of the cadre's own) changes no key."""
    await build_tree(registry.client)
    cadre_id = await nominate(registry)
    recorded = await registry.client.put(f"/cadres/{cadre_id}/personal-data", json=personal_file(), headers=CITY)
    assert recorded.status_code == 200, recorded.text
    keystore = registry.service.keystore
    own_key_id, own_key = await keystore.sealing_key(UUID(cadre_id))
    recipient = GrantKey.model_validate((await registry.client.get("/personal-data/grant-key", headers=CITY)).json())
    chosen = os.urandom(32)  # the attacker's key: anyone can seal one to the public grant key

    def forged(org_path: str, key_id: UUID, from_deployment: str = "elsewhere") -> dict[str, Any]:
        grant = seal_grant(
            UUID(cadre_id), org_path, key_id, chosen, from_deployment=from_deployment, recipient=recipient
        )
        return grant.model_dump(mode="json")

    async def events() -> int:
        return int(await registry.service.pool.fetchval("SELECT count(*) FROM events"))

    before = await events()
    attempts = [
        # another subtree, claiming the cadre sits there or where it really does: hidden (404)
        (OTHER_CITY, forged("cn.qs.hx", uuid7()), 404),
        (OTHER_CITY, forged("cn.qs.bh.bh_ly", uuid7()), 404),
        (OTHER_CITY, forged("cn.qs.hx", own_key_id), 404),
        # the cadre's own organizer cannot replace it either: under a new key id or the same one
        (CITY, forged("cn.qs.bh.bh_ly", uuid7()), 409),
        (CITY, forged("cn.qs.bh.bh_ly", own_key_id), 409),
        # nor pass a key off as this deployment's own
        (CITY, forged("cn.qs.bh.bh_ly", uuid7(), from_deployment=keystore.deployment), 400),
        # viewers and auditors never
        (VIEWER, forged("cn.qs.bh.bh_ly", uuid7()), 403),
        (AUDITOR, forged("cn.qs.bh.bh_ly", uuid7()), 403),
    ]
    for who, body, expected in attempts:
        response = await registry.client.post("/personal-data/keys", json=body, headers=who)
        assert response.status_code == expected, (who, body["org_path"], response.text)

    # Nothing changed: the same single key, no event, the file still opens, later data too.
    rows = await keystore._pool.fetch("SELECT key_id, origin FROM cadre_keys WHERE cadre_id = $1", UUID(cadre_id))
    assert [(r["key_id"], r["origin"]) for r in rows] == [(own_key_id, keystore.deployment)]
    assert await keystore.key(UUID(cadre_id), own_key_id) == own_key
    assert await events() == before
    shown = await registry.client.get(f"/cadres/{cadre_id}/personal-data", headers=CITY)
    assert shown.status_code == 200, shown.text
    assert shown.json()["id_number"] == ID_NUMBER
    again = await registry.client.put(
        f"/cadres/{cadre_id}/personal-data", json=personal_file(health="healthy"), headers=CITY
    )
    assert again.status_code == 200, again.text
    assert (await keystore.sealing_key(UUID(cadre_id)))[0] == own_key_id
    assert (await registry.client.get(f"/cadres/{cadre_id}/personal-data", headers=CITY)).json()["health"] == "healthy"


async def test_a_granted_key_of_a_cadre_held_elsewhere_is_accepted_once_in_its_subtree_and_recorded(
    registry: Running,
) -> None:
    """A cadre this deployment does not know: the grant's org path decides who may accept it."""
    await build_tree(registry.client)
    cadre_id = uuid7()
    recipient = GrantKey.model_validate((await registry.client.get("/personal-data/grant-key", headers=CITY)).json())
    key_id, key = uuid7(), os.urandom(32)
    grant = seal_grant(cadre_id, "cn.qs.bh.bh_ly", key_id, key, from_deployment="county", recipient=recipient)
    body = grant.model_dump(mode="json")
    outside = await registry.client.post("/personal-data/keys", json=body, headers=OTHER_CITY)
    assert outside.status_code == 404, outside.text
    for _ in range(2):  # the same grant twice: one key, one record
        accepted = await registry.client.post("/personal-data/keys", json=body, headers=CITY)
        assert accepted.status_code == 204, accepted.text
    assert await registry.service.keystore.key(cadre_id, key_id) == key
    history = await registry.service.store.read_stream(f"personal-keys-{cadre_id}")
    assert [r.event.event_type for r in history] == ["PersonalDataKeyAccepted"]
    assert history[0].envelope.actor.user == CITY.actor.user
    # A second key from the same deployment would stand beside the first: refused, the first kept.
    rotated = seal_grant(
        cadre_id, "cn.qs.bh.bh_ly", uuid7(), os.urandom(32), from_deployment="county", recipient=recipient
    )
    refused = await registry.client.post("/personal-data/keys", json=rotated.model_dump(mode="json"), headers=CITY)
    assert refused.status_code == 409, refused.text
    assert await registry.service.keystore.key(cadre_id, key_id) == key
