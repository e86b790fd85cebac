"""Assessment's part of the demo organization, loaded through assessment's own HTTP API.

Last year's annual cycle (evaluated, then closed) and this year's, check-ins and a
few reminders; the rules raise what the grades call for (falling grades, exits).
Ids come from the seed: loading again answers 409 for everything and changes nothing.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

import httpx

from runtime import clock
from runtime.demo import DemoLoader
from services.registry.demo import DemoCadre, DemoOrg

NAMESPACE = uuid.UUID("9d1e3c2a-5f40-4b8e-8a52-6e0f5b7c4d13")
GRADES = ("excellent", "competent", "basically_competent", "incompetent")
WEIGHTS = (2, 6, 1.5, 0.3)


async def load(client: httpx.AsyncClient, token: str, org: DemoOrg) -> tuple[int, int]:
    """Send assessment's demo commands; return (sent, already there)."""
    loader = DemoLoader(client, token, hour=10)
    rng = random.Random(23)
    active = [c for c in org.cadres if c.retirement is None]
    if active:  # assessment learns of cadres from registry.events
        await loader.wait_until_found(f"/cadres/{active[-1].cadre_id}/file")
    today = clock.today()
    cycles = []
    for years_back in (1, 0):
        starts = min(date(today.year - years_back, 1, 5), today)  # in the first days of a year: today
        cycle_id = uuid.uuid5(NAMESPACE, f"cycle:{starts.year}")
        ends = starts + timedelta(days=60)
        await loader.send(
            "POST",
            "/cycles",
            {
                "cycle_id": str(cycle_id),
                "org_code": org.root.code,
                "period": "annual",
                "name": f"Annual assessment {starts.year}",
                "starts_on": starts.isoformat(),
                "ends_on": ends.isoformat(),
            },
            starts,
        )
        cycles.append((cycle_id, starts, ends))
    for cadre in active:
        await _assess(loader, rng, cadre, cycles, today)
    last_year, _, ended = cycles[0]
    await loader.send("POST", f"/cycles/{last_year}/close", None, ended)
    return loader.sent, loader.skipped


async def _assess(
    loader: DemoLoader, rng: random.Random, cadre: DemoCadre, cycles: list[tuple[uuid.UUID, date, date]], today: date
) -> None:
    cadre_id = str(cadre.cadre_id)
    for cycle_id, starts, ends in cycles:
        if cadre.nominated_on > starts or rng.random() > 0.8:
            continue
        grade = rng.choices(GRADES, WEIGHTS)[0]
        base = {"excellent": 92, "competent": 82, "basically_competent": 68, "incompetent": 52}[grade]
        await loader.send(
            "POST",
            f"/cadres/{cadre_id}/evaluations",
            {
                "evaluation_id": str(uuid.uuid5(NAMESPACE, f"evaluation:{cycle_id}:{cadre_id}")),
                "cycle_id": str(cycle_id),
                "grade": grade,
                "scores": {
                    name: max(0, min(100, base + rng.randint(-6, 6)))
                    for name in ("political_integrity", "ability", "diligence", "performance", "probity")
                },
                "evaluator_name": f"Assessment team of {cadre.unit.name}",
                "comments": "Democratic evaluation, individual talks and review of performance records",
            },
            min(ends, today),
        )
    if rng.random() < 0.6:
        held = max(cadre.nominated_on, today - timedelta(days=rng.randint(5, 150)))
        await loader.send(
            "POST",
            f"/cadres/{cadre_id}/check-ins",
            {
                "check_in_id": str(uuid.uuid5(NAMESPACE, f"check-in:{cadre_id}")),
                "held_on": held.isoformat(),
                "thinking": "Firm in ideals, studies theory regularly",
                "work": rng.choice(["Leads the village road project", "Handles petitions patiently"]),
                "life": rng.choice(["Family well", "Caring for an ill parent: flexible hours agreed"]),
                "follow_up": "Talk again next quarter",
            },
            held,
        )
    if rng.random() < 0.05:
        await loader.send(
            "POST",
            f"/cadres/{cadre_id}/reminders",
            {
                "reminder_id": str(uuid.uuid5(NAMESPACE, f"reminder:{cadre_id}")),
                "concern": "Signs of a formalistic work style in the last inspection",
                "severity": "medium",
                "follow_up_on": (today + timedelta(days=30)).isoformat(),
            },
            today,
        )
