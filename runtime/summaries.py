"""What a query counts of each unit on a day, kept until one of the unit's rows changes (ADR 0046).

A province's statistics count a million rows, yet from one request to the next almost every unit
is as it was. A `UnitSummaries` keeps, per unit and day, the rows its SQL counted of that unit
alone, and counts again only the units whose rows changed since:

- every change to a source table (any statement: the projections' writes, COPY, a restore)
  raises the version of each unit it touched, in the same transaction (`unit_changed`, a
  statement trigger over the statement's transition tables), so no write path can forget it;
- a read takes one snapshot (REPEATABLE READ), recounts the units of the subtree whose kept
  rows are missing or older than their version, keeps those, and returns the subtree's rows,
  all as of that snapshot: what the SQL over every unit would answer at the same instant;
- a row is kept only over an older one (its version only rises), so two readers that counted
  from different snapshots never put an older count back.

Units are keyed by org path (every table of a subtree carries one, with an index on it). The
first read of a day counts every unit of the subtree: the day is part of what is counted (ages,
terms, who held a post that day).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import orjson

from runtime import clock
from runtime.db import Pool, in_subtree_sql, row_security

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS unit_versions (
        org_path  text COLLATE "C" PRIMARY KEY,
        version   bigint NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS unit_summaries (
        summary   text NOT NULL,
        day       date NOT NULL,
        org_path  text COLLATE "C" NOT NULL,
        version   bigint NOT NULL,
        rows      text NOT NULL,
        PRIMARY KEY (summary, day, org_path)
    )
    """,
    # The units a statement touched: `TG_ARGV[0]`, SQL over the transition table `%1$s` (default: its org paths).
    """
    CREATE OR REPLACE FUNCTION unit_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        touched text := coalesce(TG_ARGV[0], 'SELECT org_path FROM %1$s');
        paths text;
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN  -- every unit may have changed
            UPDATE unit_versions SET version = version + 1;
            DELETE FROM unit_summaries;
            RETURN NULL;
        ELSIF TG_OP = 'INSERT' THEN
            paths := format(touched, 'changed_new');
        ELSIF TG_OP = 'DELETE' THEN
            paths := format(touched, 'changed_old');
        ELSE
            paths := format(touched, 'changed_new') || ' UNION ' || format(touched, 'changed_old');
        END IF;
        EXECUTE 'INSERT INTO unit_versions (org_path, version) SELECT DISTINCT org_path, 1 FROM ('
            || paths || ') AS touched (org_path) ORDER BY 1'
            ' ON CONFLICT (org_path) DO UPDATE SET version = unit_versions.version + 1';
        RETURN NULL;
    END $$
    """,
    *row_security("unit_versions", None),
    *row_security("unit_summaries", None),
)
"""The versions, the kept rows and the trigger function; `watched` puts the triggers on a table."""


def watched(table: str, touched: str | None = None) -> tuple[str, ...]:
    """The statement triggers that raise the version of every unit a change to `table` touches.

    By default a row belongs to the unit of its `org_path` (a moved row touches both units);
    `touched` is SQL over the changed rows `%1$s` selecting the org paths of the units they touch.
    """
    argument = "" if touched is None else "'" + touched.replace("'", "''") + "'"
    each = "" if touched is None else f"_{zlib.crc32(touched.encode()):08x}"  # several on one table, each its own
    triggers = {
        "insert": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS changed_new",
        "update": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new",
        "delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS changed_old",
        "truncate": "AFTER TRUNCATE ON {t}",
    }
    return tuple(
        f"CREATE OR REPLACE TRIGGER {table}_units_{name}{each} {rule.format(t=table)}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION unit_changed({argument})"
        for name, rule in triggers.items()
    )


class UnitSummaries:
    """One query's rows per unit and day, counted again only for the units that changed.

    `count_sql` selects the rows of the units whose org paths are `$1` (text[]) on the day `$2`;
    its first column is the row's unit's org path, the others are what is kept (JSON values).
    `units` is the table of the service's units (its `path` column).
    """

    def __init__(self, pool: Pool, name: str, count_sql: str, *, units: str = "units") -> None:
        self._pool = pool
        self._name = f"{name}/{zlib.crc32(count_sql.encode()):08x}"  # counted otherwise, kept apart
        self._count = count_sql
        self._units = units
        self._lock = zlib.crc32(f"unit_summaries:{name}".encode())

    async def rows(self, root: str, day: date) -> list[tuple[Any, ...]]:
        """Every row of every unit in the subtree of `root` (an org path the caller checked), counted on `day`."""
        subtree = in_subtree_sql("u.path", "$1")
        stale_sql = (
            f"SELECT u.path FROM {self._units} u"  # noqa: S608 - our own table and fragments
            " LEFT JOIN unit_versions v ON v.org_path = u.path"
            " LEFT JOIN unit_summaries s ON s.summary = $2 AND s.day = $3 AND s.org_path = u.path"
            f" WHERE {subtree} AND s.version IS DISTINCT FROM coalesce(v.version, 0)"
        )
        async with self._pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                stale = [r["path"] for r in await conn.fetch(stale_sql, root, self._name, day)]
                if not stale:
                    return await self._kept(conn, root, day)
            # Counting again: one counter at a time per summary (a reader waits rather than count twice).
            await conn.execute("SELECT pg_advisory_lock($1)", self._lock)
            try:
                async with conn.transaction(isolation="repeatable_read"):
                    stale = [r["path"] for r in await conn.fetch(stale_sql, root, self._name, day)]
                    if stale:
                        await self._recount(conn, stale, day)
                    return await self._kept(conn, root, day)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", self._lock)

    async def _recount(self, conn: Any, paths: Sequence[str], day: date) -> None:
        # Planned for these units each time: a plan cached for "some units" scans every row of the table.
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        counted: dict[str, list[list[Any]]] = {path: [] for path in paths}
        for row in await conn.fetch(self._count, list(paths), day):
            counted[row[0]].append(list(row[1:]))
        await conn.execute(  # what no day's read will ask for again: other days before today
            "DELETE FROM unit_summaries WHERE day < $1 AND day <> $2", clock.today(), day
        )
        await conn.executemany(
            "INSERT INTO unit_summaries (summary, day, org_path, version, rows)"
            " SELECT $1, $2, $3, coalesce((SELECT version FROM unit_versions WHERE org_path = $3), 0), $4"
            " ON CONFLICT (summary, day, org_path) DO UPDATE SET version = excluded.version, rows = excluded.rows"
            " WHERE unit_summaries.version < excluded.version",
            [(self._name, day, path, orjson.dumps(rows).decode()) for path, rows in counted.items()],
        )

    async def _kept(self, conn: Any, root: str, day: date) -> list[tuple[Any, ...]]:
        subtree = in_subtree_sql("org_path", "$3")
        rows = await conn.fetch(
            f"SELECT org_path, rows FROM unit_summaries WHERE summary = $1 AND day = $2 AND {subtree}",  # noqa: S608
            self._name,
            day,
            root,
        )
        return [(row["org_path"], *kept) for row in rows for kept in orjson.loads(row["rows"])]
