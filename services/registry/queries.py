"""The registry's reads: org units and cadres of the actor's subtree, one cadre's history."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel

from contracts.envelope import Actor, Envelope, Role, is_org_path
from contracts.personal import PersonalFile, Sealed
from contracts.registry import Basis, Education, Gender, Person, RetirementReason
from exchange import lrmx
from runtime import clock
from runtime.auth import require_role, require_self_or_scope, subtree_root
from runtime.db import Reader, in_subtree_sql, reading
from runtime.errors import CommandError, GoneError, NotFoundError
from runtime.keystore import KeyStore
from runtime.projection import Recorded
from runtime.store import EventStore
from runtime.summaries import UnitSummaries
from services.registry import rules, statistics
from services.registry.statistics import AGE_BANDS


class OrgUnitView(BaseModel):
    """An org unit and its responsible leader."""

    code: str
    name: str
    level: str
    parent_code: str | None
    path: str
    target_pool_size: int
    leader: Person | None
    version: int


UNIT_NAME = "(SELECT u.name FROM org_units u WHERE u.code = cadres.org_code) AS org_name"
"""The name of a cadre's unit, beside `cadres.*` (a key lookup per row)."""


class CadreView(BaseModel):
    """A cadre's current record in the registry."""

    cadre_id: UUID
    org_code: str
    org_name: str
    """The unit's name, as people know it (the code is for programs)."""
    org_path: str
    full_name: str
    gender: str
    birth_date: date
    birth_date_precision: str
    age: int
    education: str
    current_position: str
    years_of_service: int
    grassroots_months: int
    user_id: str | None
    email: str | None
    status: Literal["in_pool", "retired"]
    nominated_at: datetime
    reason: str
    basis: Basis = Basis.WITHOUT_PROCEDURE
    """What the nomination stands on: an entry procedure (`procedure_id`), one decision without a procedure on
    the record (made before procedures were, or directly), or another system's records (imported)."""
    procedure_id: UUID | None = None
    mentor: Person | None
    retired_reason: RetirementReason | None
    retired_on: date | None
    appointed_to: str | None
    personal_data: Literal["none", "recorded", "erased"] = "none"
    """Whether a personal file is recorded (sealed; read it at `/cadres/{id}/personal-data`)."""
    version: int


@dataclass(frozen=True)
class CadreFilter:
    """Which cadres of a subtree a page or an export lists (None: any)."""

    status: Literal["in_pool", "retired"] | None = "in_pool"
    name: str | None = None
    education: Education | None = None
    has_mentor: bool | None = None
    max_age: int | None = None


IN_POOL: Final = CadreFilter()
"""Every cadre in the pool."""


class CadrePage(BaseModel):
    """One page of cadres; pass `next_cursor` back to get the next."""

    items: list[CadreView]
    next_cursor: str | None


def _person(user_id: Any, name: Any, email: Any, language: Any = "zh") -> Person | None:
    if user_id is None:
        return None
    return Person(user_id=user_id, name=name, email=email, language=language or "zh")


def _encode_cursor(org_path: str, cadre_id: UUID) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([org_path, str(cadre_id)])).decode()


def _decode_cursor(cursor: str) -> tuple[str, UUID]:
    try:
        org_path, cadre_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not (isinstance(org_path, str) and is_org_path(org_path) and isinstance(cadre_id, str)):
            raise ValueError(cursor)  # noqa: TRY301 - told as any other malformed cursor
        return org_path, UUID(cadre_id)
    except (ValueError, TypeError) as error:
        msg = "cursor is not one this API gave out"
        raise CommandError(msg) from error


class StatusCounts(BaseModel):
    """How many cadres of a subtree are in the pool, and how many left it."""

    in_pool: int
    retired: int


class UnitHealth(BaseModel):
    """A unit's own pool against its target size."""

    code: str
    name: str
    level: str
    in_pool: int
    target: int


