"""Each actor's share of a service: commands, and reads that cost much (audit questions, file exports).

A token bucket per actor and kind, in this process: `burst` requests at once, refilled at `rate`
per second. Past it, 429 with `Retry-After`. With several replicas each keeps its own buckets,
so an actor's share is at most the replicas times the configured one (docs/security.md).
Rates use the monotonic clock: they measure the machine's time, not the platform's business time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Literal

from fastapi import Request

from contracts.envelope import Actor
from runtime.errors import TooManyRequestsError

Kind = Literal["writes", "expensive"]
WRITES: Final[Kind] = "writes"
EXPENSIVE: Final[Kind] = "expensive"

_MAX_KEYS = 100_000
"""Buckets kept at most; past it the fullest (idle) ones are forgotten, which only ever grants more."""

BATCHED: Final = "batched"
"""Set in a request's ASGI state for the commands of a batch: the batch itself was charged once."""


@dataclass
class Buckets:
    """Token buckets of one kind, keyed by actor."""

    rate: float
    """Tokens added per second."""
    burst: int
    """Tokens a bucket holds at most."""
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when granted, else the seconds until it would be."""
        now = time.monotonic()
        level, at = self._levels.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - at) * self.rate)
        if level < cost:
            self._levels[key] = (level, now)
            return (cost - level) / self.rate
        if len(self._levels) >= _MAX_KEYS and key not in self._levels:
            self._levels.clear()
        self._levels[key] = (level - cost, now)
        return 0.0


@dataclass
class RateLimits:
    """The buckets of one service process."""

    writes: Buckets
    expensive: Buckets

    def of(self, kind: Kind) -> Buckets:
        """The buckets of `kind`."""
        return self.writes if kind == WRITES else self.expensive


def charge(request: Request, actor: Actor, kind: Kind) -> None:
    """Count one request of `kind` against the actor's share; 429 (`TooManyRequestsError`) beyond it."""
    limits: RateLimits | None = getattr(request.app.state, "limits", None)
    if limits is None or request.scope.get("state", {}).get(BATCHED):
        return
    wait = limits.of(kind).take(f"{actor.user}@{actor.org_path}")
    if wait:
        what = "commands" if kind == WRITES else "expensive reads (audit questions, file exports)"
        msg = f"too many {what} from {actor.user}: try again in {wait:.1f} s"
        raise TooManyRequestsError(msg, retry_after=wait)
