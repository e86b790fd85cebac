"""Training's part of the demo organization, loaded through training's own HTTP API.

Programmes of the provincial party school and of each city, enrolments and completions,
self-study, and postings of the kind the service recommends. Ids are derived from the
seed, so loading again answers 409 for everything already there and changes nothing.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

import httpx

from runtime import clock
from runtime.demo import DemoLoader
from services.registry.demo import DemoCadre, DemoOrg

NAMESPACE = uuid.UUID("0b6c6f0d-1f9e-4f61-9d0a-2a7b3b5c9e42")
TOPICS = [
    "Party theory and the basic line",
    "Rural revitalization",
    "Emergency management",
    "Ecological protection",
    "Grass-roots governance",
    "Economic development and the market",
    "Law-based administration",
]


async def load(client: httpx.AsyncClient, token: str, org: DemoOrg) -> tuple[int, int]:
    """Send training's demo commands; return (sent, already there)."""
    loader = DemoLoader(client, token, hour=9)
    rng = random.Random(17)
    active = [c for c in org.cadres if c.retirement is None]
    if active:  # training learns of cadres from registry.events
        await loader.wait_until_found(f"/cadres/{active[-1].cadre_id}/training-record")
    today = clock.today()
    organizers = [org.root.code, *(u.code for u in org.units if u.level.value == "municipal")]
    programs: list[tuple[uuid.UUID, date, date, int]] = []
    for index, organizer in enumerate(organizers):
        for term in range(2):
            starts = today - timedelta(days=400 - 200 * term - 15 * index)
            program_id = uuid.uuid5(NAMESPACE, f"program:{organizer}:{term}")
            hours = rng.choice((40, 60, 80))
            await loader.send(
                "POST",
                "/programs",
                {
                    "program_id": str(program_id),
                    "title": f"{'Spring' if term == 0 else 'Autumn'} class for young cadres, {organizer.upper()}",
                    "organizer_code": organizer,
                    "starts_on": starts.isoformat(),
                    "ends_on": (starts + timedelta(days=14)).isoformat(),
                    "hours": hours,
                    "capacity": 40,
                    "curriculum": rng.sample(TOPICS, 3),
                    "location": "Party school",
                },
                starts - timedelta(days=30),
            )
            programs.append((program_id, starts, starts + timedelta(days=14), hours))
    for cadre in active:
        await _train(loader, rng, cadre, programs, today=today, top=org.root.code)
    return loader.sent, loader.skipped


async def _train(
    loader: DemoLoader,
    rng: random.Random,
    cadre: DemoCadre,
    programs: list[tuple[uuid.UUID, date, date, int]],
    *,
    today: date,
    top: str,
) -> None:
    cadre_id = str(cadre.cadre_id)
    eligible = [p for p in programs if p[1] - timedelta(days=20) > cadre.nominated_on]
    if eligible and rng.random() < 0.6:
        program_id, starts, ends, hours = rng.choice(eligible)
        enrolled = await loader.send(
            "POST",
            f"/programs/{program_id}/enrolments",
            {"cadre_id": cadre_id},
            starts - timedelta(days=20),
            tolerate={httpx.codes.UNPROCESSABLE_ENTITY},  # a full programme is part of life
        )
        if enrolled.status_code != httpx.codes.UNPROCESSABLE_ENTITY:
            await loader.send(
                "POST",
                f"/programs/{program_id}/enrolments/{cadre_id}/completion",
                {
                    "completed_on": ends.isoformat(),
                    "hours": hours - rng.choice((0, 0, 4)),
                    "score": rng.randint(70, 98),
                },
                ends,
            )
    if rng.random() < 0.5:
        studied = max(cadre.nominated_on, today - timedelta(days=rng.randint(5, 300)))
        await loader.send(
            "POST",
            f"/cadres/{cadre_id}/self-study",
            {
                "entry_id": str(uuid.uuid5(NAMESPACE, f"study:{cadre_id}")),
                "kind": rng.choice(("reading", "online_course", "lecture")),
                "topic": rng.choice(TOPICS),
                "studied_on": studied.isoformat(),
                "hours": rng.randint(2, 12),
                "evidence": "study notes filed with the unit's organization office",
            },
            studied,
        )
    if rng.random() < 0.35:
        await _post(loader, rng, cadre, today, top)


async def _post(loader: DemoLoader, rng: random.Random, cadre: DemoCadre, today: date, top: str) -> None:
    cadre_id = str(cadre.cadre_id)
    advice = await loader.get(f"/cadres/{cadre_id}/recommendation")
    kind = advice.json().get("kind") if advice.status_code == httpx.codes.OK else None
    if kind is None:
        return
    # Up: the highest unit the loading deployment holds (the province's, or a level's own root).
    host = {"downward": cadre.unit.code, "upward": top, "cold_hot_exchange": cadre.unit.code, "urgent_task": top}
    starts = max(cadre.nominated_on + timedelta(days=10), today - timedelta(days=rng.randint(30, 240)))
    await loader.send(
        "POST",
        f"/cadres/{cadre_id}/postings",
        {
            "posting_id": str(uuid.uuid5(NAMESPACE, f"posting:{cadre_id}")),
            "kind": kind,
            "host_org_code": host[kind],
            "position": {
                "downward": "Deputy township head",
                "upward": "Section member, provincial development and reform commission",
                "cold_hot_exchange": "Deputy director, county investment promotion bureau",
                "urgent_task": "Member, provincial flood relief task force",
            }[kind],
            "starts_on": starts.isoformat(),
            "planned_end_on": (starts + timedelta(days=365 if kind != "urgent_task" else 60)).isoformat(),
            "purpose": advice.json()["reason"],
        },
        starts,
    )
