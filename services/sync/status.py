"""What the links look like: per deployment and source, how far events arrived, were verified and released.

`/status` answers it, the `cadre_sync_*` metrics carry it (refreshed every few seconds),
and `./dev sync status` prints it.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Gauge
from pydantic import BaseModel, Field

from runtime import clock
from runtime.db import Pool

RELEASED = Gauge(
    "cadre_sync_released_position", "Last position released (verified and signed)", ["deployment", "source"]
)
LAG_EVENTS = Gauge(
    "cadre_sync_lag_events",
    "Events arrived but not yet released (awaiting a gap, a checkpoint)",
    ["deployment", "source"],
)
LAG_SECONDS = Gauge(
    "cadre_sync_lag_seconds", "Age of the oldest event arrived but not yet released", ["deployment", "source"]
)
LAST_HEARD = Gauge(
    "cadre_sync_last_heard_age_seconds", "Seconds since anything arrived from this chain", ["deployment", "source"]
)
REFUSED = Gauge("cadre_sync_refused_events", "Events refused on arrival (total)", ["deployment", "source"])
BROKEN = Gauge(
    "cadre_sync_chain_broken", "1 when the chain stopped at a break (refused and shown)", ["deployment", "source"]
)


class ChainStatus(BaseModel):
    """One deployment's events of one service, as this deployment has them."""

    deployment: str
    source: str
    link: str | None
    """The deployment whose link brought them (a child for what came from below, the parent for directives)."""
    received: int
    """The highest position arrived."""
    verified: int
    signed: int
    released: int
    lag_events: int
    """Events arrived and not yet released (waiting for a gap to fill or a checkpoint to sign them)."""
    lag_seconds: float
    last_heard: datetime | None
    last_released_recorded_at: datetime | None
    """When the newest released event was recorded where it happened."""
    refused: int
    broken: str | None


class Refused(BaseModel):
    """One refusal."""

    deployment: str | None
    source: str | None
    position: int | None
    link: str
    via: str
    reason: str
    refused_at: datetime


class Status(BaseModel):
    """The whole picture."""

    deployment: str
    parent: str | None
    children: list[str]
    roots: dict[str, str] = Field(default_factory=dict)
    """Deployment → the org path of the unit at its root, where known (this one, and those whose key is trusted)."""
    trusted: dict[str, str]
    """Deployment → who vouched for its key (`settings`, or the deployment that linked it)."""
    chains: list[ChainStatus]
    refusals: list[Refused]
    """The latest refusals, newest first."""


async def status(pool: Pool, deployment: str, parent: str, children: list[str], *, root: str = "") -> Status:
    """Read the status from the sync service's tables (and refresh the metrics with it)."""
    now = clock.now()
    rows = await pool.fetch(
        """
        SELECT c.deployment, c.source, c.verified, c.signed, c.released, c.broken, c.last_heard,
               a.received, a.waiting, a.oldest_waiting, a.link, r.refused, l.recorded_at AS last_released_recorded_at
        FROM chains c
        LEFT JOIN LATERAL (
            SELECT max(position) AS received, max(link) AS link,
                   count(*) FILTER (WHERE position > c.released) AS waiting,
                   min(arrived_at) FILTER (WHERE position > c.released) AS oldest_waiting
            FROM arrivals WHERE deployment = c.deployment AND source = c.source) a ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS refused FROM refusals WHERE deployment = c.deployment AND source = c.source) r ON true
        LEFT JOIN LATERAL (
            SELECT recorded_at FROM arrivals
            WHERE deployment = c.deployment AND source = c.source AND position = c.released) l ON true
        ORDER BY c.deployment, c.source
        """
    )
    chains = []
    for row in rows:
        received = int(row["received"] or 0)
        waiting = row["oldest_waiting"]
        chain = ChainStatus(
            deployment=row["deployment"],
            source=row["source"],
            link=row["link"],
            received=received,
            verified=row["verified"],
            signed=row["signed"],
            released=row["released"],
            lag_events=int(row["waiting"] or 0),
            lag_seconds=max(0.0, (now - waiting).total_seconds()) if waiting else 0.0,
            last_heard=row["last_heard"],
            last_released_recorded_at=row["last_released_recorded_at"],
            refused=int(row["refused"] or 0),
            broken=row["broken"],
        )
        chains.append(chain)
        labels = (chain.deployment, chain.source)
        RELEASED.labels(*labels).set(chain.released)
        LAG_EVENTS.labels(*labels).set(chain.lag_events)
        LAG_SECONDS.labels(*labels).set(chain.lag_seconds)
        REFUSED.labels(*labels).set(chain.refused)
        BROKEN.labels(*labels).set(1 if chain.broken else 0)
        if chain.last_heard is not None:
            LAST_HEARD.labels(*labels).set(max(0.0, (now - chain.last_heard).total_seconds()))
    refusals = await pool.fetch(
        "SELECT deployment, source, position, link, via, reason, refused_at FROM refusals ORDER BY id DESC LIMIT 100"
    )
    trusted = await pool.fetch("SELECT deployment, vouched_by, root FROM trusted ORDER BY deployment")
    roots = {r["deployment"]: r["root"] for r in trusted if r["root"]}
    return Status(
        deployment=deployment,
        parent=parent or None,
        children=children,
        roots=roots | ({deployment: root} if root else {}),
        trusted={r["deployment"]: r["vouched_by"] for r in trusted},
        chains=chains,
        refusals=[Refused(**dict(r)) for r in refusals],
    )
