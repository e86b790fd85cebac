"""Run a service's app under uvicorn: the container entrypoint and the local stack's command."""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Protocol, TypeVar

import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server
from pydantic import ValidationError

from runtime import clock, logs

SettingsT = TypeVar("SettingsT", bound="Served")

EXIT_BAD_SETTINGS = 2
"""The exit status of a process whose settings are refused (a missing or development secret, a bad value)."""


def tune_gc() -> None:
    """Collect young objects less often: the batch paths allocate thousands of objects per batch.

    With CPython's default threshold (700) the projection path spent about 40% of its
    time in the collector; at 50,000 it projected 16,500 -> 29,000 events/s (bench/,
    20,000 events). Costs a few MB of not-yet-collected garbage.
    """
    gc.set_threshold(50_000, 50, 100)


class _Server(uvicorn.Server):
    """uvicorn, except that a graceful stop on SIGTERM exits 0.

    uvicorn re-raises the signal it stopped on once it has shut down, so the process
    would end "killed by SIGTERM" (status 143) even after finishing its work cleanly.
    Orchestrators and our tests read a clean shutdown as exit status 0.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


class Served(Protocol):
    """The settings `serve` reads (every service's, and the console's)."""

    @property
    def log_level(self) -> str: ...  # noqa: D102
    @property
    def log_json(self) -> bool: ...  # noqa: D102
    @property
    def http_host(self) -> str: ...  # noqa: D102
    @property
    def http_port(self) -> int: ...  # noqa: D102
    @property
    def shutdown_grace_seconds(self) -> float: ...  # noqa: D102
    @property
    def timezone(self) -> str: ...  # noqa: D102
    @property
    def clock_offset_seconds(self) -> float: ...  # noqa: D102


def main(settings_class: Callable[[], SettingsT], create_app: Callable[[SettingsT], FastAPI]) -> None:
    """A process's entry point: read its settings (refused ones end it with status 2, named), then serve."""
    try:
        settings = settings_class()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            print(f"refusing to start: {where + ': ' if where else ''}{message}", file=sys.stderr)  # noqa: T201
        sys.exit(EXIT_BAD_SETTINGS)
    serve(lambda: create_app(settings), settings)


def serve_metrics(settings: object) -> None:
    """Prometheus metrics on their own port (`METRICS_PORT`; 0: not served), apart from the API."""
    port = int(getattr(settings, "metrics_port", 0) or 0)
    if port:
        start_http_server(port, addr=str(getattr(settings, "metrics_host", "127.0.0.1")))


def serve(create_app: Callable[[], FastAPI], settings: Served) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight work within `SHUTDOWN_GRACE_SECONDS`."""
    logs.configure(level=settings.log_level, json=settings.log_json)
    clock.use(clock.Clock.from_settings(settings))
    tune_gc()
    serve_metrics(settings)
    config = uvicorn.Config(
        create_app(),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
    )
    server = _Server(config)
    server.run()
    if not server.started:  # the lifespan failed (database or Kafka unreachable): say so in the exit status
        sys.exit(3)
