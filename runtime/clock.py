"""The platform's one clock: every "now" and every "today" in every service reads it.

"Now" is an instant (UTC-aware); "today" is the organization's date in its time
zone (`TIMEZONE`, Asia/Shanghai by default), never the UTC date: the
organization's day begins at 16:00 UTC of the day before.

A process has one current clock. Production runs the system clock (offset 0).
Tests and rehearsals move it: `CLOCK_OFFSET_SECONDS` shifts it for a whole process
(and is handed on to the processes it starts, see `Clock.environment`), and the
test suite sets it per test (`use`). The clock keeps running from wherever it was
set: timeouts, schedules and leases behave as they do in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ORGANIZATION_ZONE = "Asia/Shanghai"


class ClockSettings(BaseSettings):
    """What the clock reads from the environment (every service has these settings)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    timezone: str = Field(
        default=ORGANIZATION_ZONE,
        description="The organization's time zone (IANA name): where its days and years begin",
    )
    clock_offset_seconds: float = Field(
        default=0.0,
        description="Shift of the platform's clock from the system clock, in seconds (tests and rehearsals; 0 in"
        " production)",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            msg = f"unknown time zone {value!r}"
            raise ValueError(msg) from error
        return value


class ClockSource(Protocol):
    """Settings that name a clock: `ClockSettings`, or any settings class built on it."""

    @property
    def timezone(self) -> str: ...  # noqa: D102
    @property
    def clock_offset_seconds(self) -> float: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class Clock:
    """The system clock shifted by `offset`, read in the organization's `zone`."""

    zone: ZoneInfo
    offset: timedelta = timedelta(0)

    @classmethod
    def from_settings(cls, settings: ClockSource) -> Clock:
        """The clock a process's settings describe."""
        return cls(zone=ZoneInfo(settings.timezone), offset=timedelta(seconds=settings.clock_offset_seconds))

    def at(self, instant: datetime) -> Clock:
        """This clock set so that it reads `instant` now (and runs on from there)."""
        if instant.tzinfo is None:
            msg = "a clock is set to an instant with a time zone"
            raise ValueError(msg)
        return Clock(zone=self.zone, offset=instant - datetime.now(UTC))

    def now(self) -> datetime:
        """The current instant, in UTC."""
        return datetime.now(UTC) + self.offset

    def today(self) -> date:
        """The organization's current date."""
        return self.date_of(self.now())

    def date_of(self, instant: datetime) -> date:
        """The organization's date at `instant`."""
        return instant.astimezone(self.zone).date()

    def local(self, instant: datetime) -> datetime:
        """`instant` on the organization's wall clock."""
        return instant.astimezone(self.zone)

    def start_of(self, day: date) -> datetime:
        """The instant (UTC) at which `day` begins for the organization."""
        return datetime.combine(day, time(0), self.zone).astimezone(UTC)

    def on(self, day: date, hour: int, minute: int = 0) -> datetime:
        """The instant (UTC) of `hour:minute` on the organization's wall clock on `day`."""
        return datetime.combine(day, time(hour, minute), self.zone).astimezone(UTC)

    def environment(self) -> dict[str, str]:
        """The environment that gives a child process this clock (`ClockSettings`)."""
        return {"TIMEZONE": self.zone.key, "CLOCK_OFFSET_SECONDS": repr(self.offset.total_seconds())}


_current: Clock | None = None


def current() -> Clock:
    """This process's clock (from the environment until `use` sets another)."""
    global _current  # noqa: PLW0603 - one clock per process, by design
    if _current is None:
        _current = Clock.from_settings(ClockSettings())
    return _current


def use(clock: Clock) -> None:
    """Make `clock` this process's clock (service start-up, the test suite)."""
    global _current  # noqa: PLW0603 - one clock per process, by design
    _current = clock


def now() -> datetime:
    """The current instant on the platform's clock, in UTC."""
    return current().now()


def today() -> date:
    """The organization's current date on the platform's clock."""
    return current().today()


def date_of(instant: datetime) -> date:
    """The organization's date at `instant`."""
    return current().date_of(instant)


def start_of(day: date) -> datetime:
    """The instant at which the organization's `day` begins."""
    return current().start_of(day)
