"""The age structure of each leadership team on a date (pure): who held a post of the team that day, by age band.

A holder's birth date is the one recorded with the incumbent, else the registry's for a cadre
of the pool (appointed from it, or a present member who is one); without either the holder
counts as `not_recorded`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final

from pydantic import BaseModel

from contracts.selection import PostKind
from services.registry.statistics import age_sql, band_sql

TEAM_AGE_BANDS: Final = (
    (0, 36, "35 and under"),
    (36, 41, "36-40"),
    (41, 46, "41-45"),
    (46, 51, "46-50"),
    (51, 56, "51-55"),
    (56, 200, "56 and over"),
)
"""Full years of age on the date, [low, high): the bands a team's structure is filed in."""

NOT_RECORDED: Final = "not_recorded"


@dataclass(frozen=True, slots=True)
class Team:
    """A unit whose leadership team is counted."""

    org_code: str
    name: str
    level: str


@dataclass(frozen=True, slots=True)
class Seats:
    """The posts of one kind a team held on the date whose holders fall in one band, with their ages summed."""

    band: str
    """A label of TEAM_AGE_BANDS, or NOT_RECORDED (no birth date known)."""
    kind: str
    members: int
    ages: int


def seats_sql(day: str = "$2::date") -> str:
    """SQL counting the seats of the teams whose org paths are `$1` (text[]) held on `day`, per unit, band and kind."""
    birth = "coalesce(t.birth_date, c.birth_date)"
    age = age_sql(birth, day)
    return (
        f"SELECT t.org_path, coalesce({band_sql(age, TEAM_AGE_BANDS)}, {_literal(NOT_RECORDED)}) AS band,"  # noqa: S608
        f" t.kind, count(*) AS members, coalesce(sum({age}), 0) AS ages"
        " FROM tenures t LEFT JOIN pool_cadres c ON c.cadre_id = t.cadre_id"
        f" WHERE t.org_path = ANY($1::text[]) AND t.starts_on <= {day} AND (t.left_on IS NULL OR t.left_on > {day})"
        " GROUP BY 1, 2, 3"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class TeamAges(BaseModel):
    """A team's members on the date (or all teams', on the total line) by age band and kind of post."""

    org_code: str | None
    name: str
    level: str | None
    members: int
    average_age: float | None
    """Of the members whose birth date is known."""
    by_age: dict[str, int]
    """Each band, then `not_recorded`."""
    by_kind: dict[str, int]


class TeamStructure(BaseModel):
    """The age structure of the leadership teams of a subtree on a date."""

    root: str
    on: date
    total: TeamAges
    teams: list[TeamAges]


class _Line:
    def __init__(self) -> None:
        self.members = 0
        self.known = 0
        self.ages = 0
        self.by_age = dict.fromkeys([*(label for _, _, label in TEAM_AGE_BANDS), NOT_RECORDED], 0)
        self.by_kind = dict.fromkeys((kind.value for kind in PostKind), 0)

    def add(self, seats: Seats) -> None:
        self.members += seats.members
        self.by_kind[seats.kind] = self.by_kind.get(seats.kind, 0) + seats.members
        self.by_age[seats.band] = self.by_age.get(seats.band, 0) + seats.members
        if seats.band != NOT_RECORDED:
            self.known += seats.members
            self.ages += seats.ages

    def view(self, code: str | None, name: str, level: str | None) -> TeamAges:
        average = round(self.ages / self.known, 1) if self.known else None
        return TeamAges(org_code=code, name=name, level=level, members=self.members, average_age=average,
                        by_age=self.by_age, by_kind=self.by_kind)  # fmt: skip


def tally(root: str, root_name: str, on: date, teams: Iterable[tuple[Team, Iterable[Seats]]]) -> TeamStructure:
    """Each team's line (in the order the teams come; a team that held no seat has none) and the subtree's total."""
    total = _Line()
    lines: list[TeamAges] = []
    for team, seats in teams:
        line = _Line()
        for counted in seats:
            line.add(counted)
            total.add(counted)
        if line.members:
            lines.append(line.view(team.org_code, team.name, team.level))
    return TeamStructure(root=root, on=on, total=total.view(None, root_name, None), teams=lines)
