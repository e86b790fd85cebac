"""The organization's working days: the country's holidays and make-up days, the units' adjustments.

Calendar facts are checked on fixed historic dates (they do not move); periods that
start "today" are built from the platform's clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from runtime import clock
from services.selection.working_days import WorkingCalendar, adjustments_for, notice_period

NATIONAL_DAY_2024 = date(2024, 10, 1)


def test_public_holidays_and_make_up_working_days_of_2024() -> None:
    calendar = WorkingCalendar()
    assert not calendar.is_working_day(NATIONAL_DAY_2024)
    assert not calendar.is_working_day(date(2024, 10, 7))  # a day off given for a weekend worked
    assert calendar.is_working_day(date(2024, 9, 29))  # a Sunday worked to make up for it
    assert calendar.is_working_day(date(2024, 10, 12))  # a Saturday worked
    assert not calendar.is_working_day(date(2024, 10, 5))  # a Saturday in the holiday
    assert calendar.is_working_day(date(2024, 10, 8))  # a Tuesday after it
    assert not calendar.is_working_day(date(2024, 10, 13))  # an ordinary Sunday


def test_five_working_days_across_a_weekend_a_make_up_sunday_and_the_national_day_week() -> None:
    calendar = WorkingCalendar()
    # Friday 27 September 2024 counts, Saturday 28 does not, Sunday 29 is worked, Monday 30
    # is worked, 1-7 October are off, Tuesday 8 and Wednesday 9 complete the five.
    assert calendar.working_day(date(2024, 9, 27), 5) == date(2024, 10, 9)
    assert calendar.working_days_between(date(2024, 9, 27), date(2024, 10, 9)) == 5


def test_a_period_starting_on_a_day_off_counts_from_the_next_working_day() -> None:
    calendar = WorkingCalendar()
    assert calendar.working_day(date(2024, 10, 1), 1) == date(2024, 10, 8)
    assert calendar.working_day(date(2024, 10, 5), 5) == date(2024, 10, 12)  # Saturday 12 is worked


def test_a_period_has_at_least_one_day() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WorkingCalendar().working_day(date(2024, 9, 27), 0)


def adjusted(day: date, *, working: bool) -> tuple[date, bool]:
    return day, working


def test_a_units_adjustments_apply_to_its_subtree_and_the_deeper_unit_wins() -> None:
    monday, tuesday = date(2024, 10, 14), date(2024, 10, 15)
    recorded = [
        ("prov", *adjusted(monday, working=False)),
        ("prov.city", *adjusted(monday, working=True)),
        ("prov", *adjusted(tuesday, working=False)),
        ("prov", *adjusted(tuesday, working=True)),  # the later of one unit's two wins
        ("prov.other", *adjusted(date(2024, 10, 16), working=False)),  # another branch: not ours
        ("prov.city.county", *adjusted(date(2024, 10, 17), working=False)),  # below us: not ours
    ]
    in_force = adjustments_for("prov.city", recorded)
    assert in_force == {monday: True, tuesday: True}
    assert adjustments_for("prov", recorded) == {monday: False, tuesday: True}
    assert adjustments_for("provx", recorded) == {}


def test_an_adjusted_day_off_lengthens_a_period_and_an_adjusted_working_day_shortens_it() -> None:
    start = date(2024, 10, 14)  # a Monday
    assert WorkingCalendar().working_day(start, 5) == date(2024, 10, 18)
    off = WorkingCalendar({date(2024, 10, 16): False})
    assert off.working_day(start, 5) == date(2024, 10, 21)
    worked = WorkingCalendar({date(2024, 10, 13): True})  # the Sunday before is worked
    assert worked.working_day(date(2024, 10, 13), 5) == date(2024, 10, 17)


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2024, 9, 26, 16, 30, tzinfo=UTC),  # 00:30 on Friday 27 in the organization
        datetime(2024, 9, 27, 15, 30, tzinfo=UTC),  # 23:30 on Friday 27 in the organization
    ],
)
def test_a_notice_ends_when_its_last_working_day_ends_in_the_organizations_zone(instant: datetime) -> None:
    at = clock.current().at(instant)
    period = notice_period(WorkingCalendar(), at, at.today(), 5)
    assert period.starts_on == date(2024, 9, 27)
    assert period.ends_on == date(2024, 10, 9)
    assert period.ends_at == datetime(2024, 10, 9, 16, 0, tzinfo=UTC)  # midnight in the organization


@pytest.mark.dates
def test_a_notice_from_today_runs_its_working_days() -> None:
    calendar = WorkingCalendar()
    today = clock.today()
    period = notice_period(calendar, clock.current(), today, 5)
    assert calendar.working_days_between(today, period.ends_on) == 5
    assert calendar.is_working_day(period.ends_on)
    assert period.ends_on >= today + timedelta(days=4)
    assert clock.date_of(period.ends_at - timedelta(microseconds=1)) == period.ends_on
    assert clock.date_of(period.ends_at) == period.ends_on + timedelta(days=1)
