"""What a fault run must not have done, checked against the databases and the topics once all is quiet.

- lost: a command acknowledged with 2xx whose event is missing from its service's store,
  its topic, or a projection that should hold it (audit's archive holds every event; the
  pools of training, assessment and notify every nominated cadre; assessment's hours every
  hour of self-study);
- duplicated: an effect applied twice (hours added up twice, a delivery planned twice for
  the same event and recipient, a notification recorded as sent twice, a second nomination
  event); emails received twice with one Message-ID are counted and shown apart (`_emails`);
- reordered: a partition whose records, first sendings only, do not follow their `prev`
  chain, or a projection that ends in an older state than the last event (a retired cadre
  still in a pool);
- unseen: a record on a topic that a consumer never handled (its watermark behind the
  relay, records held `ahead` of a gap, anything dead-lettered, an event of any store
  missing from the archive);
- chain: `runtime.verify` on every service (hash chain, stream versions, topic vs table,
  signed checkpoints).
"""

from __future__ import annotations

import asyncio
import email
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from contracts import topics
from runtime import checkpoint
from runtime.kafka import topic_ends
from runtime.relay import POSITION_HEADER, PREV_HEADER
from runtime.settings import DEV_CHECKPOINT_SEED
from runtime.verify import read_whole_topic, verify_dsn
from tests.faults.load import Ack

KINDS = ("lost", "duplicated", "reordered", "unseen", "chain")
_SHOWN = 5
"""Examples kept per kind (the counts are complete)."""


@dataclass
class Findings:
    """Counts and first examples of everything the checkers found, by kind."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    facts: dict[str, int] = field(default_factory=dict)
    """What was checked, and what is allowed but worth knowing (records sent twice to a topic)."""

    def add(self, kind: str, what: str) -> None:
        """Count one finding of `kind`."""
        self.counts[kind] += 1
        if len(self.examples[kind]) < _SHOWN:
            self.examples[kind].append(what)

    @property
    def ok(self) -> bool:
        """Nothing lost, doubled, reordered, unseen or broken."""
        return not any(self.counts.values())

    def summary(self) -> str:
        """One line per kind, with examples."""
        lines = [f"{kind}: {self.counts[kind]}" + "".join(f"\n    {e}" for e in self.examples[kind]) for kind in KINDS]
        lines += [f"(allowed) {example}" for example in self.examples.get("emails repeated", [])]
        return "\n".join(lines)


@dataclass(frozen=True)
class Place:
    """Where one service's data is: its database (directly, not through a proxy) and its topic."""

    service: str
    dsn: str
    topic: str


