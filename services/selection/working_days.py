"""The organization's working days: public holidays and make-up working days, and its own adjustments.

The country's calendar (official holidays, and the weekend days worked to make up for
them) comes from the `holidays` library; a unit adds its own adjustments as events
(`contracts.procedure.CalendarAdjusted`): a day off or a working day that the country's calendar does not
know, such as a year whose arrangement was published after the library's release. A
unit's adjustments apply to its subtree; a deeper unit's adjustment of the same day
wins, and of two adjustments of one unit the later wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays

from contracts.envelope import in_subtree
from runtime.clock import Clock

COUNTRY = "CN"


@lru_cache(maxsize=8)
def _country(country: str) -> holidays.HolidayBase:
    # One instance per country; it fills in further years as it is asked about them.
    return holidays.country_holidays(country)


@dataclass(frozen=True)
class WorkingCalendar:
    """A unit's calendar: the country's working days, with the unit's adjustments (True: working)."""

    adjustments: Mapping[date, bool] = field(default_factory=dict)
    country: str = COUNTRY

    def is_working_day(self, day: date) -> bool:
        """Whether people work on `day` (a weekday that is no holiday, or a make-up working day)."""
        adjusted = self.adjustments.get(day)
        if adjusted is not None:
            return adjusted
        return bool(_country(self.country).is_working_day(day))

    def working_day(self, start: date, n: int) -> date:
        """The `n`-th working day from `start`, counting `start` itself when it is one (n >= 1)."""
        if n < 1:
            msg = "a period has at least one working day"
            raise ValueError(msg)
        day = start
        counted = 0
        while True:
            if self.is_working_day(day):
                counted += 1
                if counted == n:
                    return day
            day += timedelta(days=1)

    def working_days_between(self, first: date, last: date) -> int:
        """How many working days lie from `first` to `last`, both included."""
        return sum(
            1 for offset in range((last - first).days + 1) if self.is_working_day(first + timedelta(days=offset))
        )


def adjustments_for(org_path: str, adjusted: Iterable[tuple[str, date, bool]]) -> dict[date, bool]:
    """The adjustments in force at `org_path`, from (unit path, day, working) in the order they were recorded."""
    in_force: dict[date, tuple[int, bool]] = {}
    for path, day, working in adjusted:
        if not in_subtree(org_path, path):
            continue
        depth = path.count(".")
        earlier = in_force.get(day)
        if earlier is None or depth >= earlier[0]:
            in_force[day] = (depth, working)
    return {day: working for day, (_, working) in in_force.items()}


@dataclass(frozen=True)
class NoticePeriod:
    """A public notice's period: its first day, its last working day, and the instant it ends."""

    starts_on: date
    ends_on: date
    ends_at: datetime
    """The end of `ends_on` in the organization's zone (UTC)."""


def notice_period(calendar: WorkingCalendar, clock: Clock, starts_on: date, working_days: int) -> NoticePeriod:
    """A notice starting on `starts_on` runs for `working_days` working days and ends when the last one ends."""
    ends_on = calendar.working_day(starts_on, working_days)
    return NoticePeriod(starts_on, ends_on, clock.start_of(ends_on + timedelta(days=1)))
