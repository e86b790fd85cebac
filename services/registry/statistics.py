"""The structure statistics of the pool as of a date (pure functions).

Each cadre in the pool on the date is counted, per unit and per level of its unit, by gender, age
band (and the women in each band), ethnicity (Han or minority), party membership and its years,
full-time and in-service education, rank and reserve kind: the table organization departments
file (情况统计表), one sheet per level.

The cadres come from the projection (today) or from folding the registry's events recorded up to
the end of the date (`pool_on`): both are tallied by `tally`, so a past date's figures are what a
replay of the events recorded by then gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Final, TypeAlias
from uuid import UUID

from pydantic import BaseModel

from contracts.envelope import in_subtree
from contracts.registry import (
    CATEGORY_FIELDS,
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Education,
    Ethnicity,
    Gender,
    OrgLevel,
    PartyMembership,
)
from runtime.db import Pool
from runtime.projection import Recorded
from runtime.summaries import UnitSummaries
from services.registry import rules

NOT_RECORDED: Final = "not_recorded"
"""The category of a cadre for whom a field was never recorded (every event before the field existed)."""

AGE_BANDS: Final = (
    (0, 30, "under 30"),
    (30, 35, "30-34"),
    (35, 40, "35-39"),
    (40, 45, "40-44"),
    (45, 200, "45 and over"),
)
"""Full years of age on the date: [low, high)."""

PARTY_YEARS: Final = (
    (0, 5, "under 5 years"),
    (5, 10, "5-9 years"),
    (10, 20, "10-19 years"),
    (20, 200, "20 years and over"),
)
"""Full calendar years of membership on the date (the year joined counts as none): [low, high)."""

EVENT_TYPES: Final = (CadreNominated.event_type, CadreProfileUpdated.event_type, CadreRetired.event_type)
"""The events the pool's statistics fold."""

LEVEL_ORDER: Final = tuple(level.value for level in OrgLevel)


@dataclass(frozen=True, slots=True)
class Member:
    """One cadre of the pool, as the statistics see it (no name, nothing sealed)."""

    org_code: str
    gender: str
    birth_date: date
    ethnicity: str | None = None
    party: str | None = None
    party_joined_year: int | None = None
    full_time_education: str | None = None
    in_service_education: str | None = None
    rank: str | None = None
    reserve_kind: str | None = None


def pool_on(events: Iterable[Recorded], root_path: str) -> list[Member]:
    """Fold the registry's events (in recorded order) into the members of the pool of a subtree."""
    members: dict[UUID, tuple[str, Member]] = {}
    for recorded in events:
        event = recorded.event
        if isinstance(event, CadreNominated):
            categories = {field: _plain(getattr(event, field)) for field in CATEGORY_FIELDS}
            members[event.cadre_id] = (
                recorded.envelope.org_path,
                Member(event.org_code, event.gender.value, event.birth_date, **categories),
            )
        elif isinstance(event, CadreProfileUpdated) and event.cadre_id in members:
            path, member = members[event.cadre_id]
            changed = {f: _plain(v) for f in CATEGORY_FIELDS if (v := getattr(event.changes, f)) is not None}
            if changed:
                members[event.cadre_id] = (path, replace(member, **changed))
        elif isinstance(event, CadreRetired):
            members.pop(event.cadre_id, None)
    return [member for path, member in members.values() if in_subtree(path, root_path)]


def _plain(value: object) -> Any:
    return value.value if isinstance(value, Education | Ethnicity | PartyMembership | Gender) else value


class Row(BaseModel):
    """One line of the table: a unit's cadres in the pool (or a level's, or the subtree's), by category."""

    code: str | None
    """The unit's code; none on a total line."""
    name: str
    level: str | None
    total: int
    average_age: float | None
    counts: dict[str, dict[str, int]]
    """Group (see `Statistics.groups`) → category → cadres; every category of the group, zeros too."""


class LevelSheet(BaseModel):
    """The cadres of the units of one level: a line per unit, and the level's total."""

    level: str
    total: Row
    units: list[Row]


class Statistics(BaseModel):
    """The structure statistics of a subtree's pool on a date."""

    root: str
    on: date
    total: Row
    groups: dict[str, list[str]]
    """Each group's categories, in the order of the table's columns."""
    levels: list[LevelSheet]


@dataclass(frozen=True, slots=True)
class Unit:
    """An org unit a line of the table may stand for."""

    code: str
    name: str
    level: str