async def _rows(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def lag(places: dict[str, Place]) -> dict[str, str]:
    """What is not caught up yet: (consumer, topic) → why; empty when every consumer has every published record.

    A relay behind its chain's head counts too (its events are not on the topic yet).
    """
    behind: dict[str, str] = {}
    heads: dict[str, dict[int, int]] = {}
    for place in places.values():
        row = await _rows(
            place.dsn,
            "SELECT r.heads, r.position, h.position AS head FROM chain_head h LEFT JOIN relay_cursor r ON r.topic = $1",
            place.topic,
        )
        if row and row[0]["position"] is not None and row[0]["position"] == row[0]["head"]:
            heads[place.topic] = {int(p): int(v) for p, v in orjson.loads(row[0]["heads"]).items()}
        elif row and row[0]["head"]:
            behind[f"relay {place.service}"] = f"cursor {row[0]['position']} < head {row[0]['head']}"
    for place in places.values():
        rows = await _rows(place.dsn, "SELECT consumer, topic, partition, low, ahead FROM consumed")
        handled = {(r["consumer"], r["topic"], r["partition"]): r for r in rows}
        for consumer, topic in {(r["consumer"], r["topic"]) for r in rows if r["topic"] in heads}:
            for partition, head in heads[topic].items():
                mark = handled.get((consumer, topic, partition))
                low, ahead = (mark["low"], mark["ahead"]) if mark is not None else (0, "{}")
                if low != head or ahead != "{}":
                    behind[f"{consumer} {topic}[{partition}]"] = f"at {low} of {head}, ahead {ahead}"
    return behind


async def settled(places: dict[str, Place]) -> bool:
    """Quiet now: nothing lagging, no delivery due and unsent, and no store grew over the last second."""
    if await lag(places):
        return False
    due = await _rows(
        places["notify"].dsn,
        "SELECT count(*) AS n FROM deliveries WHERE status IN ('pending', 'retrying') AND due_at <= now()",
    )
    if due[0]["n"]:
        return False
    before = [await _rows(p.dsn, "SELECT max(position) AS p FROM events") for p in places.values()]
    await asyncio.sleep(1.0)
    after = [await _rows(p.dsn, "SELECT max(position) AS p FROM events") for p in places.values()]
    return before == after and not await lag(places)


async def check(
    places: dict[str, Place], bootstrap: str, acks: Iterable[Ack], *, maildir: Path | None = None
) -> Findings:
    """Every checker, once the system is quiet (call `lag` first until it is empty)."""
    found = Findings()
    acks = list(acks)
    await _chains(found, places, bootstrap)
    on_topic = await _topics(found, places, bootstrap)
    await _lost(found, places, acks, on_topic)
    await _hours(found, places, acks)
    await _doubles(found, places)
    await _unseen(found, places, bootstrap)
    if maildir is not None:
        _emails(found, maildir)
    found.facts["acknowledged commands"] = len(acks)
    return found


async def _chains(found: Findings, places: dict[str, Place], bootstrap: str) -> None:
    public = checkpoint.private_key(DEV_CHECKPOINT_SEED).public_key()
    for place in places.values():
        report = await verify_dsn(
            place.dsn, service=place.service, public_keys=[public], bootstrap=bootstrap, topic=place.topic
        )
        found.facts[f"events in {place.service}"] = report.events
        for finding in report.findings:
            found.add("chain", f"{place.service} position {finding.position}: {finding.check}: {finding.problem}")


async def _topics(found: Findings, places: dict[str, Place], bootstrap: str) -> dict[str, set[uuid.UUID]]:
    """Event ids on each service's topic; the `prev` chain of every partition (first sendings only)."""
    on_topic: dict[str, set[uuid.UUID]] = {}
    resent = 0
    for place in places.values():
        ids: set[uuid.UUID] = set()
        last: dict[int, int] = defaultdict(int)
        for record in await read_whole_topic(bootstrap, place.topic):
            headers = {key: value.decode() for key, value in record.headers}
            ids.add(uuid.UUID(headers["event_id"]))
            position, prev = int(headers[POSITION_HEADER]), int(headers[PREV_HEADER])
            if position <= last[record.partition]:
                resent += 1  # a re-send after an unknown outcome or a crash: consumers see it as a repeat
                continue
            if prev != last[record.partition]:
                found.add(
                    "reordered",
                    f"{place.topic}[{record.partition}] offset {record.offset}: position {position} says prev {prev},"
                    f" the partition's last was {last[record.partition]}",
                )
            last[record.partition] = position
        on_topic[place.service] = ids
    found.facts["records sent twice to a topic (repeats, allowed)"] = resent
    return on_topic


async def _lost(
    found: Findings, places: dict[str, Place], acks: list[Ack], on_topic: dict[str, set[uuid.UUID]]
) -> None:
    stored = {
        name: {r["event_id"] for r in await _rows(place.dsn, "SELECT event_id FROM events")}
        for name, place in places.items()
    }
    archived = {r["event_id"] for r in await _rows(places["audit"].dsn, "SELECT event_id FROM archive")}
    for ack in acks:
        for event_id in ack.event_ids:
            where = [
                name
                for name, holds in (
                    (f"{ack.service} store", stored[ack.service]),
                    (f"{ack.service} topic", on_topic[ack.service]),
                    ("audit archive", archived),
                )
                if event_id not in holds
            ]
            if where:
                found.add("lost", f"{ack.kind} of cadre {ack.cadre_id}: event {event_id} missing from {where}")
    nominated = {a.cadre_id for a in acks if a.kind == "nominate"}
    retired = {a.cadre_id for a in acks if a.kind == "retirement"}
    pools = dict.fromkeys(("training", "assessment", "notify"), "pool_cadres")  # the runtime's view of the registry
    for service, table in pools.items():
        rows = {
            r["cadre_id"]: r["in_pool"]
            for r in await _rows(places[service].dsn, f"SELECT cadre_id, in_pool FROM {table}")
        }
        for cadre_id in nominated - rows.keys():
            found.add("lost", f"cadre {cadre_id} nominated (2xx) but not in {service}'s {table}")
        for cadre_id in retired & rows.keys():
            if rows[cadre_id]:
                found.add("reordered", f"cadre {cadre_id} retired (2xx) but still in {service}'s pool")
    evaluated = {a.cadre_id for a in acks if a.kind == "evaluation"}
    rows_ = await _rows(places["assessment"].dsn, "SELECT cadre_id, count(*) AS n FROM evaluations GROUP BY cadre_id")
    evaluations = {r["cadre_id"]: r["n"] for r in rows_}
    for cadre_id in evaluated - evaluations.keys():
        found.add("lost", f"evaluation of cadre {cadre_id} (2xx) not in assessment's evaluations")
    found.facts["events checked in store, topic and archive"] = sum(len(a.event_ids) for a in acks)


async def _hours(found: Findings, places: dict[str, Place], acks: list[Ack]) -> None:
    """Sums a consumer adds up (a second application shows as more), against the producer's own events."""
    studied: Counter[uuid.UUID] = Counter()
    for row in await _rows(places["training"].dsn, "SELECT body FROM events WHERE event_type = 'SelfStudyLogged'"):
        payload = orjson.loads(row["body"])["payload"]
        studied[uuid.UUID(payload["cadre_id"])] += int(payload["hours"])
    acked: Counter[uuid.UUID] = Counter()
    for ack in acks:
        if ack.kind == "self_study":
            acked[ack.cadre_id] += ack.hours
    rows = await _rows(places["assessment"].dsn, "SELECT cadre_id, sum(self_study) AS h FROM training_hours GROUP BY 1")
    summed = {r["cadre_id"]: int(r["h"]) for r in rows}
    for cadre_id in studied.keys() | summed.keys():
        have, want = summed.get(cadre_id, 0), studied[cadre_id]
        if have > want:
            found.add("duplicated", f"cadre {cadre_id}: {have} h of self-study in assessment, {want} h recorded")
        elif have < want:
            found.add("lost", f"cadre {cadre_id}: {have} h of self-study in assessment, {want} h recorded")
    for cadre_id, hours in acked.items():
        if studied[cadre_id] < hours:
            found.add("lost", f"cadre {cadre_id}: {hours} h acknowledged, {studied[cadre_id]} h recorded")
    found.facts["hours of self-study acknowledged"] = sum(acked.values())


async def _doubles(found: Findings, places: dict[str, Place]) -> None:
    """A second nomination event, a delivery planned twice for one event and recipient."""
    doubled = await _rows(
        places["registry"].dsn,
        "SELECT cadre_id, count(*) AS n FROM events WHERE event_type = 'CadreNominated' GROUP BY 1 HAVING count(*) > 1",
    )
    for row in doubled:
        found.add("duplicated", f"cadre {row['cadre_id']} nominated {row['n']} times in the registry")
    planned = await _rows(
        places["notify"].dsn,
        "SELECT source_event_id, rule, channel, recipient_kind, recipient_key, count(*) AS n FROM deliveries"
        " GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1",
    )
    for row in planned:
        found.add(
            "duplicated",
            f"notify planned {row['n']} {row['channel']} deliveries of {row['rule']} to {row['recipient_kind']}"
            f" {row['recipient_key']}"
            f" for event {row['source_event_id']}",
        )
    recorded = await _rows(
        places["notify"].dsn,
        "SELECT stream_id, count(*) AS n FROM events WHERE event_type = 'NotificationSent'"
        " GROUP BY 1 HAVING count(*) > 1",
    )
    for row in recorded:
        found.add("duplicated", f"{row['stream_id']} recorded as sent {row['n']} times")
    found.facts["notify deliveries planned"] = int(
        (await _rows(places["notify"].dsn, "SELECT count(*) AS n FROM deliveries"))[0]["n"]
    )


async def _unseen(found: Findings, places: dict[str, Place], bootstrap: str) -> None:
    behind = await lag(places)
    for what, why in behind.items():
        found.add("unseen", f"{what}: {why}")
    archived = Counter(
        {
            r["source"]: r["n"]
            for r in await _rows(places["audit"].dsn, "SELECT source, count(*) AS n FROM archive GROUP BY 1")
        }
    )
    for name, place in places.items():
        stored = int((await _rows(place.dsn, "SELECT count(*) AS n FROM events"))[0]["n"])
        if archived[name] != stored:
            found.add("unseen", f"audit archived {archived[name]} of {name}'s {stored} events")
    dead = [topics.dlq(place.topic) for place in places.values()]
    ends = await topic_ends(bootstrap, dead)
    for partition, end in ends.items():
        if end:
            found.add("unseen", f"{end} record(s) dead-lettered on {partition.topic}[{partition.partition}]")


def _emails(found: Findings, maildir: Path) -> None:
    ids: Counter[str] = Counter()
    for part in ("new", "cur"):
        for path in (maildir / part).glob("*"):
            message = email.message_from_bytes(path.read_bytes())
            ids[str(message["Message-ID"])] += 1
    repeats = {message_id: n for message_id, n in ids.items() if n > 1}
    found.facts["emails received"] = sum(ids.values())
    # SMTP has no transaction with our database: a kill -9 between the server's "250 OK" and the
    # commit of NotificationSent sends the email again once the lease lapses (services/notify/
    # dispatcher.py). The repeat carries the same Message-ID (the notification id), which the
    # receiving side de-duplicates by; it is counted and shown here, the platform's own record
    # of sends is checked for doubles in `_doubles`.
    found.facts["emails received twice with the same Message-ID (at-least-once SMTP)"] = len(repeats)
    found.examples["emails repeated"] = [f"{m} received {n} times" for m, n in list(repeats.items())[:_SHOWN]]
