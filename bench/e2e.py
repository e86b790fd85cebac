"""End to end: an HTTP command to the registry until it is in ANOTHER service's projection.

Open loop: commands leave at a fixed rate whatever the answers do (a closed loop
would slow down with the system and hide its queueing). The time a command's effect
became visible is when a watcher polling the other service's projection table every
5 ms first saw the cadre's row (what a reader of that service would see); the poll
interval and the query's own time make the figure a few ms pessimistic, never optimistic.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx

from bench import harness
from bench.harness import Figure, Report, Series, percentile
from bench.workload import nomination_body
from contracts import topics
from contracts.envelope import Actor, Role
from deploy.local import stack as local_stack
from runtime import clock
from runtime.auth import issue_token
from runtime.kafka import read_range, topic_ends
from runtime.settings import DEV_AUTH_SECRET
from services.registry import demo

VEGETA_VERSION = "v12.13.0"
CONSUMERS = ("training", "assessment", "notify", "audit")
"""Services that project the registry's events, in order of preference."""


@contextlib.contextmanager
def _stack(workdir: Path, services: list[str]) -> Iterator[local_stack.Stack]:
    with local_stack.run_stack(workdir, services=services) as running:
        yield running


def vegeta() -> str:
    """The vegeta load generator (Go), built once into .cache/bin with `go install`.

    An open loop in Python cannot keep a fixed rate on two cores that also run the
    stack: at 250/s it fell behind its own schedule. vegeta holds the rate at a few
    percent of one core.
    """
    binary = local_stack.REPO / ".cache" / "bin" / "vegeta"
    if not binary.exists():
        go = shutil.which("go")
        if go is None:
            msg = "go not found: it builds the vegeta load generator"
            raise RuntimeError(msg)
        subprocess.run(  # noqa: S603 - fixed arguments
            [go, "install", f"github.com/tsenart/vegeta/v12@{VEGETA_VERSION}"],
            env={**os.environ, "GOBIN": str(binary.parent)},
            check=True,
            capture_output=True,
        )
    return str(binary)


@dataclass
class Attack:
    """What an open-loop attack sent and got back."""

    accepted: list[tuple[float, UUID]]
    """(wall time the request left, cadre id) of every 201."""
    answered: dict[UUID, float]
    """Wall time the 201 came back, by cadre id."""
    latencies_ms: list[float]
    statuses: dict[int, int]


def attack_size(rate: int, seconds: float) -> int:
    """How many distinct nominations an attack has ready (vegeta may send a few beyond rate x seconds)."""
    return int(rate * seconds) + rate


def organizer_tokens(org: demo.DemoOrg) -> dict[str, str]:
    """A token per unit, for an organizer of that unit: the load comes from many people, as it does in use.

    Each actor stays within the services' own per-actor write limit (unchanged for the bench):
    500 commands a second spread over the demo's units is about a dozen per organizer.
    """
    return {
        unit.code: issue_token(
            DEV_AUTH_SECRET, Actor(user=f"bench.{unit.code}", org_path=unit.path, role=Role.ORGANIZER)
        )
        for unit in org.units
    }


def nominate_open_loop(
    url: str, rate: int, seconds: float, org: demo.DemoOrg, reason: str, *, started: threading.Event | None = None
) -> Attack:
    """Nominate at a fixed `rate` for `seconds` whatever the answers do (vegeta attack)."""
    tokens = organizer_tokens(org)
    count = attack_size(rate, seconds)
    with tempfile.TemporaryDirectory(prefix="cadre-vegeta-") as scratch:
        targets = Path(scratch) / "targets.jsonl"
        with targets.open("w") as out:
            for n in range(count):
                unit = org.units[2 + n % (len(org.units) - 2)]
                body = json.dumps(nomination_body(n, unit.code, reason)).encode()
                target = {
                    "method": "POST",
                    "url": f"{url}/cadres",
                    "header": {"Authorization": [f"Bearer {tokens[unit.code]}"], "Content-Type": ["application/json"]},
                    "body": base64.b64encode(body).decode(),
                }
                out.write(json.dumps(target) + "\n")
        if started is not None:
            started.set()
        attack = subprocess.run(  # noqa: S603 - our binary, our arguments
            [
                vegeta(),
                "attack",
                "-format=json",
                f"-targets={targets}",
                f"-rate={rate}/s",
                f"-duration={seconds}s",
                "-timeout=60s",
                "-max-workers=400",
            ],
            check=True,
            capture_output=True,
        )
        encoded = subprocess.run(  # noqa: S603
            [vegeta(), "encode", "--to", "json"], input=attack.stdout, check=True, capture_output=True
        )
    accepted: list[tuple[float, UUID]] = []
    answered: dict[UUID, float] = {}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for line in encoded.stdout.splitlines():
        result = json.loads(line)
        statuses[result["code"]] = statuses.get(result["code"], 0) + 1
        latencies.append(result["latency"] / 1e6)
        if result["code"] == httpx.codes.CREATED:
            sent_at = datetime.fromisoformat(result["timestamp"]).timestamp()
            answer = json.loads(base64.b64decode(result["body"]))
            cadre_id = UUID(answer["stream_id"].removeprefix("cadre-"))
            accepted.append((sent_at, cadre_id))
            answered[cadre_id] = sent_at + result["latency"] / 1e9
    return Attack(accepted=accepted, answered=answered, latencies_ms=latencies, statuses=statuses)


