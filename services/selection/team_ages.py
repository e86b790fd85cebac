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
from services.registry.rules import age_on

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
class Seat:
    """A post of a team held on the date, and its holder's birth date if known."""

    org_code: str
    unit_name: str
    level: str
    kind: str
    birth_date: date | None


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

    def add(self, seat: Seat, on: date) -> None:
        self.members += 1
        self.by_kind[seat.kind] = self.by_kind.get(seat.kind, 0) + 1
        if seat.birth_date is None:
            self.by_age[NOT_RECORDED] += 1
            return
        age = age_on(seat.birth_date, on)
        self.known += 1
        self.ages += age
        self.by_age[next(label for low, high, label in TEAM_AGE_BANDS if low <= age < high)] += 1

    def view(self, code: str | None, name: str, level: str | None) -> TeamAges:
        average = round(self.ages / self.known, 1) if self.known else None
        return TeamAges(org_code=code, name=name, level=level, members=self.members, average_age=average,
                        by_age=self.by_age, by_kind=self.by_kind)  # fmt: skip


def tally(root: str, root_name: str, on: date, seats: Iterable[Seat]) -> TeamStructure:
    """Each team's line (in the order the seats come, a team per unit) and the subtree's total."""
    total = _Line()
    teams: dict[str, tuple[Seat, _Line]] = {}
    for seat in seats:
        total.add(seat, on)
        teams.setdefault(seat.org_code, (seat, _Line()))[1].add(seat, on)
    return TeamStructure(
        root=root,
        on=on,
        total=total.view(None, root_name, None),
        teams=[line.view(seat.org_code, seat.unit_name, seat.level) for seat, line in teams.values()],
    )
