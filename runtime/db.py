"""PostgreSQL access: the pool, connection types, idempotent schema set-up, and row-level security.

Scope is enforced by PostgreSQL too (docs/security.md, ADR 0018). Every table of a service has
row-level security on. The tables are owned by the role that applies the schema
(DATABASE_OWNER_URL); the service works as a login that owns nothing (DATABASE_URL), so it cannot
turn row-level security off, and that is a member of two roles this module creates:

- `cadre_system` holds the privileges of system work (projections, the relay, reactions, sync
  ingest, schedulers, the store's writer), which runs as the login itself. PostgreSQL exempts that
  work explicitly: the login has the BYPASSRLS attribute (the store's COPY and the projections'
  batches need it: PostgreSQL refuses COPY into a table whose policies bind the writer).
- `cadre_actor`: what a request reads on an actor's behalf (`Scoped`): a read-only transaction
  that sets `ROLE cadre_actor` (bound by every policy: it has no BYPASSRLS) and the actor's org path
  and user (`cadre.org_path`, `cadre.user`), so that a query which forgets its filter still sees
  nothing outside the actor's subtree, and can write nothing at all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel

from contracts.envelope import Actor, is_org_path

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

SYSTEM_ROLE: Final = "cadre_system"
ACTOR_ROLE: Final = "cadre_actor"
SCOPE_SETTING: Final = "cadre.org_path"
USER_SETTING: Final = "cadre.user"

_SCOPE = f"current_setting('{SCOPE_SETTING}', true)"
_USER = f"current_setting('{USER_SETTING}', true)"


def in_scope(column: str) -> str:
    """Policy: the row's org path lies in the actor's subtree (nothing when no actor is set)."""
    return f"({column} >= {_SCOPE} AND {column} < {_SCOPE} || '/')"


def in_scope_or_above(column: str) -> str:
    """Policy: the row's org path lies in the actor's subtree or on the way up to the root (programmes, cycles)."""
    return f"({in_scope(column)} OR ({_SCOPE} >= {column} AND {_SCOPE} < {column} || '/'))"


def own_user(column: str) -> str:
    """Policy: the row belongs to the acting user (an inbox, preferences)."""
    return f"({column} = {_USER})"


ROLES: Final = (
    f"""
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SYSTEM_ROLE}') THEN
            CREATE ROLE {SYSTEM_ROLE} NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ACTOR_ROLE}') THEN
            CREATE ROLE {ACTOR_ROLE} NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- another database's service created them meanwhile (roles belong to the server)
    END $$
    """,  # noqa: S608 - our own role names
    f"GRANT USAGE ON SCHEMA public TO {SYSTEM_ROLE}, {ACTOR_ROLE}",
)
"""The two roles a service's working role belongs to (server-wide, created once)."""


def row_security(table: str, actor: str | None) -> tuple[str, ...]:
    """Row-level security of `table`: an actor reads the rows `actor` allows; system work has every privilege.

    `actor` is a policy expression (`in_scope("org_path")`, ...) or None: an actor then sees no row
    (tables of the service's own machinery). Idempotent; a changed policy needs a new name.
    """
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {table} TO {SYSTEM_ROLE}",
        f"GRANT SELECT ON {table} TO {ACTOR_ROLE}",
    ]
    if actor is not None:
        statements.append(_policy(table, "actor_reads", f"FOR SELECT TO {ACTOR_ROLE} USING {actor}"))
    return tuple(statements)


def _policy(table: str, name: str, rule: str) -> str:
    return f"""
    DO $$ BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = '{table}'
            AND policyname = '{name}'
        ) THEN
            CREATE POLICY {name} ON {table} {rule};
        END IF;
    END $$
    """  # noqa: S608 - our own table names and policies


def system_only(*tables: str) -> tuple[str, ...]:
    """Row-level security for tables an actor never reads (the service's own machinery)."""
    return tuple(statement for table in tables for statement in row_security(table, None))


