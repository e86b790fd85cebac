"""HTTP plumbing shared by the services: problem+json errors, correlation ids, metrics."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.envelope import uuid7
from runtime import logs, metrics
from runtime.auth import CurrentActor
from runtime.db import UNREACHABLE, unreachable
from runtime.errors import CommandError, PayloadTooLargeError
from runtime.store import CommandContext

log = logs.get(__name__)

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode()
DRY_RUN_STATE = "dry_run"
"""Set in a request's ASGI state by the batch endpoint only (runtime.batch): no header can set it."""


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


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


async def _unavailable(_: Request, error: Exception) -> Response:
    # The connection may have broken after the commit was sent: the outcome is unknown, so the
    # answer must not claim that nothing changed.
    log.warning("dependency unavailable", error=repr(error))
    return problem(
        503,
        "Service unavailable",
        "the database was out of reach; this request may or may not have been applied:"
        " look before trying again, or try again with the same ids",
        headers={"Retry-After": "1"},
    )


async def _interface_error(request: Request, error: Exception) -> Response:
    if unreachable(error):
        return await _unavailable(request, error)
    return await _unexpected_error(request, error)


async def _unexpected_error(_: Request, error: Exception) -> Response:
    log.error("unhandled error", error=repr(error), exc_info=error)
    return problem(500, "Internal error", "the server failed; nothing was changed by this request")


def _correlation(raw: bytes | None) -> UUID:
    try:
        return UUID(raw.decode()) if raw else uuid7()
    except ValueError:
        return uuid7()


class CorrelationMiddleware:
    """Give each request a correlation id (the caller's, if a UUID), log with it, echo it, time it.

    Plain ASGI rather than `@app.middleware("http")`: that one runs every request in
    an extra task and measurably slowed the services under load.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == CORRELATION_HEADER_BYTES), None)
        correlation = _correlation(given)
        scope.setdefault("state", {})["correlation_id"] = correlation
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (CORRELATION_HEADER_BYTES, str(correlation).encode()),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
        started = time.perf_counter()
        try:
            await self._app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_LATENCY.labels(self._service, scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )


def install(app: FastAPI, *, service: str) -> None:
    """Add problem+json handlers, correlation ids, request metrics and `/metrics`."""
    app.add_exception_handler(CommandError, _command_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unavailable in UNREACHABLE:
        app.add_exception_handler(unavailable, _unavailable)
    app.add_exception_handler(asyncpg.InterfaceError, _interface_error)
    app.add_exception_handler(Exception, _unexpected_error)

    app.add_middleware(CorrelationMiddleware, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def command_context(
    request: Request,
    actor: CurrentActor,
    occurred_at: Annotated[
        datetime | None,
        Header(alias="X-Occurred-At", description="When it happened, if earlier (records entered late)"),
    ] = None,
) -> CommandContext:
    """FastAPI dependency: the context of a command from its actor and headers."""
    correlation: UUID = getattr(request.state, "correlation_id", None) or _correlation(
        request.headers.get(CORRELATION_HEADER, "").encode()
    )
    if occurred_at is not None and occurred_at.tzinfo is None:
        msg = "X-Occurred-At needs a time zone"
        raise CommandError(msg)
    dry_run = bool(request.scope.get("state", {}).get(DRY_RUN_STATE))
    return CommandContext(actor=actor, correlation_id=correlation, occurred_at=occurred_at, dry_run=dry_run)


Context = Annotated[CommandContext, Depends(command_context)]


async def expected_version(
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


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it exceeds `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        msg = f"the body has {int(declared):,} bytes; at most {limit:,} are accepted"
        raise PayloadTooLargeError(msg, limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            msg = f"the body has more than {limit:,} bytes; at most {limit:,} are accepted"
            raise PayloadTooLargeError(msg, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