Counted: TypeAlias = tuple[str, str, str, int, int]
"""Cadres of one unit in one category of one group (unit's code, group, category, cadres, their ages summed);
the group "" counts them all."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def band_sql(value: str, bands: tuple[tuple[int, int, str], ...]) -> str:
    """SQL naming the band of `bands` ([low, high) and its label) that the integer `value` falls in."""
    whens = " ".join(f"WHEN {value} >= {low} AND {value} < {high} THEN {_literal(label)}" for low, high, label in bands)
    return f"CASE {whens} END"


def age_sql(birth: str, day: str) -> str:
    """SQL of full years of age on `day` of one born on `birth` (`rules.age_on`, done by PostgreSQL)."""
    return (
        f"(extract(year FROM {day})::int - extract(year FROM {birth})::int"
        f" - ((extract(month FROM {day}), extract(day FROM {day}))"
        f" < (extract(month FROM {birth}), extract(day FROM {birth})))::int)"
    )


def _recorded_sql(column: str) -> str:
    return f"coalesce(nullif({column}, ''), {_literal(NOT_RECORDED)})"


def pool_counts(pool: Pool) -> UnitSummaries:
    """Today's pool counted per unit and category, kept per unit until its cadres change (ADR 0046).

    Its rows: (unit's org path, group, category, cadres, ages summed); the group "" counts every
    member of the unit with their ages, "education" is the structure's (not a column of the table).
    """
    members = (
        f"SELECT org_path AS unit, gender, education, birth_date, {', '.join(CATEGORY_FIELDS)} FROM cadres"  # noqa: S608
        " WHERE status = 'in_pool' AND org_path = ANY($1::text[])"
    )
    return UnitSummaries(pool, "registry.pool", _counted_sql(members), units="org_units")


def _counted_sql(pool: str) -> str:
    """Count the members of `pool` (SQL selecting a `unit` and the members' `cadres` columns) per unit and category.

    `$2` is the day (its ages and years of membership); what `_categories` does for one member,
    done by PostgreSQL for all of them, so the table costs one scan, not a Python object per cadre.
    """
    age = age_sql("birth_date", "$2::date")
    years = "(extract(year FROM $2::date)::int - party_joined_year)"
    party_years = (
        f"CASE WHEN party_joined_year IS NULL OR party_joined_year > extract(year FROM $2::date)::int"
        f" THEN {_literal(NOT_RECORDED)} ELSE {band_sql(years, PARTY_YEARS)} END"
    )
    member = _literal(PartyMembership.MEMBER.value)
    female = _literal(Gender.FEMALE.value)
    per_group = {
        "education": ("education", ""),  # the structure's (its one group the table has not)
        "gender": ("gender", ""),
        "age": ("band", ""),
        "women_by_age": ("band", f"WHERE gender = {female}"),
        "ethnicity": (_recorded_sql("ethnicity"), ""),
        "party": (_recorded_sql("party"), ""),
        "party_years": (party_years, f"WHERE party = {member}"),
        "full_time_education": (_recorded_sql("full_time_education"), ""),
        "in_service_education": (_recorded_sql("in_service_education"), ""),
        "rank": (_recorded_sql("rank"), ""),
        "reserve_kind": (_recorded_sql("reserve_kind"), ""),
    }
    counts = " ".join(
        f"UNION ALL SELECT unit, {_literal(group)}, {category}, count(*), 0 FROM m {where} GROUP BY 1, 3"  # noqa: S608 - from constants
        for group, (category, where) in per_group.items()
    )
    return (
        f"WITH p AS MATERIALIZED ({pool}),"  # noqa: S608 - from constants and the caller's fixed SQL
        f" m AS MATERIALIZED (SELECT p.*, {band_sql('age', AGE_BANDS)} AS band"
        f" FROM (SELECT p.*, {age} AS age FROM p) AS p)"
        f" SELECT unit, '' AS grp, '' AS category, count(*) AS cadres, sum(age) AS ages FROM m GROUP BY 1 {counts}"
    )


def _band(value: int, bands: tuple[tuple[int, int, str], ...]) -> str:
    return next(label for low, high, label in bands if low <= value < high)


def _categories(member: Member, on: date) -> dict[str, str]:
    age = rules.age_on(member.birth_date, on)
    band = _band(age, AGE_BANDS)
    if member.party != PartyMembership.MEMBER.value:
        years = None
    elif member.party_joined_year is None or member.party_joined_year > on.year:
        years = NOT_RECORDED
    else:
        years = _band(on.year - member.party_joined_year, PARTY_YEARS)
    found = {
        "gender": member.gender,
        "age": band,
        "ethnicity": member.ethnicity or NOT_RECORDED,
        "party": member.party or NOT_RECORDED,
        "full_time_education": member.full_time_education or NOT_RECORDED,
        "in_service_education": member.in_service_education or NOT_RECORDED,
        "rank": member.rank or NOT_RECORDED,
        "reserve_kind": member.reserve_kind or NOT_RECORDED,
    }
    if member.gender == Gender.FEMALE.value:
        found["women_by_age"] = band
    if years is not None:
        found["party_years"] = years
    return found


def _groups(members: list[Member]) -> dict[str, list[str]]:
    return _groups_with({m.rank for m in members if m.rank}, {m.reserve_kind for m in members if m.reserve_kind})


def _groups_with(ranks: set[str], kinds: set[str]) -> dict[str, list[str]]:
    educations = [e.value for e in Education]
    bands = [label for _, _, label in AGE_BANDS]
    return {
        "gender": [g.value for g in Gender],
        "age": bands,
        "women_by_age": bands,
        "ethnicity": [*(e.value for e in Ethnicity), NOT_RECORDED],
        "party": [*(p.value for p in PartyMembership), NOT_RECORDED],
        "party_years": [*(label for _, _, label in PARTY_YEARS), NOT_RECORDED],
        "full_time_education": [*educations, NOT_RECORDED],
        "in_service_education": [*educations, NOT_RECORDED],
        "rank": [*sorted(ranks), NOT_RECORDED],
        "reserve_kind": [*sorted(kinds), NOT_RECORDED],
    }


class _Line:
    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.total = 0
        self.ages = 0
        self.counts = {group: dict.fromkeys(categories, 0) for group, categories in groups.items()}

    def add(self, categories: dict[str, str], age: int) -> None:
        self.total += 1
        self.ages += age
        for group, category in categories.items():
            self.counts[group][category] += 1

    def add_counted(self, group: str, category: str, cadres: int, ages: int) -> None:
        if group:
            self.counts[group][category] += cadres
        else:
            self.total += cadres
            self.ages += ages

    def row(self, code: str | None, name: str, level: str | None) -> Row:
        average = round(self.ages / self.total, 1) if self.total else None
        return Row(code=code, name=name, level=level, total=self.total, average_age=average, counts=self.counts)


def tally(root: str, root_name: str, on: date, units: Iterable[Unit], members: Iterable[Member]) -> Statistics:
    """Count `members` (the pool of the subtree on `on`) per unit, per level and in all.

    Every unit of `units` gets its line on its level's sheet (zeros too); a level appears when
    it has a unit.
    """
    pool = list(members)
    groups = _groups(pool)
    known = {unit.code: unit for unit in units}
    lines = {code: _Line(groups) for code in known}
    by_level: dict[str, _Line] = {unit.level: _Line(groups) for unit in known.values()}
    total = _Line(groups)
    for member in pool:
        categories = _categories(member, on)
        age = rules.age_on(member.birth_date, on)
        total.add(categories, age)
        unit = known.get(member.org_code)
        if unit is not None:
            lines[unit.code].add(categories, age)
            by_level[unit.level].add(categories, age)
    return _statistics(root, root_name, on, known, groups, lines, by_level, total)


def tally_counted(root: str, root_name: str, on: date, units: Iterable[Unit], counted: Iterable[Counted]) -> Statistics:
    """The same table as `tally`, from what PostgreSQL counted (`COUNTED_SQL`) rather than from each member."""
    found = [c for c in counted if c[1] != "education"]  # the structure's group, not the table's
    groups = _groups_with(
        {category for _, group, category, *_ in found if group == "rank" and category != NOT_RECORDED},
        {category for _, group, category, *_ in found if group == "reserve_kind" and category != NOT_RECORDED},
    )
    known = {unit.code: unit for unit in units}
    lines = {code: _Line(groups) for code in known}
    by_level: dict[str, _Line] = {unit.level: _Line(groups) for unit in known.values()}
    total = _Line(groups)
    for code, group, category, cadres, ages in found:
        total.add_counted(group, category, cadres, ages)
        unit = known.get(code)
        if unit is not None:
            lines[unit.code].add_counted(group, category, cadres, ages)
            by_level[unit.level].add_counted(group, category, cadres, ages)
    return _statistics(root, root_name, on, known, groups, lines, by_level, total)


def _statistics(  # noqa: PLR0917 - the parts of the table, assembled once for both ways of counting
    root: str,
    root_name: str,
    on: date,
    known: dict[str, Unit],
    groups: dict[str, list[str]],
    lines: dict[str, _Line],
    by_level: dict[str, _Line],
    total: _Line,
) -> Statistics:
    levels = sorted(by_level, key=lambda level: LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER))
    return Statistics(
        root=root,
        on=on,
        total=total.row(None, root_name, None),
        groups=groups,
        levels=[
            LevelSheet(
                level=level,
                total=by_level[level].row(None, root_name, level),
                units=[lines[u.code].row(u.code, u.name, level) for u in known.values() if u.level == level],
            )
            for level in levels
        ],
    )
