"""The console's screens, one module each, in the order people need them."""

from __future__ import annotations

from services.console.screens import pool

routers = [pool.router]
