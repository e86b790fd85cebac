"""Realistic registry commands for the benchmarks, reproducible from a seed."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date

from contracts.envelope import Actor, Role
from contracts.event import Event
from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    Education,
    Gender,
    MentorAssigned,
    Person,
    ProfileChanges,
)
from runtime import clock
from services.registry.demo import GIVEN, POSITIONS, SURNAMES

ACTOR = Actor(user="bench.organizer", org_path="qs", role=Role.ORGANIZER)
NAMESPACE = uuid.UUID("2d9f0c55-7b0e-4f7e-8f0a-4c2b9b1d6e01")


@dataclass(frozen=True)
class Command:
    """One append: a stream, the version it expects, and its events."""

    stream_id: str
    cadre_id: uuid.UUID
    org_path: str
    expected_version: int
    events: list[Event]


def org_paths(counties: int = 100, townships: int = 8) -> list[str]:
    """Paths of a province's units: cities of 10 counties each, townships under counties."""
    paths = ["qs"]
    for county in range(counties):
        city = f"c{county // 10:02d}"
        county_path = f"qs.{city}.{city}_k{county % 10}"
        if county % 10 == 0:
            paths.append(f"qs.{city}")
        paths.append(county_path)
        paths.extend(f"{county_path}.{city}_k{county % 10}_t{t}" for t in range(townships))
    return paths


def nomination(rng: random.Random, cadre_id: uuid.UUID, org_code: str) -> CadreNominated:
    """A nomination with a realistic payload (about 550 bytes of JSON)."""
    return CadreNominated(
        cadre_id=cadre_id,
        org_code=org_code,
        full_name=f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
        gender=rng.choice(list(Gender)),
        birth_date=date(rng.randint(1982, 1998), rng.randint(1, 12), rng.randint(1, 28)),
        education=rng.choice(list(Education)[1:]),
        current_position=rng.choice(POSITIONS),
        years_of_service=rng.randint(3, 20),
        grassroots_months=rng.randint(0, 120),
        reason="Recommended by the unit's democratic evaluation and the organization department's inspection",
        user_id=f"user{rng.randint(0, 10**9)}",
        email=f"user{rng.randint(0, 10**9)}@qingshan.example.org",
    )


def follow_up(rng: random.Random, cadre_id: uuid.UUID, step: int) -> Event:
    """A later event of a cadre's life in the registry."""
    if step % 2:
        return MentorAssigned(
            cadre_id=cadre_id,
            mentor=Person(user_id=f"mentor{rng.randint(0, 9999)}", name=f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"),
        )
    return CadreProfileUpdated(
        cadre_id=cadre_id, changes=ProfileChanges(current_position=rng.choice(POSITIONS), years_of_service=step + 5)
    )


def commands(events: int, *, per_command: int = 1, per_cadre: int = 5, seed: int = 11) -> list[Command]:
    """Commands adding up to `events` events: each cadre's history, `per_command` events per append."""
    rng = random.Random(seed)
    paths = org_paths()
    out: list[Command] = []
    cadres = max(1, events // per_cadre)
    for index in range(cadres):
        cadre_id = uuid.uuid5(NAMESPACE, f"{seed}:{index}")
        path = rng.choice(paths)
        history: list[Event] = [nomination(rng, cadre_id, path.rsplit(".", 1)[-1])]
        history += [follow_up(rng, cadre_id, step) for step in range(1, per_cadre)]
        out.extend(
            Command(
                stream_id=f"cadre-{cadre_id}",
                cadre_id=cadre_id,
                org_path=path,
                expected_version=start,
                events=history[start : start + per_command],
            )
            for start in range(0, len(history), per_command)
        )
    # Interleave cadres as real traffic does, keeping each cadre's commands in order.
    return sorted(out, key=lambda c: (c.expected_version, c.cadre_id))


def nomination_body(n: int, org_code: str, reason: str) -> dict[str, object]:
    """The JSON body of a nomination through the registry's HTTP API."""
    return {
        "cadre_id": str(uuid.uuid5(NAMESPACE, f"http:{reason}:{n}")),
        "org_code": org_code,
        "full_name": f"{SURNAMES[n % len(SURNAMES)]} {GIVEN[n % len(GIVEN)]}",
        "gender": "female" if n % 2 else "male",
        "birth_date": date(clock.today().year - 30, 3, 1).isoformat(),  # 29 or 30: within every age limit
        "education": "master",
        "current_position": POSITIONS[n % len(POSITIONS)],
        "years_of_service": 6,
        "grassroots_months": 20,
        "reason": reason,
    }
