"""Run a service's app under uvicorn: the container entrypoint and the local stack's command."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from runtime import logs
from runtime.settings import ServiceSettings


def serve(create_app: Callable[[], FastAPI], settings: ServiceSettings, *, graceful_seconds: int = 20) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight work within `graceful_seconds`."""
    logs.configure(level=settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=graceful_seconds,
        lifespan="on",
    )