E2E_TARGETS = {100: "p99 <= 50 ms", 500: "p99 <= 100 ms"}
"""The end-to-end targets on a quiet machine, by offered rate."""

STAGES = ("HTTP in → recorded", "recorded → 201", "recorded → relay sent", "relay sent → visible")


async def stages(running: local_stack.Stack, attack: Attack, seen: dict[UUID, float]) -> dict[UUID, tuple[float, ...]]:
    """Where each command's time went (ms per stage of STAGES), from the times each step left behind.

    Recorded: the store's `recorded_at` (read under the chain lock, just before the COPY and the
    commit). Relay sent: the Kafka record's timestamp (set by the producer when the relay sends).
    Visible: when the watcher first saw the row.
    """
    registry = local_stack.database_dsn(running.postgres_dsn, local_stack.database_name(running.namespace, "registry"))
    conn = await asyncpg.connect(registry)
    try:
        rows = await conn.fetch(
            "SELECT cadre_id, recorded_at FROM events WHERE cadre_id = ANY($1::uuid[])",
            [cadre_id for _, cadre_id in attack.accepted],
        )
    finally:
        await conn.close()
    recorded = {row["cadre_id"]: row["recorded_at"].timestamp() for row in rows}
    topic = topics.namespaced(running.namespace, topics.REGISTRY)
    sent: dict[UUID, float] = {}
    async for records in read_range(
        running.kafka_bootstrap, {}, await topic_ends(running.kafka_bootstrap, [topic]), 5000
    ):
        for record in records:
            with contextlib.suppress(ValueError, TypeError):
                sent[UUID((record.key or b"").decode())] = record.timestamp / 1000
    out: dict[UUID, tuple[float, ...]] = {}
    for at, cadre_id in attack.accepted:
        if cadre_id in recorded and cadre_id in sent and cadre_id in seen:
            r, k = recorded[cadre_id], sent[cadre_id]
            out[cadre_id] = tuple(1000 * d for d in (r - at, attack.answered[cadre_id] - r, k - r, seen[cadre_id] - k))
    return out


