"""A steady, realistic load through the services' HTTP APIs, and a record of what each 2xx acknowledged.

Nominations (registry), self-study and postings (training), evaluations (assessment) and
retirements (registry), in proportions like a department's working day; notify's emails
and inbox messages follow from them. Every command's ids are derived from the run's seed,
so a replay sends the same commands. A command is *acknowledged* only by a 2xx answer;
one without an answer (a killed or frozen service, a cut database) is counted as
unanswered and never retried, so nothing it might have done is counted twice.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from bench.workload import nomination_body
from runtime import clock
from services.registry import demo

NAMESPACE = uuid.UUID("6f1f2c9e-4b7a-4c55-9d6e-0f3a8e1c2b77")
ACTIONS = {"nominate": 5, "self_study": 3, "posting": 1, "evaluation": 2, "retirement": 1}
"""Each command kind and its weight in the mix."""


@dataclass(frozen=True)
class Ack:
    """A command answered with 2xx: what it was and the events it recorded."""

    kind: str
    service: str
    cadre_id: uuid.UUID
    event_ids: tuple[uuid.UUID, ...]
    hours: int = 0


@dataclass
class Cadre:
    """What the load knows of one cadre it nominated."""

    cadre_id: uuid.UUID
    unit: str
    posted: bool = False
    evaluated: bool = False
    retired: bool = False
    busy: bool = False


@dataclass
class Ledger:
    """Everything sent: acknowledged, refused (4xx), failed (5xx) and unanswered commands."""

    acks: list[Ack] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Commands sent."""
        return sum(self.sent.values())


