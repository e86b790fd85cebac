"""The audit service against the registry and training over the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import Role
from runtime import bundle as signed_bundle
from runtime import checkpoint, clock
from runtime.settings import DEV_CHECKPOINT_SEED
from services.audit.app import AuditSettings
from services.audit.app import create_app as audit_app
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests.integration.test_registry_api import CITY, build_tree, nominate, nomination
from tests.integration.test_training import posting
from tests.support import Launch, Running, auth, eventually, in_pool_at

pytestmark = pytest.mark.dates

AUDITOR = auth("auditor.zhou", "cn.qs.bh", Role.AUDITOR)
OUTSIDER = auth("auditor.wu", "cn.qs.hx", Role.AUDITOR)
VIEWER = auth("viewer.qian", "cn.qs.bh", Role.VIEWER)
PUBLIC_KEY = checkpoint.public_key_b64(DEV_CHECKPOINT_SEED)


@pytest.fixture
async def stack(launch: Launch, registry: Running) -> tuple[Running, Running, Running]:
    training = await launch(training_app, TrainingSettings, "training")
    audit = await launch(audit_app, AuditSettings, "audit")
    await build_tree(registry.client)
    return registry, training, audit


async def archived_everything(audit: Running, *services: Running) -> None:
    """Wait until the audit archive holds every event the given services recorded."""

    async def missing() -> int:
        total = 0
        for service in services:
            total += int(await service.service.pool.fetchval("SELECT count(*) FROM events"))
        return total - int(await audit.service.pool.fetchval("SELECT count(*) FROM archive"))

    await eventually(missing, until=lambda gap: gap == 0)


async def registry_view(registry: Running) -> dict[str, tuple[str, str]]:
    response = await registry.client.get("/cadres", params={"under": "bh", "limit": 500}, headers=CITY)
    assert response.status_code == 200
    return {c["cadre_id"]: (c["full_name"], c["org_code"]) for c in response.json()["items"]}


async def test_the_pool_at_a_past_moment_is_what_the_query_api_showed_then(
    stack: tuple[Running, Running, Running],
) -> None:
    registry, training, audit = stack
    ids = [await nominate(registry, full_name=name) for name in ("Li Wei", "Zhang Min", "Chen Jie")]
    await in_pool_at(training, ids[0])
    posted = await training.client.post(f"/cadres/{ids[0]}/postings", json=posting(), headers=CITY)
    assert posted.status_code == 201, posted.text

    shown = await registry_view(registry)  # what the query API showed at T
    moment = clock.now()
    await asyncio.sleep(0.05)

    # Keep writing after T: two join, one leaves, one is renamed, one more posting.
    later = [await nominate(registry, full_name=name) for name in ("Wang Fang", "Zhao Lei")]
    retired = await registry.client.post(
        f"/cadres/{ids[1]}/retirement",
        json={"reason": "withdrew", "effective_on": clock.today().isoformat()},
        headers=CITY,
    )
    assert retired.status_code == 200, retired.text
    renamed = await registry.client.patch(f"/cadres/{ids[2]}", json={"full_name": "Chen Jiejie"}, headers=CITY)
    assert renamed.status_code == 200, renamed.text
    await archived_everything(audit, registry, training)

    then = await audit.client.get("/pool", params={"under": "bh", "at": moment.isoformat()}, headers=AUDITOR)
    assert then.status_code == 200, then.text
    pool = then.json()
    assert {p["cadre_id"]: (p["full_name"], p["org_code"]) for p in pool} == shown
    by_id = {p["cadre_id"]: p for p in pool}
    assert by_id[ids[0]]["posting"]["host_org_code"] == "bh_ly"
    assert by_id[ids[1]]["posting"] is None

    now = await audit.client.get("/pool", params={"under": "bh"}, headers=AUDITOR)
    assert {p["cadre_id"] for p in now.json()} == set(await registry_view(registry))

    diff = await audit.client.get(
        "/pool/changes",
        params={"under": "bh", "since": moment.isoformat(), "until": clock.now().isoformat()},
        headers=AUDITOR,
    )
    assert diff.status_code == 200, diff.text
    changes = diff.json()
    assert {p["cadre_id"] for p in changes["joined"]} == set(later)
    assert [p["cadre_id"] for p in changes["left"]] == [ids[1]]
    assert changes["changed"] == [
        {"cadre_id": ids[2], "full_name": "Chen Jiejie", "fields": {"full_name": ["Chen Jie", "Chen Jiejie"]}}
    ]

    # Every question was recorded as an event, with who asked.
    log = await audit.client.get("/queries", headers=AUDITOR)
    assert [(q["query"], q["actor_user"]) for q in log.json()] == [
        ("pool-changes", "auditor.zhou"),
        ("pool", "auditor.zhou"),
        ("pool", "auditor.zhou"),
    ]
    recorded = await audit.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'AuditQueryMade'")
    assert recorded == 3


async def test_a_cadres_timeline_merges_every_service_in_order(stack: tuple[Running, Running, Running]) -> None:
    registry, training, audit = stack
    cadre_id = await nominate(registry, full_name="Li Wei")
    mentor = {"user_id": "m.sun", "name": "Sun Mentor", "email": "m.sun@example.org"}
    assigned = await registry.client.put(f"/cadres/{cadre_id}/mentor", json=mentor, headers=CITY)
    assert assigned.status_code == 200, assigned.text
    await in_pool_at(training, cadre_id)
    posted = await training.client.post(f"/cadres/{cadre_id}/postings", json=posting(), headers=CITY)
    assert posted.status_code == 201, posted.text
    await archived_everything(audit, registry, training)

    response = await audit.client.get(f"/cadres/{cadre_id}/timeline", headers=AUDITOR)
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [(e["event_type"], e["service"]) for e in entries] == [
        ("CadreNominated", "registry"),
        ("MentorAssigned", "registry"),
        ("PostingAssigned", "training"),
    ]
    assert [e["recorded_at"] for e in entries] == sorted(e["recorded_at"] for e in entries)
    assert entries[0]["actor"] == "bh-organizer"
    assert entries[0]["org_level"] == "county"
    assert all(e["occurred_at"] and e["hash"] for e in entries)

    assert (await audit.client.get(f"/cadres/{cadre_id}/timeline", headers=OUTSIDER)).status_code == 404
    assert (await audit.client.get(f"/cadres/{cadre_id}/timeline", headers=VIEWER)).status_code == 403
    # Auditors read; nothing here writes, and the other services refuse their changes.
    refused = await registry.client.post("/cadres", json=nomination(), headers=AUDITOR)
    assert refused.status_code == 403


async def test_an_export_verifies_offline_and_an_edited_line_fails(
    stack: tuple[Running, Running, Running], tmp_path: Path
) -> None:
    registry, training, audit = stack
    for name in ("Li Wei", "Zhang Min"):
        await nominate(registry, full_name=name)
    await archived_everything(audit, registry, training)
    since = (clock.now() - timedelta(hours=1)).isoformat()
    until = (clock.now() + timedelta(seconds=1)).isoformat()
    response = await audit.client.get(
        "/export", params={"under": "bh", "since": since, "until": until}, headers=AUDITOR
    )
    assert response.status_code == 200, response.text
    bundle = tmp_path / "export.zip"
    bundle.write_bytes(response.content)

    verified = run_verifier(bundle)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with zipfile.ZipFile(bundle) as archive:
        lines = archive.read("events.jsonl").decode().splitlines()
        others = {"manifest.json": archive.read("manifest.json")}
    assert len(lines) == 4  # the city and county units and two nominations: bh's subtree only
    assert all('"org_path":"cn.qs.bh' in line for line in lines)

    edited = tmp_path / "edited.zip"
    target = next(n for n, line in enumerate(lines) if "Zhang Min" in line)
    tampered = [line.replace("Zhang Min", "Zhang Ming") if n == target else line for n, line in enumerate(lines)]
    assert tampered != lines
    write_bundle(edited, "\n".join(tampered) + "\n", others)
    failed = run_verifier(edited)
    assert failed.returncode == 1
    assert f"line {target + 1}: event" in failed.stdout
    assert "SHA-256 differs" in failed.stdout

    wrong_key = checkpoint.public_key_b64("A" * 43 + "=")
    signer, expected = (checkpoint.key_id(checkpoint.load_public_key(k)) for k in (PUBLIC_KEY, wrong_key))
    assert signed_bundle.verify(str(bundle), wrong_key) == [
        f"the manifest is signed with key {signer!r}, not with the expected key {expected}"
    ]


def run_verifier(bundle: Path) -> subprocess.CompletedProcess[str]:
    script = Path(signed_bundle.__file__)
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script), str(bundle), "--public-key", PUBLIC_KEY],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip


def write_bundle(path: Path, events: str, others: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("events.jsonl", events)
        for name, content in others.items():
            archive.writestr(name, content)
    path.write_bytes(buffer.getvalue())
