"""Notify against the registry and training over the real Kafka, PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import email
import random
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request, Response

from contracts import topics
from contracts.envelope import Actor, Role
from contracts.registry import OrgLevel
from deploy.local.ports import free_port
from runtime import clock
from runtime.auth import Permission, issue_token
from runtime.demo import DemoLoader
from runtime.settings import DEV_WEBHOOK_SECRET
from services.notify import channels
from services.notify.app import NotifySettings
from services.notify.app import create_app as notify_app
from services.registry.demo import Unit
from services.selection import demo as selection_demo
from services.selection.app import SelectionSettings
from services.selection.app import create_app as selection_app
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests.infra import Infra
from tests.integration.test_registry_api import CITY, OTHER_CITY, PROVINCE, build_tree, nominate
from tests.integration.test_training import committed_offset, schedule, visible_in_training
from tests.support import SECRET, Launch, Running, auth, eventually, read_topic

LEADER = {"user_id": "wang.fang", "name": "Wang Fang", "email": "wang.fang@example.org", "language": "zh"}
LEADER_AUTH = auth("wang.fang", "cn.qs.bh.bh_ly", Role.VIEWER)
FAST = {"dispatch_interval_seconds": 0.1, "retry_base_seconds": 0.2, "retry_max_seconds": 1.0}


@dataclass
class Mailbox:
    """What an aiosmtpd server received; it answers 451 to the next `refuse` DATA commands."""

    refuse: int = 0
    refused: int = 0
    reject: bool = False
    """Answer 550 (a permanent refusal) to every message."""
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        if self.reject:
            return "550 5.1.1 Mailbox unavailable"
        if self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free loopback port."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


async def start_notify(launch: Launch, port: int, **overrides: Any) -> Running:
    # The tests' webhook receivers listen on loopback, which webhooks may not reach but where allowed.
    settings = {
        **FAST,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "webhook_allowed_networks": ["127.0.0.1"],
        **overrides,
    }
    return await launch(notify_app, NotifySettings, "notify", **settings)


async def set_up_unit(registry: Running) -> None:
    await build_tree(registry.client)
    response = await registry.client.put("/org-units/bh_ly/responsible-leader", json=LEADER, headers=CITY)
    assert response.status_code == 200, response.text


async def settled(notify: Running) -> None:
    """Wait until nothing is due any more (every due delivery sent, skipped or dead)."""
    await eventually(
        lambda: notify.service.pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'retrying') AND due_at <= now()"
        ),
        until=lambda due: due == 0,
    )


async def test_a_nomination_reaches_the_leader_by_email_and_inbox_once(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int], infra: Infra, namespace: str
) -> None:
    box, port = mailbox
    notify = await start_notify(launch, port)
    await set_up_unit(registry)
    await nominate(registry, full_name="Zhao Min")

    await eventually(lambda: asyncio.sleep(0, box.to(LEADER["email"])), until=lambda found: len(found) == 1)
    mail = box.to(LEADER["email"])[0]
    assert "Zhao Min" in str(mail["Subject"])
    assert "后备干部" in str(mail["Subject"])  # the leader's language is Chinese
    assert "Wang Fang" in mail.get_content()
    inbox = await eventually(lambda: _inbox(notify, LEADER_AUTH), until=lambda items: len(items) == 1)
    assert inbox[0]["subject"] == str(mail["Subject"])
    sent = await eventually(  # the outcome is recorded just after the server accepted the email
        lambda: notify.service.pool.fetchval(
            "SELECT notification_id FROM deliveries WHERE channel = 'email' AND status = 'sent'"
        )
    )
    assert mail["Message-ID"] == f"<{sent}@cadre-pool>"

    # The same nomination delivered a second time: nothing new is planned or sent.
    registry_topic = f"{namespace}.{topics.REGISTRY}"
    records = await read_topic(infra.kafka_bootstrap, registry_topic, count=7)
    nominated = next(r for r in records if b'"CadreNominated"' in r.value)
    planned = await notify.service.pool.fetchval("SELECT count(*) FROM deliveries")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(  # as a relay re-sends it: the same record, headers and all
            registry_topic,
            nominated.value,
            key=nominated.key,
            partition=nominated.partition,
            headers=list(nominated.headers),
        )
    finally:
        await producer.stop()
    await _consumed_everything(infra, registry_topic, messages=len(records) + 1)
    await settled(notify)
    assert len(box.to(LEADER["email"])) == 1
    assert await notify.service.pool.fetchval("SELECT count(*) FROM deliveries") == planned

    # The inbox is its owner's alone; reading is recorded once.
    assert await _inbox(notify, auth("someone.else", "cn.qs.bh.bh_ly", Role.VIEWER)) == []
    message_id = inbox[0]["notification_id"]
    stranger = await notify.client.post(f"/inbox/{message_id}/read", headers=auth("someone.else", "cn.qs"))
    assert stranger.status_code == 404
    assert stranger.headers["content-type"].startswith("application/problem+json")
    for _ in range(2):
        read = await notify.client.post(f"/inbox/{message_id}/read", headers=LEADER_AUTH)
        assert read.status_code == 200, read.text
    assert await _inbox(notify, LEADER_AUTH, unread_only=True) == []
    reads = await notify.service.pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'NotificationRead'")
    assert reads == 1

    # The delivery log is scoped to the org subtree.
    log = await notify.client.get("/deliveries", params={"status": "sent"}, headers=CITY)
    assert log.status_code == 200
    assert {row["channel"] for row in log.json()} == {"email", "inbox"}
    elsewhere = await notify.client.get("/deliveries", headers=OTHER_CITY)
    assert elsewhere.json() == []
    viewer = await notify.client.get("/deliveries", headers=LEADER_AUTH)
    assert viewer.status_code == 403


async def test_a_refusing_smtp_server_is_retried_until_it_accepts(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.refuse = 2
    notify = await start_notify(launch, port)
    await set_up_unit(registry)
    await nominate(registry)

    await eventually(lambda: asyncio.sleep(0, box.to(LEADER["email"])), until=lambda found: len(found) == 1)
    await settled(notify)
    assert box.refused == 2
    assert len(box.to(LEADER["email"])) == 1
    row = await one(
        notify,
        "SELECT notification_id, status, attempts FROM deliveries WHERE channel = 'email' AND rule = 'nomination'",
    )
    assert (row["status"], row["attempts"]) == ("sent", 3)
    history = await notify.service.store.read_stream(f"notification-{row['notification_id']}")
    assert [r.envelope.event_type for r in history] == ["NotificationFailed", "NotificationFailed", "NotificationSent"]
    assert all(not r.event.permanent for r in history[:2])  # type: ignore[attr-defined]
    assert "451" in history[0].event.error  # type: ignore[attr-defined]


async def test_a_permanent_refusal_is_a_dead_letter(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.reject = True
    notify = await start_notify(launch, port)
    await set_up_unit(registry)
    await nominate(registry)
    await eventually(
        lambda: notify.service.pool.fetchrow(
            "SELECT status, attempts FROM deliveries WHERE channel = 'email' AND rule = 'nomination'"
        ),
        until=lambda row: row is not None and row["status"] == "dead",
    )
    failures = await notify.service.pool.fetch("SELECT body FROM events WHERE event_type = 'NotificationFailed'")
    assert len(failures) == 1  # not retried
    assert orjson.loads(failures[0]["body"])["payload"]["permanent"] is True
    dead = await notify.client.get("/deliveries", params={"status": "dead"}, headers=CITY)
    assert [(row["attempts"], row["last_error"][:7]) for row in dead.json()] == [(1, "SMTP 55")]
    assert box.messages == []


async def test_attempts_run_out_into_a_dead_letter(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.refuse = 100
    notify = await start_notify(launch, port, max_attempts=3)
    await set_up_unit(registry)
    await nominate(registry)
    row = await eventually(
        lambda: notify.service.pool.fetchrow(
            "SELECT status, attempts FROM deliveries WHERE channel = 'email' AND rule = 'nomination'"
        ),
        until=lambda row: row is not None and row["status"] == "dead",
    )
    assert row is not None
    assert row["attempts"] == 3
    assert box.refused == 3


async def test_events_piled_up_while_notify_was_down_go_out_once(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    notify = await start_notify(launch, port)
    await set_up_unit(registry)
    await eventually(
        lambda: notify.service.pool.fetchval("SELECT leader_user FROM units WHERE code = 'bh_ly'"),
        until=lambda user: user == LEADER["user_id"],
    )
    await notify.stop()

    names = [f"Cadre {n}" for n in range(5)]
    for name in names:
        await nominate(registry, full_name=name)

    notify = await start_notify(launch, port)
    await eventually(lambda: asyncio.sleep(0, box.to(LEADER["email"])), until=lambda found: len(found) == len(names))
    await settled(notify)
    await notify.stop()  # a restart after the sends changes nothing either
    notify = await start_notify(launch, port)
    await settled(notify)
    mails = box.to(LEADER["email"])
    assert sorted(str(m["Subject"]).split("\uff1a")[-1] for m in mails) == names
    assert len({m["Message-ID"] for m in mails}) == len(names)


@pytest.mark.dates
async def test_a_scheduled_reminder_fires_once_at_its_time_across_a_restart(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    training = await launch(training_app, TrainingSettings, "training")
    starts_in_days = 2
    start = clock.start_of(clock.today() + timedelta(days=starts_in_days))  # the programme's first day begins
    due = clock.now() + timedelta(seconds=20)
    lead = {"enrolment_reminder_lead": start - due}
    notify = await start_notify(launch, port, **lead)
    await set_up_unit(registry)
    cadre_id = await nominate(registry, email="li.wei@example.org", user_id="li.wei", language="en")
    await visible_in_training(training, cadre_id)
    program_id = await schedule(training, starts_in=starts_in_days)
    enrolled = await training.client.post(
        f"/programs/{program_id}/enrolments", json={"cadre_id": cadre_id}, headers=CITY
    )
    assert enrolled.status_code == 201, enrolled.text

    reminder_sql = "SELECT status, due_at FROM deliveries WHERE rule = 'enrolment_reminder' AND channel = 'email'"
    planned = await eventually(lambda: notify.service.pool.fetchrow(reminder_sql), until=lambda row: row is not None)
    assert planned is not None
    assert planned["status"] == "pending"
    assert abs((planned["due_at"] - due).total_seconds()) < 1
    await eventually(lambda: asyncio.sleep(0, box.to("li.wei@")), until=lambda found: len(found) == 1)
    assert "enrolled" in box.to("li.wei@")[0].get_content()  # the enrolment itself, in English, at once

    await notify.stop()
    # Its time comes while notify is down: the platform's clock is moved on to it rather than waited for
    # (the 20 s above leave room for a slow machine's set-up), then runs a second past it, as the real one would.
    clock.use(clock.current().at(max(clock.now(), due)))
    await asyncio.sleep(1)
    assert len(box.to("li.wei@")) == 1  # nothing fires while notify is down

    notify = await start_notify(launch, port, **lead)
    await eventually(lambda: asyncio.sleep(0, box.to("li.wei@")), until=lambda found: len(found) == 2)
    reminder = box.to("li.wei@")[1]
    assert "starts on" in str(reminder["Subject"])
    # The outcome is recorded just after the server accepted the email.
    await eventually(lambda: one(notify, reminder_sql), until=lambda row: row["status"] == "sent")
    await notify.stop()
    notify = await start_notify(launch, port, **lead)
    await settled(notify)
    assert len(box.to("li.wei@")) == 2


async def test_webhooks_are_signed_and_preferences_are_validated(
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int]
) -> None:
    _, port = mailbox
    received: list[tuple[bytes, dict[str, str]]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=204)

    async with _serve(receiver) as url:
        notify = await start_notify(launch, port)
        bad = await notify.client.put("/preferences", json={"webhook_url": "not a url"}, headers=LEADER_AUTH)
        assert bad.status_code == 422
        # Loopback is open to this test's receiver at 127.0.0.1 only (where localhost may resolve): 127.0.0.2 is closed.
        for inside in ("http://10.0.0.7/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:8000/",
                       "http://127.0.0.2:8000/hook", "http://no-such-host.invalid/hook"):  # fmt: skip
            refused = await notify.client.put("/preferences", json={"webhook_url": inside}, headers=LEADER_AUTH)
            assert refused.status_code == 422, (inside, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
        assert await notify.service.pool.fetchval("SELECT count(*) FROM events") == 0
        chosen = {"email": False, "inbox": True, "webhook_url": f"{url}/hook", "language": "en"}
        saved = await notify.client.put("/preferences", json=chosen, headers=LEADER_AUTH)
        assert saved.status_code == 200, saved.text
        stale = await notify.client.put("/preferences", json=chosen, headers={**LEADER_AUTH, "If-Match": '"0"'})
        assert stale.status_code == 409
        assert (await notify.client.get("/preferences", headers=LEADER_AUTH)).json()["language"] == "en"

        await set_up_unit(registry)
        await nominate(registry, full_name="Sun Li")
        await eventually(lambda: asyncio.sleep(0, received), until=lambda hits: len(hits) == 1)
        await settled(notify)

    body, headers = received[0]
    assert channels.verify(DEV_WEBHOOK_SECRET, headers["x-cadre-timestamp"], body, headers["x-cadre-signature"])
    assert not channels.verify(
        DEV_WEBHOOK_SECRET,
        headers["x-cadre-timestamp"],
        body.replace(b"Sun Li", b"Sun Lu"),
        headers["x-cadre-signature"],
    )
    assert b"Sun Li" in body
    assert b"nominated" in body  # English, as the leader chose
    email_row = await one(
        notify, "SELECT status, last_error FROM deliveries WHERE channel = 'email' AND rule = 'nomination'"
    )
    assert (email_row["status"], email_row["last_error"]) == ("skipped", "email turned off by the recipient")
    assert headers["idempotency-key"] == str(
        await notify.service.pool.fetchval(
            "SELECT notification_id FROM deliveries WHERE channel = 'webhook' AND rule = 'nomination'"
        )
    )


async def one(notify: Running, sql: str) -> Any:
    row = await notify.service.pool.fetchrow(sql)
    assert row is not None, sql
    return row


@pytest.mark.dates
async def test_the_organizer_hears_of_a_procedures_notice_ending_and_its_objections_once(  # noqa: PLR0915 - one story
    registry: Running, launch: Launch, mailbox: tuple[Mailbox, int], infra: Infra, namespace: str
) -> None:
    box, port = mailbox
    notify = await start_notify(launch, port)
    selection = await launch(selection_app, SelectionSettings, "selection")
    await build_tree(registry.client)
    # The city's organizer is the nearest to the county's procedures; the province's and a viewer are not told.
    people = [("li.hua", "Li Hua", "bh", "organizer"), ("zhang.ming", "Zhang Ming", "qs", "organizer")]
    people.append(("liu.yang", "Liu Yang", "bh_ly", "viewer"))
    for user, name, unit, role in people:
        body = {"subject": f"sub-{user}", "name": name, "org_code": unit, "role": role}
        granted = await registry.client.put(f"/access/{user}", json=body, headers=PROVINCE)
        assert granted.status_code == 200, granted.text
    organizer = auth("li.hua", "cn.qs.bh")

    # Two procedures of the county, entered late as they happened: one whose notice ended with an objection
    # unanswered for 18 days, one on notice now with an objection received today.
    token = issue_token(
        SECRET,
        Actor(user="bh-organizer", org_path="cn.qs.bh", role=Role.ORGANIZER),
        permissions=[Permission.LATE_ENTRY],
    )
    loader = DemoLoader(selection.client, token, hour=10)
    county = Unit("bh_ly", "Liuyang County", OrgLevel.COUNTY, "bh", "cn.qs.bh.bh_ly", 5, "wang.fang")
    blocks = {
        scenario: selection_demo.procedure_block(
            random.Random(index), index, county, scenario=scenario, posts=[], candidates=[], today=clock.today()
        )
        for index, scenario in enumerate(("objection_overdue", "notice_objection"))
    }
    for block in blocks.values():
        for command in block.commands:
            await loader.send(command.method, command.url, command.body, command.day, until_known=True)
    ended, running = (block.commands[0].body for block in blocks.values())
    assert ended is not None
    assert running is not None

    # At once: the ended notice, and both objections; the first objection is overdue too.
    inbox = await eventually(lambda: _inbox(notify, organizer), until=lambda items: len(items) == 4)
    subjects = sorted(item["subject"] for item in inbox)
    assert sum("公示期已于" in s and ended["candidate"]["full_name"] in s for s in subjects) == 1
    assert sum("收到异议" in s for s in subjects) == 2
    assert sum("超期未办结" in s and ended["candidate"]["full_name"] in s for s in subjects) == 1
    assert await _inbox(notify, auth("zhang.ming", "cn.qs")) == []
    assert await _inbox(notify, auth("liu.yang", "cn.qs.bh.bh_ly", Role.VIEWER)) == []
    assert box.messages == []  # an organizer's grant carries no address: the inbox tells them
    pool = notify.service.pool
    pending = await pool.fetch("SELECT rule, due_at FROM deliveries WHERE status = 'pending' AND channel = 'inbox'")
    assert sorted(r["rule"] for r in pending) == ["procedure_notice_ended", "procedure_objection_overdue"]
    assert all(r["due_at"] > clock.now() for r in pending)

    # The objection concluded and the procedure stopped: what was still to come is cancelled.
    procedure = running["procedure_id"]
    objection = next(c.body for c in blocks["notice_objection"].commands if c.url.endswith("/objections"))
    assert objection is not None
    headers = CITY
    found = {"substantiated": False, "finding": "The records were checked: unfounded"}
    concluded = await selection.client.post(
        f"/procedures/{procedure}/objections/{objection['objection_id']}/conclusion", json=found, headers=headers
    )
    assert concluded.status_code == 200, concluded.text
    stopped = await selection.client.post(
        f"/procedures/{procedure}/stop", json={"reason": "withdrawn"}, headers=headers
    )
    assert stopped.status_code == 200, stopped.text
    await eventually(
        lambda: pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'cancelled' AND channel = 'inbox'"),
        until=lambda cancelled: cancelled == len(pending),
    )

    # The objection delivered a second time: nothing new is planned or sent.
    selection_topic = f"{namespace}.{topics.SELECTION}"
    count = await selection.service.pool.fetchval("SELECT count(*) FROM events")
    records = await read_topic(infra.kafka_bootstrap, selection_topic, count=count)
    raised = next(r for r in records if b'"ObjectionRaised"' in r.value)
    planned = await pool.fetchval("SELECT count(*) FROM deliveries")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            selection_topic, raised.value, key=raised.key, partition=raised.partition, headers=list(raised.headers)
        )
    finally:
        await producer.stop()
    await _consumed_everything(infra, selection_topic, messages=len(records) + 1)
    await settled(notify)
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == planned
    assert len(await _inbox(notify, organizer)) == 4


async def _inbox(notify: Running, headers: Mapping[str, str], *, unread_only: bool = False) -> list[dict[str, Any]]:
    response = await notify.client.get("/inbox", params={"unread_only": unread_only}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def _consumed_everything(infra: Infra, topic: str, *, messages: int, partitions: int = 3) -> None:
    """Wait until the planner has committed offsets past all `messages` of `topic`."""

    async def committed() -> int:
        offsets = [await committed_offset(infra, "notify.planner", topic, p) for p in range(partitions)]
        return sum(max(0, offset) for offset in offsets)

    await eventually(committed, until=lambda total: total >= messages)


@contextlib.asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