class Load:
    """Sends commands at `rate` per second from `workers` concurrent clients until stopped or `limit` is sent."""

    def __init__(self, urls: dict[str, str], secret: str, *, seed: int, rate: float, workers: int = 6) -> None:
        self.urls = urls
        self.rng = random.Random(seed)
        self.seed = seed
        self.rate = rate
        self.workers = workers
        self.ledger = Ledger()
        self.cadres: list[Cadre] = []
        self.org = demo.plan(seed, cadres=0)
        self._secret = secret
        self._token = ("", 0.0)
        self._units = [unit for unit in self.org.units if unit.level.value in {"county", "township"}]
        self.cycle_id = uuid.uuid5(NAMESPACE, f"cycle:{seed}")
        self._sequence = 0
        self.seconds = 0.0
        """How long the last `run` sent commands."""

    def headers(self) -> dict[str, str]:
        """A fresh root organizer token (reissued every 10 minutes: a long run outlives one)."""
        token, issued = self._token
        if time.monotonic() - issued > 600:
            token = demo.root_token(self._secret, self.org)
            self._token = (token, time.monotonic())
        return {"Authorization": f"Bearer {token}"}

    async def prepare(self) -> None:
        """Register the organization's units and open an assessment cycle (before any fault)."""
        async with httpx.AsyncClient(base_url=self.urls["registry"], timeout=60) as client:
            await demo.load(client, demo.root_token(self._secret, self.org), self.org)
        today = clock.today()
        cycle = {
            "cycle_id": str(self.cycle_id),
            "org_code": self.org.root.code,
            "period": "annual",
            "name": f"Annual assessment {today.year} (fault run {self.seed})",
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=60)).isoformat(),
        }
        async with httpx.AsyncClient(base_url=self.urls["assessment"], timeout=60) as client:
            response = await client.post("/cycles", json=cycle, headers=self.headers())
            response.raise_for_status()

    async def run(self, *, limit: int, stop: asyncio.Event) -> None:
        """Send up to `limit` commands at the rate, until `stop` is set."""
        started = time.monotonic()
        limits = httpx.Limits(max_connections=self.workers * len(self.urls))
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:

            async def worker() -> None:
                while not stop.is_set() and self._sequence < limit:
                    self._sequence += 1
                    due = started + self._sequence / self.rate
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    await self._one(client)

            await asyncio.gather(*(worker() for _ in range(self.workers)))
        self.seconds = time.monotonic() - started

    def _pick(self) -> tuple[str, Cadre | None]:
        kinds = list(ACTIONS)
        while True:
            kind = self.rng.choices(kinds, [ACTIONS[k] for k in kinds])[0]
            if kind == "nominate":
                return kind, None
            open_ = [c for c in self.cadres[-200:] if not c.retired and not c.busy]
            candidates = [
                c for c in open_ if (kind != "posting" or not c.posted) and (kind != "evaluation" or not c.evaluated)
            ]
            if candidates:
                return kind, self.rng.choice(candidates)
            if not open_:
                return "nominate", None

    async def _one(self, client: httpx.AsyncClient) -> None:
        kind, cadre = self._pick()
        service, path, body, hours = self._command(kind, cadre)
        self.ledger.sent[kind] += 1
        if cadre is not None:
            cadre.busy = True
        try:
            response = await client.post(f"{self.urls[service]}{path}", json=body, headers=self.headers())
        except httpx.HTTPError:
            self.ledger.unanswered[kind] += 1
            return
        finally:
            if cadre is not None:
                cadre.busy = False
        if response.status_code >= httpx.codes.INTERNAL_SERVER_ERROR:
            self.ledger.failed[f"{kind} {response.status_code}"] += 1
            return
        if response.status_code >= httpx.codes.BAD_REQUEST:
            self.ledger.refused[f"{kind} {response.status_code}"] += 1
            return
        answer = response.json()
        cadre_id = cadre.cadre_id if cadre is not None else uuid.UUID(body["cadre_id"])
        events = tuple(uuid.UUID(e["event_id"]) for e in answer["events"])
        self.ledger.acks.append(Ack(kind, service, cadre_id, events, hours))
        if kind == "nominate":
            self.cadres.append(Cadre(cadre_id, str(body["org_code"])))
        elif cadre is not None:
            cadre.posted |= kind == "posting"
            cadre.evaluated |= kind == "evaluation"
            cadre.retired |= kind == "retirement"

    def _command(self, kind: str, cadre: Cadre | None) -> tuple[str, str, dict[str, Any], int]:
        today = clock.today()
        n = len(self.ledger.acks) * 1000 + self.ledger.total
        if cadre is None:
            unit = self.rng.choice(self._units)
            body = nomination_body(n, unit.code, f"fault run {self.seed}")
            body["cadre_id"] = str(uuid.uuid5(NAMESPACE, f"cadre:{self.seed}:{n}"))
            body["email"] = f"cadre{n}@example.org"
            return "registry", "/cadres", body, 0
        cadre_id = cadre.cadre_id
        if kind == "self_study":
            hours = self.rng.randint(1, 8)
            body = {
                "entry_id": str(uuid.uuid5(NAMESPACE, f"study:{cadre_id}:{n}")),
                "kind": self.rng.choice(("reading", "online_course", "lecture")),
                "topic": "Rural revitalization",
                "studied_on": today.isoformat(),
                "hours": hours,
                "evidence": "study notes filed with the unit's organization office",
            }
            return "training", f"/cadres/{cadre_id}/self-study", body, hours
        if kind == "posting":
            body = {
                "posting_id": str(uuid.uuid5(NAMESPACE, f"posting:{cadre_id}")),
                "kind": "downward",
                "host_org_code": cadre.unit,
                "position": "Deputy township head",
                "starts_on": (today + timedelta(days=1)).isoformat(),
                "planned_end_on": (today + timedelta(days=180)).isoformat(),
                "purpose": "Get to know the grass roots",
            }
            return "training", f"/cadres/{cadre_id}/postings", body, 0
        if kind == "evaluation":
            body = {
                "evaluation_id": str(uuid.uuid5(NAMESPACE, f"evaluation:{self.cycle_id}:{cadre_id}")),
                "cycle_id": str(self.cycle_id),
                "grade": "competent",
                "scores": dict.fromkeys(("political_integrity", "ability", "diligence", "performance", "probity"), 82),
                "evaluator_name": "Assessment team of the county",
                "comments": "Democratic evaluation and individual talks",
            }
            return "assessment", f"/cadres/{cadre_id}/evaluations", body, 0
        body = {"reason": self.rng.choice(("appointed", "withdrew", "aged_out")), "note": "fault run"}
        return "registry", f"/cadres/{cadre_id}/retirement", body, 0
