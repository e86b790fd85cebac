"""The platform's one clock, and the instants the suite travels to."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from contracts.envelope import Actor, Role, uuid7
from runtime import clock
from runtime.context import CommandContext
from tests import timetravel

SHANGHAI = clock.Clock(zone=ZoneInfo("Asia/Shanghai"))


def test_the_organizations_day_begins_in_its_time_zone() -> None:
    # Fixed instants of the past, compared with nothing that moves.
    assert SHANGHAI.date_of(datetime(2020, 6, 1, 15, 59, tzinfo=UTC)) == date(2020, 6, 1)
    assert SHANGHAI.date_of(datetime(2020, 6, 1, 16, 0, tzinfo=UTC)) == date(2020, 6, 2)
    assert SHANGHAI.start_of(date(2020, 6, 2)) == datetime(2020, 6, 1, 16, tzinfo=UTC)
    assert SHANGHAI.on(date(2020, 6, 2), 9) == datetime(2020, 6, 2, 1, tzinfo=UTC)


def test_a_commands_day_is_the_organizations_date_of_when_it_happened() -> None:
    actor = Actor(user="u", org_path="cn", role=Role.ORGANIZER)
    evening_utc = datetime(2020, 6, 1, 16, 30, tzinfo=UTC)
    assert clock.current().zone.key == "Asia/Shanghai"
    assert CommandContext(actor=actor, correlation_id=uuid7(), occurred_at=evening_utc).day == date(2020, 6, 2)
    now = CommandContext(actor=actor, correlation_id=uuid7())
    assert now.occurred == now.decided_at
    assert now.day == clock.date_of(now.decided_at)


def test_a_clock_set_to_an_instant_reads_it_and_runs_on() -> None:
    target = datetime.now(UTC) + timedelta(days=400)
    moved = SHANGHAI.at(target)
    read = moved.now()
    assert target <= read < target + timedelta(seconds=5)
    assert moved.today() == SHANGHAI.date_of(read)
    with pytest.raises(ValueError, match="time zone"):
        SHANGHAI.at(datetime(2030, 1, 1))  # noqa: DTZ001 - the point of the test


def test_child_processes_get_the_same_clock() -> None:
    moved = SHANGHAI.at(datetime.now(UTC) - timedelta(hours=30))
    settings = clock.ClockSettings.model_validate({k.lower(): v for k, v in moved.environment().items()})
    again = clock.Clock.from_settings(settings)
    assert again.zone == moved.zone
    assert abs((again.offset - moved.offset).total_seconds()) < 1e-3
    with pytest.raises(ValueError, match="unknown time zone"):
        clock.ClockSettings(timezone="Mars/Olympus")


def test_the_awkward_instants_are_what_they_say() -> None:
    real = datetime.now(UTC)
    at = {name: timetravel.instant(name, SHANGHAI) for name in timetravel.AWKWARD}
    local = {name: SHANGHAI.local(value) for name, value in at.items() if value is not None}
    assert all(value > real for value in local.values())  # ahead of the real time, never overtaken
    assert local["cn-00:30"].time() == time(0, 30)
    assert local["cn-07:30"].time() == time(7, 30)
    assert local["cn-23:30"].time() == time(23, 30)
    for name in ("cn-00:30", "cn-07:30"):  # the UTC date is still the day before
        assert local[name].date() != local[name].astimezone(UTC).date()
    assert (local["year-end"].month, local["year-end"].day, local["year-end"].time()) == (12, 31, time(23, 59, 30))
    assert (local["leap-day"].month, local["leap-day"].day) == (2, 29)
    assert timetravel.instant("now", SHANGHAI) is None
    assert timetravel.instant("2030-01-01T00:00:00Z", SHANGHAI) == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(pytest.UsageError):
        timetravel.instant("2030-01-01T00:00:00", SHANGHAI)
    with pytest.raises(pytest.UsageError):
        timetravel.instant("teatime", SHANGHAI)


@pytest.mark.dates
def test_each_test_begins_at_its_instant(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params["platform_instant"] if callspec else timetravel.NOW
    expected = timetravel.instant(name, SHANGHAI) or datetime.now(UTC)
    assert abs((clock.now() - expected).total_seconds()) < 5