GRANTS: Final = (f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {SYSTEM_ROLE}",)


async def unsecured_tables(conn: Conn) -> list[str]:
    """The tables of the current schema without row-level security (each must declare its scope)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity ORDER BY 1"
    )
    return [row["relname"] for row in rows]


class UnsafeDatabaseRoleError(RuntimeError):
    """The service would work as a role that row-level security does not bind."""


async def check_working_role(pool: Pool, *, development: bool) -> str:
    """The role the service works as, after checking it: a member of both roles, exempt for system work.

    Outside development it must also be no superuser and own no table (it could turn the policies off).
    """
    row = await pool.fetchrow(
        "SELECT current_user AS name, r.rolsuper, r.rolbypassrls,"  # noqa: S608 - our own role names
        f" pg_has_role(current_user, '{SYSTEM_ROLE}', 'MEMBER') AS system,"
        f" pg_has_role(current_user, '{ACTOR_ROLE}', 'MEMBER') AS actor,"
        " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "   WHERE n.nspname = 'public' AND c.relowner = r.oid) AS owned"
        " FROM pg_roles r WHERE r.rolname = current_user"
    )
    assert row is not None
    name = str(row["name"])
    if not (row["system"] and row["actor"]):
        msg = f"DATABASE_URL's role {name} must be a member of {SYSTEM_ROLE} and {ACTOR_ROLE}: GRANT them to it"
        raise UnsafeDatabaseRoleError(msg)
    if not (row["rolsuper"] or row["rolbypassrls"]):
        msg = f"DATABASE_URL's role {name} needs BYPASSRLS for the service's system work: ALTER ROLE {name} BYPASSRLS"
        raise UnsafeDatabaseRoleError(msg)
    if not development and (row["rolsuper"] or row["owned"]):
        msg = (
            f"DATABASE_URL's role {name} is a superuser or owns tables: the service must work as a role that"
            " owns nothing (set DATABASE_OWNER_URL for the schema)"
        )
        raise UnsafeDatabaseRoleError(msg)
    return name


async def grant_membership(owner: Pool, role: str) -> None:
    """Make `role` (the service's working role) a member of the system and actor roles, when the owner may."""
    member = await owner.fetchrow(
        f"SELECT pg_has_role($1, '{SYSTEM_ROLE}', 'MEMBER') AND pg_has_role($1, '{ACTOR_ROLE}', 'MEMBER') AS is",
        role,
    )
    if member is not None and not member["is"]:
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # then the operator grants it (checked later)
            await owner.execute(f'GRANT {SYSTEM_ROLE}, {ACTOR_ROLE} TO "{role}"')


_MIGRATION_LOCK = 7_262_001  # advisory lock key: one process sets up a schema at a time


async def _no_reset_query(_: asyncpg.Connection[asyncpg.Record]) -> None:
    """Return a connection to the pool without asyncpg's reset query.

    Open transactions and listener callbacks are still cleared by asyncpg. The
    reset query (RESET ALL, UNLISTEN *, unlock advisory locks) is one more round
    trip per acquire; it took about 7% of the registry's CPU at 500 commands/s.
    Our code leaves no session state behind: no SET, no temporary tables, and the
    relay releases its own lock and LISTEN.

    A connection still mid-operation (a query left running by a task that gave up on it, or
    one a lost connection left so) is not handed out again: the next request would meet asyncpg's
    "another operation is in progress". Raising here makes the pool terminate it (and open a new
    one); the error says the same as asyncpg would, so the request that left it answers 503.
    """
    section = getattr(_, "_stmt_exclusive_section", None)  # asyncpg's guard of one operation at a time
    if getattr(section, "_acquired", 0):
        msg = "cannot release the connection: another operation is in progress (it is closed)"
        raise asyncpg.InterfaceError(msg)


async def create_pool(dsn: str, *, max_size: int = 10) -> Pool:
    """A connection pool; each connection works in UTC, without JIT compilation.

    PostgreSQL compiles a query whose estimated cost passes `jit_above_cost`; for our short
    queries that compile took longer than the query (a unit's strength: 0.5 s of JIT for 30 ms).
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        server_settings={"timezone": "UTC", "application_name": "cadre-pool", "jit": "off"},
        reset=_no_reset_query,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only without awaiting
        msg = "asyncpg did not create a pool"
        raise RuntimeError(msg)
    return pool


async def ensure_database(dsn: str) -> None:
    """Create the database `dsn` names if it does not exist (needs CREATEDB on its server)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        base, _, query = dsn.partition("?")
        server, _, name = base.rpartition("/")
        admin = await asyncpg.connect(f"{server}/postgres" + (f"?{query}" if query else ""))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another process made it meanwhile
        finally:
            await admin.close()
    else:
        await conn.close()


async def apply_schema(pool: Pool, statements: Sequence[str], *, secured: bool = False) -> None:
    """Run idempotent DDL (CREATE ... IF NOT EXISTS) under an advisory lock, in one transaction.

    The roles and grants of row-level security come first and last. With `secured`, a table left
    without it fails the whole (each table must declare who reads it: `row_security`).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        for statement in [*ROLES, *statements, *GRANTS]:
            await conn.execute(statement)
        if secured:
            unsecured = await unsecured_tables(conn)
            if unsecured:
                msg = f"tables without row-level security (declare their scope): {', '.join(unsecured)}"
                raise RuntimeError(msg)


def in_subtree_sql(column: str, param: str) -> str:
    """SQL true when `column` (an org path, COLLATE "C") lies in the subtree rooted at `param`.

    One range, so a btree index on the path serves it and yields rows in path order:
    the unit `a.b` and its descendants `a.b.*` are exactly the paths in `[a.b, a.b/)`,
    because every other character a code may hold (`0-9`, `a-z`, `_`) sorts after `/`
    and `.` sorts before it.
    """
    return f"({column} >= {param} AND {column} < {param} || '/')"


View = TypeVar("View", bound=BaseModel)


def row_view(model: type[View], row: Any, **extra: Any) -> View:
    """A `model` of a row: each field the model names that the row has, and `extra` (which wins over the row)."""
    return model(**{k: row[k] for k in model.model_fields if k in row.keys() and k not in extra}, **extra)  # noqa: SIM118


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on; control characters never reach here)."""
    if "\x00" in text:
        msg = "a NUL in a setting"
        raise ValueError(msg)
    return "'" + text.replace("'", "''") + "'"


class Scoped:
    """The database as one actor sees it: read-only transactions as `cadre_actor`, with the actor's subtree set.

    A query here sees only the rows the tables' policies allow the actor (its subtree; its own inbox),
    whatever its own WHERE says. Every request's reads go through one (`runtime.service.ActorDB`).
    """

    def __init__(self, pool: Pool, actor: Actor) -> None:
        if not is_org_path(actor.org_path):
            msg = f"not an org path: {actor.org_path!r}"
            raise ValueError(msg)
        self.actor = actor
        self._pool = pool
        self._begin = (
            f"BEGIN READ ONLY; SET LOCAL ROLE {ACTOR_ROLE};"
            f" SELECT set_config('{SCOPE_SETTING}', {_literal(actor.org_path)}, true),"
            f" set_config('{USER_SETTING}', {_literal(actor.user)}, true)"
        )

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        """A connection inside the actor's transaction (for cursors and several queries)."""
        async with self._pool.acquire() as conn:
            await conn.execute(self._begin)
            try:
                yield conn
            finally:
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")  # read only: nothing to keep

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of `query`, as the actor may see them."""
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `query`, as the actor may see it."""
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first value of `query`, as the actor may see it."""
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)


Reader: TypeAlias = "Pool | Scoped"
"""Where a query reads: the system's pool, or an actor's view of it."""


@contextlib.asynccontextmanager
async def reading(reader: Reader) -> AsyncIterator[Conn]:
    """A connection in a read-only transaction of `reader` (an actor's, or the system's): for cursors."""
    if isinstance(reader, Scoped):
        async with reader.acquire() as conn:
            yield conn
    else:
        async with reader.acquire() as conn, conn.transaction(readonly=True):
            yield conn


UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,  # ConnectionError and its kin: the database's socket refused, reset or closed
    asyncpg.PostgresConnectionError,  # connection lost, or a commit's outcome unknown
    asyncpg.exceptions.AdminShutdownError,  # the server shutting down
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # the server starting up
)
"""Errors that say the database was out of reach, not that the request was wrong or the code broken."""
_LOST = ("connection is closed", "released back to the pool")
"""What asyncpg's InterfaceError says when its connection was lost under it (the pool detaches it)."""


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the database was out of reach (try again later), not that the work was wrong."""
    if isinstance(error, UNREACHABLE):
        return True
    return isinstance(error, asyncpg.InterfaceError) and any(words in str(error) for words in _LOST)


ROLLED_BACK: tuple[type[Exception], ...] = (
    asyncpg.exceptions.SerializationError,  # 40001: the server rolled the transaction back
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01: likewise
    asyncpg.exceptions.TooManyConnectionsError,  # 53300: nothing began
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: a lock timeout
)
"""Transient conditions in which the server did nothing: the same request may simply be sent again."""
_BUSY = re.compile(r"another operation (\(\d+\) )?is (in progress|cancelling)")
"""What asyncpg says of a connection still mid-operation (left so by a loss, handed out again by the pool)."""


def busy(error: BaseException) -> bool:
    """Whether `error` is asyncpg refusing a connection left mid-operation (InterfaceError or InternalClientError)."""
    return isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError) and bool(_BUSY.search(str(error)))


def transient(error: BaseException) -> bool:
    """Whether `error` is a passing condition of the database (answer 503 with Retry-After), not a wrong request.

    The database out of reach (`unreachable`), a connection left mid-operation (`busy`), or a
    transaction the server refused or rolled back for a moment (`ROLLED_BACK`). The one home of
    this rule: the HTTP layer's answer and the consumers' retries both ask it.
    """
    return unreachable(error) or busy(error) or isinstance(error, ROLLED_BACK)
