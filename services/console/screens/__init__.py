"""The console's screens, one module each, in the order people need them."""

from __future__ import annotations

from services.console.screens import (
    assessment,
    audit,
    cadre,
    due,
    links,
    nominate,
    own,
    pool,
    responsibility,
    statistics,
    succession,
)

routers = [
    pool.router,
    cadre.router,
    audit.router,
    assessment.router,
    nominate.router,
    statistics.router,
    succession.router,
    due.router,
    responsibility.router,
    own.router,
    links.router,
]