class Structure(BaseModel):
    """The make-up of a subtree's pool (cadres in the pool only), and each unit's pool against its target."""

    root: str
    in_pool: int
    average_age: float | None
    by_gender: dict[str, int]
    by_education: dict[str, int]
    by_age_band: dict[str, int]
    by_level: dict[str, int]
    units: list[UnitHealth]


class GrantView(BaseModel):
    """Who may act where, with which role."""

    user_id: str
    subject: str
    name: str
    org_code: str
    org_path: str
    role: str
    version: int


class Me(BaseModel):
    """The actor a token stands for, with the names a screen shows."""

    user: str
    name: str
    role: str
    org_path: str
    org_code: str
    org_name: str


def _personal_status(row: Any) -> Literal["none", "recorded", "erased"]:
    if row["personal_erased_at"] is not None:
        return "erased"
    return "none" if row["personal_sealed"] is None else "recorded"


PERSONAL_DATA_READERS: Final = (Role.ORGANIZER, Role.AUDITOR)
"""Who reads personal files and appointment forms (of their subtree): not viewers (ADR 0013)."""


class RegistryQueries:
    """Reads over the registry's own tables and event store."""

    def __init__(
        self, pool: Reader, store: EventStore, keystore: KeyStore | None = None, *, counts: UnitSummaries
    ) -> None:
        self._pool = pool
        self._store = store
        self._keystore = keystore
        self._counts = counts  # today's pool per unit (statistics.pool_counts), read by the system

    async def personal_data(self, actor: Actor, cadre_id: UUID) -> PersonalFile:
        """A cadre's personal file, opened with the cadre's key (organizers and auditors of the cadre's subtree)."""
        require_role(actor, *PERSONAL_DATA_READERS)
        row = await self._pool.fetchrow(
            "SELECT org_path, personal_sealed, personal_erased_at FROM cadres WHERE cadre_id = $1", cadre_id
        )
        if row is None or not actor.covers(row["org_path"]):
            msg = f"cadre {cadre_id} not found"
            raise NotFoundError(msg)
        if row["personal_erased_at"] is not None:
            msg = f"the personal data of cadre {cadre_id} was erased"
            raise GoneError(msg)
        if row["personal_sealed"] is None:
            msg = f"no personal data is recorded for cadre {cadre_id}"
            raise NotFoundError(msg)
        if self._keystore is None:  # pragma: no cover - wiring
            msg = "the registry runs without its key store"
            raise RuntimeError(msg)
        plaintext = await self._keystore.open(cadre_id, Sealed.model_validate_json(row["personal_sealed"]))
        if plaintext is None:
            msg = f"the key of cadre {cadre_id} is no longer held here"
            raise GoneError(msg)
        return PersonalFile.model_validate_json(plaintext)

    async def appointment_form(self, actor: Actor, cadre_id: UUID) -> lrmx.Form:
        """A cadre's appointment form filled from the records (organizers and auditors of its subtree).

        After erasure (or where the key is not held) the personal boxes stay empty: the form shows
        what the records still say (name, post, education, grades, postings).
        """
        require_role(actor, *PERSONAL_DATA_READERS)
        row = await self._pool.fetchrow("SELECT * FROM cadres WHERE cadre_id = $1", cadre_id)
        if row is None or not actor.covers(row["org_path"]):
            msg = f"cadre {cadre_id} not found"
            raise NotFoundError(msg)
        personal = None
        if row["personal_sealed"] is not None and row["personal_erased_at"] is None and self._keystore is not None:
            plaintext = await self._keystore.open(cadre_id, Sealed.model_validate_json(row["personal_sealed"]))
            personal = None if plaintext is None else PersonalFile.model_validate_json(plaintext)
        grades = await self._pool.fetch(
            "SELECT DISTINCT ON (c.ends_on) extract(year FROM c.ends_on)::int AS year, g.grade"
            " FROM form_grades g JOIN form_cycles c USING (cycle_id)"
            " WHERE g.cadre_id = $1 AND NOT g.superseded AND c.period = 'annual'"
            " ORDER BY c.ends_on",
            cadre_id,
        )
        postings = await self._pool.fetch(
            "SELECT kind, host_unit, position, starts_on, ended_on FROM form_postings WHERE cadre_id = $1"
            " ORDER BY starts_on",
            cadre_id,
        )
        return lrmx.fill(
            full_name=row["full_name"],
            gender=Gender(row["gender"]),
            birth_date=row["birth_date"],
            current_position=row["current_position"],
            education=Education(row["education"]),
            personal=personal,
            grades=[lrmx.AnnualGrade(r["year"], r["grade"]) for r in grades],
            postings=[
                lrmx.PostingLine(r["starts_on"], r["ended_on"], r["kind"], r["host_unit"], r["position"])
                for r in postings
            ],
        )

    async def org_units(self, actor: Actor, under: str | None, depth: int | None = None) -> list[OrgUnitView]:
        """The units of a subtree (default: the actor's), parents before children; `depth` levels below it at most."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        deepest = root.count(".") + (depth if depth is not None else 1000)
        rows = await self._pool.fetch(
            f"SELECT * FROM org_units WHERE {in_subtree_sql('path', '$1')}"  # noqa: S608 - fixed SQL
            " AND length(path) - length(replace(path, '.', '')) <= $2 ORDER BY path",
            root,
            deepest,
        )
        return [self._unit(row) for row in rows]

    async def org_unit(self, actor: Actor, code: str) -> OrgUnitView:
        """One unit of the actor's subtree."""
        await subtree_root(self._pool, actor, code, table="org_units")
        row = await self._pool.fetchrow("SELECT * FROM org_units WHERE code = $1", code)
        return self._unit(row)

    @staticmethod
    def _unit(row: Any) -> OrgUnitView:
        return OrgUnitView(
            code=row["code"],
            name=row["name"],
            level=row["level"],
            parent_code=row["parent_code"],
            path=row["path"],
            target_pool_size=row["target_pool_size"],
            leader=_person(row["leader_user_id"], row["leader_name"], row["leader_email"], row["leader_language"]),
            version=row["version"],
        )

    async def cadre(self, actor: Actor, cadre_id: UUID) -> CadreView:
        """One cadre of the actor's subtree (a cadre's own grant: themselves only)."""
        row = await self._pool.fetchrow(f"SELECT *, {UNIT_NAME} FROM cadres WHERE cadre_id = $1", cadre_id)  # noqa: S608 - a fixed clause
        if row is None:
            msg = f"cadre {cadre_id} not found"
            raise NotFoundError(msg)
        require_self_or_scope(actor, cadre_id, row["org_path"], f"cadre {cadre_id}")
        return self._cadre(row, clock.today())

    async def _selection(
        self, actor: Actor, under: str | None, filters: CadreFilter, cursor: str | None
    ) -> tuple[list[str], list[Any], date]:
        """The WHERE clauses and their arguments of a filtered subtree, and the day ages are computed on."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        where = [in_subtree_sql("org_path", "$1")]
        args: list[Any] = [root]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if filters.status is not None:
            where.append(f"status = {arg(filters.status)}")
        if filters.name:
            pattern = "%" + filters.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(f"full_name ILIKE {arg(pattern)}")
        if filters.education is not None:
            where.append(f"education = {arg(filters.education.value)}")
        if filters.has_mentor is not None:
            where.append("mentor_user_id IS NOT NULL" if filters.has_mentor else "mentor_user_id IS NULL")
        today = clock.today()
        if filters.max_age is not None:
            oldest = rules.last_birth_date_older_than(filters.max_age, today)
            where.append(f"birth_date > {arg(oldest)}")
        if cursor:
            after_path, after_id = _decode_cursor(cursor)
            where.append(f"(org_path, cadre_id) > ({arg(after_path)}, {arg(after_id)})")
        return where, args, today

    async def cadres(
        self,
        actor: Actor,
        *,
        under: str | None = None,
        filters: CadreFilter = IN_POOL,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CadrePage:
        """Cadres of a subtree, unit by unit, filtered, one page at a time."""
        where, args, today = await self._selection(actor, under, filters, cursor)
        sql = (
            f"SELECT *, {UNIT_NAME} FROM cadres WHERE {' AND '.join(where)}"  # noqa: S608 - clauses are fixed text, values are bound
            f" ORDER BY org_path, cadre_id LIMIT ${len(args) + 1}"
        )
        rows = await self._pool.fetch(sql, *args, limit + 1)
        items = [self._cadre(row, today) for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = _encode_cursor(items[-1].org_path, items[-1].cadre_id) if more and items else None
        return CadrePage(items=items, next_cursor=next_cursor)

    async def all_cadres(
        self,
        actor: Actor,
        *,
        under: str | None = None,
        filters: CadreFilter = IN_POOL,
    ) -> AsyncIterator[CadreView]:
        """Every cadre of a filtered subtree, streamed from a server-side cursor (for exports).

        The filter is checked now (an unknown unit answers 404 before any byte is sent).
        """
        where, args, today = await self._selection(actor, under, filters, None)
        sql = f"SELECT *, {UNIT_NAME} FROM cadres WHERE {' AND '.join(where)} ORDER BY org_path, cadre_id"  # noqa: S608 - as above
        return self._stream(sql, args, today)

    async def _stream(self, sql: str, args: list[Any], today: date) -> AsyncIterator[CadreView]:
        async with reading(self._pool) as conn:
            async for row in conn.cursor(sql, *args, prefetch=2000):
                yield self._cadre(row, today)

    @staticmethod
    def _cadre(row: Any, today: date) -> CadreView:
        return CadreView(
            cadre_id=row["cadre_id"],
            org_code=row["org_code"],
            org_name=row["org_name"],
            org_path=row["org_path"],
            full_name=row["full_name"],
            gender=row["gender"],
            birth_date=row["birth_date"],
            birth_date_precision=row["birth_date_precision"],
            age=rules.age_on(row["birth_date"], today),
            education=row["education"],
            current_position=row["current_position"],
            years_of_service=row["years_of_service"],
            grassroots_months=row["grassroots_months"],
            user_id=row["user_id"],
            email=row["email"],
            status=row["status"],
            nominated_at=row["nominated_at"],
            reason=row["reason"],
            basis=row["basis"],
            procedure_id=row["procedure_id"],
            mentor=_person(row["mentor_user_id"], row["mentor_name"], row["mentor_email"]),
            retired_reason=row["retired_reason"],
            retired_on=row["retired_on"],
            appointed_to=row["appointed_to"],
            personal_data=_personal_status(row),
            version=row["version"],
        )

    async def structure(self, actor: Actor, under: str | None) -> Structure:
        """Gender, education, age bands and unit levels of a subtree's pool; each unit's pool against its target."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        units = await self._pool.fetch(
            "SELECT code, name, level, path, target_pool_size AS target FROM org_units"  # noqa: S608 - fixed SQL
            f" WHERE {in_subtree_sql('path', '$1')} ORDER BY path",
            root,
        )
        level_of = {u["path"]: u["level"] for u in units}
        total, ages = 0, 0
        own: dict[str, int] = {}
        by: dict[str, dict[str, int]] = {"gender": {}, "education": {}, "age": {}, "level": {}}
        for path, group, category, n, summed in await self._counts.rows(root, clock.today()):
            if not group:
                total += n
                ages += summed
                own[path] = n
                level = level_of.get(path)
                if level is not None:
                    by["level"][level] = by["level"].get(level, 0) + n
            elif group in by:
                by[group][category] = by[group].get(category, 0) + n
        depth = root.count(".") + 1
        return Structure(
            root=root,
            in_pool=total,
            average_age=round(ages / total, 1) if total else None,
            by_gender=by["gender"],
            by_education={e.value: by["education"].get(e.value, 0) for e in Education},
            by_age_band={label: by["age"].get(label, 0) for _, _, label in AGE_BANDS},
            by_level=by["level"],
            units=[
                UnitHealth(
                    code=u["code"], name=u["name"], level=u["level"], target=u["target"], in_pool=own.get(u["path"], 0)
                )
                for u in units
                if u["path"].count(".") <= depth
            ],
        )

    async def statistics(self, actor: Actor, under: str | None, on: date | None) -> statistics.Statistics:
        """The structure statistics of a subtree's pool on a date (default: today), per unit and per level.

        Today's are counted from the projection; a past date's from the registry's events recorded
        by the end of that day (what a replay of that day gives). A date after today is refused.
        """
        root = await subtree_root(self._pool, actor, under, table="org_units")
        today = clock.today()
        day = on or today
        if day > today:
            msg = f"{day} is after today ({today}): there are no statistics of it yet"
            raise CommandError(msg)
        end = clock.start_of(day + timedelta(days=1))
        units = await self._pool.fetch(
            f"SELECT code, name, level, path FROM org_units WHERE {in_subtree_sql('path', '$1')}"  # noqa: S608 - fixed SQL
            " AND registered_at < $2 ORDER BY path",
            root,
            end,
        )
        root_name = next((u["name"] for u in units if u["path"] == root), root.rsplit(".", 1)[-1])
        known = (statistics.Unit(u["code"], u["name"], u["level"]) for u in units)
        if day == today:  # counted by PostgreSQL from the projection, per unit, kept until the unit changes
            code_of = {u["path"]: u["code"] for u in units}
            counted = [
                (code_of.get(path, path), group, category, n, int(summed or 0))
                for path, group, category, n, summed in await self._counts.rows(root, day)
            ]
            return statistics.tally_counted(root, root_name, day, known, counted)
        members = statistics.pool_on(await self._events_before(root, end), root)
        return statistics.tally(root, root_name, day, known, members)

    async def _events_before(self, root: str, end: datetime) -> list[Recorded]:
        """The registry's own events a pool's statistics fold, of a subtree, recorded before `end`, in order."""
        rows = await self._pool.fetch(
            "SELECT body FROM events WHERE (org_path = $1 OR starts_with(org_path, $1 || '.'))"
            " AND event_type = ANY($2::text[]) AND recorded_at < $3 ORDER BY position",
            root,
            list(statistics.EVENT_TYPES),
            end,
        )
        return [Recorded.from_envelope(Envelope.from_bytes(row["body"])) for row in rows]

    async def grants(self, actor: Actor, under: str | None) -> list[GrantView]:
        """The grants of a subtree (default: the actor's), unit by unit."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        rows = await self._pool.fetch(
            f"SELECT * FROM access_grants WHERE {in_subtree_sql('org_path', '$1')} ORDER BY org_path, user_id",  # noqa: S608 - fixed SQL
            root,
        )
        return [GrantView(**dict(row)) for row in rows]

    async def me(self, actor: Actor) -> Me:
        """The actor, its name (from its grant, if it has one) and its unit."""
        name = await self._pool.fetchval("SELECT name FROM access_grants WHERE user_id = $1", actor.user)
        unit = await self._pool.fetchrow("SELECT code, name FROM org_units WHERE path = $1", actor.org_path)
        code = actor.org_path.rsplit(".", 1)[-1]
        return Me(
            user=actor.user,
            name=name or actor.user,
            role=actor.role.value,
            org_path=actor.org_path,
            org_code=unit["code"] if unit else code,
            org_name=unit["name"] if unit else code,
        )

    async def counts(self, actor: Actor, under: str | None) -> StatusCounts:
        """Cadres of a subtree by status."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        row = await self._pool.fetchrow(
            "SELECT coalesce(sum(in_pool), 0)::int AS in_pool, coalesce(sum(retired), 0)::int AS retired"  # noqa: S608 - fixed SQL
            f" FROM cadre_counts WHERE {in_subtree_sql('org_path', '$1')}",
            root,
        )
        assert row is not None  # an aggregate always answers one row
        return StatusCounts(in_pool=row["in_pool"], retired=row["retired"])
