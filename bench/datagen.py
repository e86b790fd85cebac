"""A large organization, quickly and reproducibly: a province of 100 counties and its cadres.

`load_registry_tables` writes the registry's query tables (org units, cadres) with
COPY, as the registry's projection holds them after replaying its events: for
measuring reads at scale. The write path (events through the store, the relay, the
projection and rebuilds) is measured with real events (bench/workload.py).
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from bench.workload import NAMESPACE, org_paths
from runtime import clock, db
from services.registry.demo import GIVEN, POSITIONS, SURNAMES
from services.registry.projection import SCHEMA as REGISTRY_SCHEMA

LEVELS = {1: "provincial", 2: "municipal", 3: "county", 4: "township"}


def units(counties: int = 100, townships: int = 8) -> list[tuple[str, str, str, str | None, str]]:
    """(code, name, level, parent code, path) of every unit, parents first."""
    out = []
    for path in org_paths(counties, townships):
        parts = path.split(".")
        out.append((parts[-1], f"Unit {parts[-1]}", LEVELS[len(parts)], parts[-2] if len(parts) > 1 else None, path))
    return out


async def load_registry_tables(dsn: str, *, cadres: int, seed: int = 5, batch: int = 50_000) -> int:
    """Fill the registry's tables with `cadres` cadres spread over the province; return the unit count."""
    pool = await db.create_pool(dsn, max_size=2)
    try:
        await db.apply_schema(pool, REGISTRY_SCHEMA)
        rng = random.Random(seed)
        tree = units()
        now = clock.now()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "org_units",
                records=[(code, name, level, parent, path, 10, now, 1) for code, name, level, parent, path in tree],
                columns=[
                    "code",
                    "name",
                    "level",
                    "parent_code",
                    "path",
                    "target_pool_size",
                    "registered_at",
                    "version",
                ],
            )
            # Most cadres sit in counties and townships, as in a real province.
            weights = [{1: 1, 2: 20, 3: 60, 4: 12}[len(path.split("."))] for *_, path in tree]
            for start in range(0, cadres, batch):
                rows = [
                    _cadre(rng, start + i, rng.choices(tree, weights)[0], now)
                    for i in range(min(batch, cadres - start))
                ]
                await conn.copy_records_to_table("cadres", records=rows, columns=_CADRE_COLUMNS)
            await conn.execute(
                "INSERT INTO cadre_counts SELECT org_path, count(*) FILTER (WHERE status = 'in_pool'),"
                " count(*) FILTER (WHERE status = 'retired') FROM cadres GROUP BY org_path"
            )
            await conn.execute("ANALYZE cadres")
        return len(tree)
    finally:
        await pool.close()


_CADRE_COLUMNS = [
    "cadre_id",
    "org_code",
    "org_path",
    "full_name",
    "gender",
    "birth_date",
    "birth_date_precision",
    "education",
    "current_position",
    "years_of_service",
    "grassroots_months",
    "user_id",
    "email",
    "language",
    "reason",
    "status",
    "nominated_at",
    "mentor_user_id",
    "mentor_name",
    "version",
    "updated_at",
]


def _cadre(
    rng: random.Random, index: int, unit: tuple[str, str, str, str | None, str], now: datetime
) -> tuple[Any, ...]:
    code, _, _, _, path = unit
    nominated = now - timedelta(days=rng.randint(30, 2000))
    user = f"u{index}"
    mentored = rng.random() < 0.8
    return (
        uuid.uuid5(NAMESPACE, f"gen:{index}"),
        code,
        path,
        f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
        rng.choice(("female", "male")),
        date(rng.randint(1980, 1999), rng.randint(1, 12), rng.randint(1, 28)),
        "day",
        rng.choice(("college", "bachelor", "bachelor", "master", "doctorate")),
        rng.choice(POSITIONS),
        rng.randint(3, 25),
        rng.randint(0, 120),
        user,
        f"{user}@qingshan.example.org",
        "zh",
        "generated",
        "in_pool" if rng.random() < 0.9 else "retired",
        nominated,
        f"m{index % 5000}" if mentored else None,
        f"Mentor {index % 5000}" if mentored else None,
        3,
        nominated,
    )
