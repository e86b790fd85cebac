"""Counts kept per unit (runtime.summaries) against real PostgreSQL: every write path counts again, nothing stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from runtime import clock, db, summaries
from tests.support import DatabaseFactory

UNITS = ("qs", "qs.a", "qs.a.x", "qs.b")
SCHEMA = (
    'CREATE TABLE IF NOT EXISTS units (code text PRIMARY KEY, path text COLLATE "C" NOT NULL)',
    'CREATE TABLE IF NOT EXISTS members (id int PRIMARY KEY, org_path text COLLATE "C" NOT NULL, kind text NOT NULL)',
    'CREATE TABLE IF NOT EXISTS holders (id int PRIMARY KEY, org_path text COLLATE "C" NOT NULL, member int NOT NULL)',
    *summaries.SCHEMA,
    *summaries.watched("members"),
    # A change to a member touches the units where the member holds something, not only its own.
    *summaries.watched("holders"),
    *summaries.watched("members", "SELECT h.org_path FROM holders h JOIN %1$s r ON r.id = h.member"),
)
COUNT = (
    "SELECT org_path, kind, count(*) FROM members"
    " WHERE org_path = ANY($1::text[]) AND $2::date IS NOT NULL GROUP BY 1, 2"  # every day alike
)
DIRECT = "SELECT org_path, kind, count(*) FROM members WHERE org_path >= $1 AND org_path < $1 || '/' GROUP BY 1, 2"


@pytest.fixture
async def pool(database: DatabaseFactory) -> AsyncIterator[db.Pool]:
    created = await db.create_pool(await database("summaries"), max_size=4)
    try:
        await db.apply_schema(created, SCHEMA)
        await created.executemany("INSERT INTO units VALUES ($1, $2)", [(p.rsplit(".", 1)[-1], p) for p in UNITS])
        yield created
    finally:
        await created.close()


async def _kept(counts: summaries.UnitSummaries, root: str) -> set[tuple[object, ...]]:
    return set(await counts.rows(root, clock.today()))


async def _direct(pool: db.Pool, root: str) -> set[tuple[object, ...]]:
    return {tuple(r) for r in await pool.fetch(DIRECT, root)}


async def test_what_is_kept_follows_every_write_to_the_units(pool: db.Pool) -> None:
    counts = summaries.UnitSummaries(pool, "members", COUNT)
    await pool.executemany(
        "INSERT INTO members VALUES ($1, $2, $3)", [(i, UNITS[i % 4], "ab"[i % 2]) for i in range(40)]
    )
    assert await _kept(counts, "qs") == await _direct(pool, "qs") != set()
    assert await _kept(counts, "qs.a") == await _direct(pool, "qs.a")  # a subtree: its units only
    assert {row[0] for row in await _kept(counts, "qs.a")} == {"qs.a", "qs.a.x"}
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("members", records=[(100, "qs.b", "c")], columns=["id", "org_path", "kind"])
    assert ("qs.b", "c", 1) in await _kept(counts, "qs")  # COPY is a write like any other
    await pool.execute("UPDATE members SET org_path = 'qs.a.x' WHERE id = 100")  # moved: both units change
    await pool.execute("DELETE FROM members WHERE org_path = 'qs' AND kind = 'a'")
    assert await _kept(counts, "qs") == await _direct(pool, "qs")
    await pool.execute("TRUNCATE members")
    assert await _kept(counts, "qs") == set()


async def test_a_change_elsewhere_reaches_the_units_it_touches(pool: db.Pool) -> None:
    held = summaries.UnitSummaries(
        pool,
        "held",
        "SELECT h.org_path, m.kind, count(*) FROM holders h JOIN members m ON m.id = h.member"
        " WHERE h.org_path = ANY($1::text[]) AND $2::date IS NOT NULL GROUP BY 1, 2",
    )
    await pool.execute("INSERT INTO members VALUES (1, 'qs.a.x', 'a')")
    await pool.execute("INSERT INTO holders VALUES (1, 'qs.b', 1)")  # a member of qs.a.x holds a seat in qs.b
    assert await _kept(held, "qs") == {("qs.b", "a", 1)}
    await pool.execute("UPDATE members SET kind = 'b' WHERE id = 1")
    assert await _kept(held, "qs") == {("qs.b", "b", 1)}


async def test_each_day_is_counted_for_itself_and_days_gone_by_are_let_go(pool: db.Pool) -> None:
    since = summaries.UnitSummaries(
        pool, "since", "SELECT path, $2::date - date '2000-01-01' FROM units WHERE path = ANY($1::text[])"
    )
    today = clock.today()
    before = today - timedelta(days=3)
    assert await since.rows("qs.b", before) == [("qs.b", (before - date(2000, 1, 1)).days)]
    assert await since.rows("qs.b", today) == [("qs.b", (today - date(2000, 1, 1)).days)]
    days = {r["day"] for r in await pool.fetch("SELECT DISTINCT day FROM unit_summaries")}
    assert days == {today}  # counting today let go of the days before it


async def test_readers_at_once_count_once_and_agree(pool: db.Pool) -> None:
    counts = summaries.UnitSummaries(pool, "members", COUNT)
    await pool.executemany("INSERT INTO members VALUES ($1, $2, 'a')", [(i, UNITS[i % 4]) for i in range(20)])
    answers = await asyncio.gather(*(_kept(counts, "qs") for _ in range(4)))
    direct = await _direct(pool, "qs")
    assert all(answer == direct for answer in answers)
    assert await pool.fetchval("SELECT count(*) FROM unit_summaries") == len(UNITS)
