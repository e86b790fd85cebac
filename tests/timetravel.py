"""Tests that travel in time: the platform's clock set per test, and the awkward instants.

Every test begins with the platform's clock (`runtime.clock`) set to an instant:
the real time by default. Tests marked `dates` (they read "today" or "now" through
a rule, a loader, a scheduler, a retirement, a rebuild...) also run at each of
`AWKWARD` instants, all in the organization's time zone and computed from the real
date (so none of them is ever overtaken by time):

- `cn-00:30`: 00:30 in the organization (16:30 UTC the day before: the UTC date lags),
- `cn-07:30`: 07:30 in the organization (23:30 UTC the day before: a morning whose UTC
  date is still yesterday),
- `cn-23:30`: 23:30 in the organization, half an hour before its day ends,
- `year-end`: 23:59:30 on 31 December in the organization (the year turns there first,
  30 s into the test),
- `leap-day`: 00:30 on the next 29 February in the organization (28 February in UTC).

`@pytest.mark.dates("year-end")` names the instants of a heavy test whose parts lighter
tests already try at every instant (`./dev up` with its demo: each demo's own test runs at
all of them): the real time and those named.

`pytest --at INSTANT[,INSTANT...]` (`./dev test --at 2026-12-31T16:30:00Z`) runs every
test, marked or not, at each given instant instead: an ISO 8601 instant with its zone,
one of the names above, or `now`. The clock runs on from the instant it was set to;
processes a test starts inherit it (`Clock.environment`).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest

from runtime import clock

NOW = "now"


def _next_local(zone_clock: clock.Clock, at: time) -> datetime:
    """The next instant (after the real now) at which the organization's wall clock reads `at`."""
    real = zone_clock.local(datetime.now(UTC))
    candidate = datetime.combine(real.date(), at, zone_clock.zone)
    if candidate <= real:
        candidate = datetime.combine(real.date() + timedelta(days=1), at, zone_clock.zone)
    return candidate.astimezone(UTC)


def _year_end(zone_clock: clock.Clock) -> datetime:
    real = zone_clock.local(datetime.now(UTC))
    candidate = datetime.combine(date(real.year, 12, 31), time(23, 59, 30), zone_clock.zone)
    if candidate <= real:
        candidate = datetime.combine(date(real.year + 1, 12, 31), time(23, 59, 30), zone_clock.zone)
    return candidate.astimezone(UTC)


def _leap_day(zone_clock: clock.Clock) -> datetime:
    real = zone_clock.local(datetime.now(UTC))
    year = real.year
    while True:
        if calendar.isleap(year):
            candidate = datetime.combine(date(year, 2, 29), time(0, 30), zone_clock.zone)
            if candidate > real:
                return candidate.astimezone(UTC)
        year += 1


AWKWARD: dict[str, Callable[[clock.Clock], datetime]] = {
    "cn-00:30": lambda c: _next_local(c, time(0, 30)),
    "cn-07:30": lambda c: _next_local(c, time(7, 30)),
    "cn-23:30": lambda c: _next_local(c, time(23, 30)),
    "year-end": _year_end,
    "leap-day": _leap_day,
}
"""The instants every `dates` test also runs at, by name."""


def instant(name: str, zone_clock: clock.Clock) -> datetime | None:
    """The instant a name or an ISO 8601 text stands for (None: the real time)."""
    if name == NOW:
        return None
    if name in AWKWARD:
        return AWKWARD[name](zone_clock)
    try:
        value = datetime.fromisoformat(name)
    except ValueError:
        known = ", ".join([NOW, *AWKWARD])
        msg = f"--at {name!r}: not an ISO 8601 instant with a zone, nor one of {known}"
        raise pytest.UsageError(msg) from None
    if value.tzinfo is None:
        msg = f"--at {name!r}: give the instant's zone (Z or +08:00)"
        raise pytest.UsageError(msg)
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--at`: run every test with the platform's clock set to these instants."""
    parser.addoption(
        "--at",
        action="append",
        default=[],
        metavar="INSTANT[,INSTANT...]",
        help=f"run every test with the platform's clock set to each instant (ISO 8601, {NOW}, {', '.join(AWKWARD)})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the `dates` marker."""
    config.addinivalue_line(
        "markers",
        "dates(*names): reads today or now through the platform's clock; also runs at the awkward instants"
        " (those named, where the test's parts are tried at every instant by lighter tests)",
    )


def _chosen(config: pytest.Config) -> list[str]:
    return [name.strip() for option in config.getoption("--at") for name in option.split(",") if name.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test at the chosen instants, or a `dates` test at the real time and every awkward instant."""
    if "platform_instant" not in metafunc.fixturenames:
        return
    chosen = _chosen(metafunc.config)
    if chosen:
        names = chosen
    elif (marker := metafunc.definition.get_closest_marker("dates")) is not None:
        unknown = [name for name in marker.args if name not in AWKWARD]
        if unknown:
            msg = f"{metafunc.definition.nodeid}: dates({', '.join(unknown)}): not among {', '.join(AWKWARD)}"
            raise pytest.UsageError(msg)
        names = [NOW, *(marker.args or AWKWARD)]
    else:
        return
    zone_clock = clock.Clock.from_settings(clock.ClockSettings())
    for name in names:
        instant(name, zone_clock)  # refuse a bad --at before anything runs
    metafunc.parametrize("platform_instant", names, indirect=True, ids=[f"at={name}" for name in names])


@pytest.fixture(autouse=True)
def platform_instant(request: pytest.FixtureRequest) -> Iterator[clock.Clock]:
    """Set the platform's clock for this test (the real time unless parametrized); restore it after."""
    real = clock.Clock.from_settings(clock.ClockSettings())
    name: str = getattr(request, "param", NOW)
    at = instant(name, real)
    test_clock = real if at is None else real.at(at)
    clock.use(test_clock)
    try:
        yield test_clock
    finally:
        clock.use(real)
