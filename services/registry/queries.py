"""The registry's reads: org units and cadres of the actor's subtree, one cadre's history."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any, Final, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel

from contracts.envelope import Actor, Envelope, Role
from contracts.personal import PersonalFile, Sealed
from contracts.registry import Education, Gender, Person, RetirementReason
from exchange import lrmx
from runtime import clock
from runtime.auth import require_role, subtree_root
from runtime.db import Pool, in_subtree_sql
from runtime.errors import CommandError, GoneError, NotFoundError
from runtime.keystore import KeyStore
from runtime.store import EventStore
from services.registry import rules


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


class CadreView(BaseModel):
    """A cadre's current record in the registry."""

    cadre_id: UUID
    org_code: str
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
    mentor: Person | None
    retired_reason: RetirementReason | None
    retired_on: date | None
    appointed_to: str | None
    personal_data: Literal["none", "recorded", "erased"] = "none"
    """Whether a personal file is recorded (sealed; read it at `/cadres/{id}/personal-data`)."""
    version: int


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
        return str(org_path), UUID(cadre_id)
    except (ValueError, TypeError) as error:
        msg = "cursor is not one this API gave out"
        raise CommandError(msg) from error


def _personal_status(row: Any) -> Literal["none", "recorded", "erased"]:
    if row["personal_erased_at"] is not None:
        return "erased"
    return "none" if row["personal_sealed"] is None else "recorded"


PERSONAL_DATA_READERS: Final = (Role.ORGANIZER, Role.AUDITOR)
"""Who reads personal files and appointment forms (of their subtree): not viewers (ADR 0013)."""


class RegistryQueries:
    """Reads over the registry's own tables and event store."""

    def __init__(self, pool: Pool, store: EventStore, keystore: KeyStore | None = None) -> None:
        self._pool = pool
        self._store = store
        self._keystore = keystore

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

    async def org_units(self, actor: Actor, under: str | None) -> list[OrgUnitView]:
        """The units of a subtree (default: the actor's), parents before children."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        rows = await self._pool.fetch(
            f"SELECT * FROM org_units WHERE {in_subtree_sql('path', '$1')} ORDER BY path",  # noqa: S608 - fixed SQL
            root,
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
        """One cadre of the actor's subtree."""
        row = await self._pool.fetchrow("SELECT * FROM cadres WHERE cadre_id = $1", cadre_id)
        if row is None or not actor.covers(row["org_path"]):
            msg = f"cadre {cadre_id} not found"
            raise NotFoundError(msg)
        return self._cadre(row, clock.today())

    async def _selection(
        self,
        actor: Actor,
        *,
        under: str | None,
        status: Literal["in_pool", "retired"] | None,
        name: str | None,
        education: Education | None,
        has_mentor: bool | None,
        max_age: int | None,
        cursor: str | None,
    ) -> tuple[list[str], list[Any], date]:
        """The WHERE clauses and their arguments of a filtered subtree, and the day ages are computed on."""
        root = await subtree_root(self._pool, actor, under, table="org_units")
        where = [in_subtree_sql("org_path", "$1")]
        args: list[Any] = [root]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if status is not None:
            where.append(f"status = {arg(status)}")
        if name:
            pattern = "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(f"full_name ILIKE {arg(pattern)}")
        if education is not None:
            where.append(f"education = {arg(education.value)}")
        if has_mentor is not None:
            where.append("mentor_user_id IS NOT NULL" if has_mentor else "mentor_user_id IS NULL")
        today = clock.today()
        if max_age is not None:
            oldest = rules.last_birth_date_older_than(max_age, today)
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
        status: Literal["in_pool", "retired"] | None = "in_pool",
        name: str | None = None,
        education: Education | None = None,
        has_mentor: bool | None = None,
        max_age: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CadrePage:
        """Cadres of a subtree, unit by unit, filtered, one page at a time."""
        where, args, today = await self._selection(
            actor,
            under=under,
            status=status,
            name=name,
            education=education,
            has_mentor=has_mentor,
            max_age=max_age,
            cursor=cursor,
        )
        sql = (
            f"SELECT * FROM cadres WHERE {' AND '.join(where)}"  # noqa: S608 - clauses are fixed text, values are bound
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
        status: Literal["in_pool", "retired"] | None = "in_pool",
        name: str | None = None,
        education: Education | None = None,
        has_mentor: bool | None = None,
        max_age: int | None = None,
    ) -> AsyncIterator[CadreView]:
        """Every cadre of a filtered subtree, streamed from a server-side cursor (for exports).

        The filter is checked now (an unknown unit answers 404 before any byte is sent).
        """
        where, args, today = await self._selection(
            actor,
            under=under,
            status=status,
            name=name,
            education=education,
            has_mentor=has_mentor,
            max_age=max_age,
            cursor=None,
        )
        sql = f"SELECT * FROM cadres WHERE {' AND '.join(where)} ORDER BY org_path, cadre_id"  # noqa: S608 - as above
        return self._stream(sql, args, today)

    async def _stream(self, sql: str, args: list[Any], today: date) -> AsyncIterator[CadreView]:
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            async for row in conn.cursor(sql, *args, prefetch=2000):
                yield self._cadre(row, today)

    @staticmethod
    def _cadre(row: Any, today: date) -> CadreView:
        return CadreView(
            cadre_id=row["cadre_id"],
            org_code=row["org_code"],
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
            mentor=_person(row["mentor_user_id"], row["mentor_name"], row["mentor_email"]),
            retired_reason=row["retired_reason"],
            retired_on=row["retired_on"],
            appointed_to=row["appointed_to"],
            personal_data=_personal_status(row),
            version=row["version"],
        )

    async def history(self, actor: Actor, cadre_id: UUID) -> list[Envelope]:
        """Every registry event about a cadre, with its full envelope."""
        await self.cadre(actor, cadre_id)
        return await self._store.read_cadre(cadre_id)
