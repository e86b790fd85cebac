"""The subtree range of `runtime.db.in_subtree_sql` against real PostgreSQL collation."""

from __future__ import annotations

import asyncpg

from runtime.db import in_subtree_sql
from tests.support import DatabaseFactory


async def test_the_range_holds_the_unit_and_its_descendants_only(database: DatabaseFactory) -> None:
    conn = await asyncpg.connect(await database("subtree"))
    try:
        await conn.execute('CREATE TABLE units (path text COLLATE "C" PRIMARY KEY)')
        paths = ["qs", "qs.bh", "qs.bh.ly", "qs.bh.ly.t1", "qs.bh_2", "qs.bh0", "qs.bhx", "qs.bg", "qs.bi", "qr.bh"]
        await conn.executemany("INSERT INTO units VALUES ($1)", [(p,) for p in paths])
        sql = f"SELECT path FROM units WHERE {in_subtree_sql('path', '$1')} ORDER BY path"
        assert [r[0] for r in await conn.fetch(sql, "qs.bh")] == ["qs.bh", "qs.bh.ly", "qs.bh.ly.t1"]
        assert [r[0] for r in await conn.fetch(sql, "qs")] == sorted(p for p in paths if p.startswith("qs"))
        assert [r[0] for r in await conn.fetch(sql, "qs.bh.ly.t1")] == ["qs.bh.ly.t1"]
    finally:
        await conn.close()