def breakdown(parts: dict[UUID, tuple[float, ...]], totals: dict[UUID, float]) -> str:
    """Each stage's p50 and p99, and its mean among the slowest 1% of commands (where the p99 goes)."""
    if not parts:
        return "no breakdown"
    slowest = sorted(parts, key=lambda i: totals.get(i, 0.0))[-max(1, len(parts) // 100) :]
    lines = []
    for n, name in enumerate(STAGES):
        values = [p[n] for p in parts.values()]
        tail = sum(parts[i][n] for i in slowest) / len(slowest)
        lines.append(
            f"{name}: p50 {percentile(values, 50):.1f}, p99 {percentile(values, 99):.1f}, slowest 1% {tail:.1f}"
        )
    return "; ".join(lines) + " (ms)"


VISIBLE_IN: dict[str, str] = {
    "training": "pool_cadres",
    "assessment": "pool_cadres",
    "notify": "cadres",
    "audit": "archive",
}
"""The table of each consumer in which a nominated cadre shows up."""


class Watcher(harness.ThreadedWatcher):
    """Polls a projection table for cadre ids, noting (wall time) when each first shows up.

    The ids are those of the attack, in the order it sends them at `rate` from `started`. Each
    poll asks only for the ids that can have been sent by then (with a margin) and are not seen
    yet: a few dozen, not the whole attack. (Asking for every id of the attack each time cost
    PostgreSQL a core-share of its own at 500/s and slowed what it measured.)
    """

    def __init__(
        self, dsn: str, table: str, ids: list[UUID], *, rate: int, started: threading.Event | None = None
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._sql = f"SELECT DISTINCT cadre_id FROM {table} WHERE cadre_id = ANY($1::uuid[])"  # noqa: S608 - ours
        self._ids = ids
        self._rate = rate
        self._asked = 0
        """ids[:_asked] have been asked for at least once."""
        self._pending: set[UUID] = set()
        self.started = started or threading.Event()
        """Set when the attack starts sending."""
        self.seen: dict[UUID, float] = {}

    def wait(self, until: float, sent: set[UUID]) -> None:
        """Let the watcher go on until every id in `sent` is seen or `until` (monotonic)."""
        while not sent <= self.seen.keys() and time.monotonic() < until:
            time.sleep(0.1)

    def _due(self, since: float) -> None:
        """Add the ids the attack can have sent by now (its schedule, plus 100 ms and 20 ids of margin)."""
        due = min(len(self._ids), int((time.monotonic() - since + 0.1) * self._rate) + 20)
        self._pending.update(self._ids[self._asked : due])
        self._asked = max(self._asked, due)

    async def _watch(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await asyncio.to_thread(self.started.wait)
            since = time.monotonic()
            while not self._stop.is_set() and (self._pending or self._asked < len(self._ids)):
                self._due(since)
                rows = await conn.fetch(self._sql, list(self._pending))
                now = time.time()
                for row in rows:
                    self.seen[row["cadre_id"]] = now
                    self._pending.discard(row["cadre_id"])
                await asyncio.sleep(0.005)
        finally:
            await conn.close()


async def register_units(url: str, org: demo.DemoOrg) -> None:
    """Register the demo organization's units (no cadres) through the registry's API."""
    token = demo.root_token(DEV_AUTH_SECRET, org)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await demo.load(client, token, demo.DemoOrg(units=org.units, cadres=[]))


def run(report: Report, *, rates: tuple[int, ...] = (100, 250, 500), seconds: float = 20.0) -> None:
    """Measure p50/p95/p99 at each offered rate, and the highest rate held without a growing lag."""
    target = next((s for s in CONSUMERS if s in local_stack.available_services()), None)
    if target is None:
        report.add(Figure(name="end to end", value=float("nan"), unit="ms", notes="no service consumes the registry"))
        return
    workdir = Path(tempfile.mkdtemp(prefix="cadre-bench-e2e-"))
    saved = {name: os.environ.pop(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if name in os.environ}
    try:
        with _stack(workdir, ["registry", target]) as running:
            org = demo.plan(seed=31, cadres=0, today=clock.today())
            asyncio.run(register_units(running.services["registry"].url, org))
            dsn = local_stack.database_dsn(running.postgres_dsn, local_stack.database_name(running.namespace, target))
            held = 0
            for rate in rates:
                url = running.services["registry"].url
                reason = f"end to end at {rate}/s"
                ids = [
                    UUID(str(nomination_body(n, "x", reason)["cadre_id"])) for n in range(attack_size(rate, seconds))
                ]
                report.mark()
                with Watcher(dsn, VISIBLE_IN[target], ids, rate=rate) as watcher:
                    attack = nominate_open_loop(url, rate, seconds, org, reason, started=watcher.started)
                    sent = attack.accepted
                    watcher.wait(time.monotonic() + 60, {i for _, i in sent})
                seen = watcher.seen
                latencies = [(seen[i] - at) * 1000 for at, i in sent if i in seen]
                parts = asyncio.run(stages(running, attack, seen))
                split = breakdown(parts, {i: (seen[i] - at) * 1000 for at, i in sent if i in seen})
                print(f"  {rate}/s: {split}", flush=True)
                tail = latencies[-max(1, len(latencies) // 10) :]
                head = latencies[: max(1, len(latencies) // 10)]
                growing = len(seen) < len(sent) or percentile(tail, 50) > 3 * max(percentile(head, 50), 20)
                if not growing:
                    held = rate
                report.series.append(
                    Series(f"end-to-end latency at {rate} per s", ys=latencies, kind="hist", xlabel="ms")
                )
                report.add(
                    Figure(
                        name=f"end to end at {rate}/s: registry HTTP → {target} projection, p99",
                        value=percentile(latencies, 99),
                        unit="ms",
                        target=E2E_TARGETS.get(rate, ""),
                        notes=(
                            f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms;"
                            f" {len(sent)} accepted of {int(rate * seconds)} offered (HTTP {attack.statuses},"
                            f" command p99 {percentile(attack.latencies_ms, 99):.0f} ms), {len(seen)} seen;"
                            f" lag {'grew' if growing else 'steady'}; {split}"
                        ),
                    ),
                    *(
                        Figure(
                            name=f"stage at {rate}/s: {name}, p50",
                            value=percentile([p[n] for p in parts.values()], 50),
                            unit="ms",
                            target="p50 < 5 ms" if rate == 100 else "",
                            notes=f"p99 {percentile([p[n] for p in parts.values()], 99):.1f} ms",
                        )
                        for n, name in enumerate(STAGES)
                    ),
                )
            report.add(
                Figure(
                    name=f"highest offered rate held for {seconds:.0f} s without a growing lag",
                    value=held,
                    unit="commands/s",
                    notes=f"rates tried: {', '.join(map(str, rates))}; measured {clock.now():%H:%M} UTC",
                )
            )
    finally:
        os.environ.update(saved)
        shutil.rmtree(workdir, ignore_errors=True)
