"""HTTP plumbing shared by the services: problem+json errors, correlation ids, metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.envelope import uuid7
from runtime import logs, metrics
from runtime.auth import CurrentActor
from runtime.errors import CommandError
from runtime.store import CommandContext

log = logs.get(__name__)

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-ID"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


async def _command_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, CommandError)
    return problem(error.status, error.title, error.detail, **error.extra)


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in error.errors()
    ]
    return problem(422, "Invalid request", "the request does not match the schema", errors=errors)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return problem(error.status_code, str(error.detail), str(error.detail))


async def _unexpected_error(_: Request, error: Exception) -> Response:
    log.error("unhandled error", error=repr(error), exc_info=error)
    return problem(500, "Internal error", "the server failed; nothing was changed by this request")


def install(app: FastAPI, *, service: str) -> None:
    """Add problem+json handlers, correlation ids, request metrics and `/metrics`."""
    app.add_exception_handler(CommandError, _command_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.middleware("http")
    async def correlate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        correlation = request.headers.get(CORRELATION_HEADER) or str(uuid7())
        structlog.contextvars.bind_contextvars(correlation_id=correlation)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_LATENCY.labels(service, request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        response.headers[CORRELATION_HEADER] = correlation
        return response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def command_context(
    request: Request,
    actor: CurrentActor,
    occurred_at: Annotated[
        datetime | None,
        Header(alias="X-Occurred-At", description="When it happened, if earlier (records entered late)"),
    ] = None,
) -> CommandContext:
    """FastAPI dependency: the context of a command from its actor and headers."""
    raw = request.headers.get(CORRELATION_HEADER)
    try:
        correlation = UUID(raw) if raw else uuid7()
    except ValueError:
        correlation = uuid7()
    if occurred_at is not None and occurred_at.tzinfo is None:
        msg = "X-Occurred-At needs a time zone"
        raise CommandError(msg)
    return CommandContext(actor=actor, correlation_id=correlation, occurred_at=occurred_at)


Context = Annotated[CommandContext, Depends(command_context)]


def expected_version(
    if_match: Annotated[
        str | None,
        Header(alias="If-Match", description="Stream version the change is based on (optimistic concurrency)"),
    ] = None,
) -> int | None:
    """FastAPI dependency: the version in `If-Match`, if any."""
    if if_match is None:
        return None
    try:
        return int(if_match.strip().strip('"').removeprefix("W/").strip('"'))
    except ValueError:
        msg = "If-Match must be a stream version number"
        raise CommandError(msg) from None


ExpectedVersion = Annotated[int | None, Depends(expected_version)]
