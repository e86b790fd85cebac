"""HTTP plumbing shared by the services: problem+json errors, correlation ids, metrics."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import unquote, unquote_to_bytes
from uuid import UUID

import orjson
import structlog
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.status import HTTP_405_METHOD_NOT_ALLOWED
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.envelope import uuid7
from runtime import clock, limits, logs, metrics
from runtime.auth import CurrentActor, Permission, caller_of
from runtime.context import CommandContext, LateEntry
from runtime.db import ROLLED_BACK, transient
from runtime.errors import CommandError, ForbiddenError, PayloadTooLargeError, RuleViolationError

log = logs.get(__name__)

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode()
DRY_RUN_STATE = "dry_run"
"""Set in a request's ASGI state by the batch endpoint only (runtime.batch): no header can set it."""


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem response (a list it carries is cut to `MAX_VALIDATION_ERRORS`, with `<name>_count`)."""
    for name, value in list(extra.items()):
        if isinstance(value, list) and len(value) > MAX_VALIDATION_ERRORS:
            extra[name] = value[:MAX_VALIDATION_ERRORS]
            extra.setdefault(f"{name}_count", len(value))
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _command_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, CommandError)
    response = problem(error.status, error.title, error.detail, **error.extra)
    response.headers.update(error.headers)
    return response


MAX_VALIDATION_ERRORS: Final = 20
"""The most errors a 422 lists: a body of 100,000 unknown fields gets 20 and a count, not 100,000."""
_MAX_ERROR_TEXT: Final = 200


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `errors` (and, when there were more, `errors_count`) of a 422, bounded in number and size.

    Every service's schema errors are told through here (`install`); `problem` bounds any other
    list a refusal carries the same way.
    """
    shown = [
        {
            "loc": [str(part)[:_MAX_ERROR_TEXT] if isinstance(part, str) else part for part in e.get("loc", ())][:16],
            "msg": str(e.get("msg", ""))[:_MAX_ERROR_TEXT],
            "type": str(e.get("type", ""))[:_MAX_ERROR_TEXT],
        }
        for e in itertools.islice(errors, MAX_VALIDATION_ERRORS)
    ]
    told: dict[str, Any] = {"errors": shown}
    if len(errors) > MAX_VALIDATION_ERRORS:
        told["errors_count"] = len(errors)
    return told


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return problem(422, "Invalid request", "the request does not match the schema", **validation_errors(error.errors()))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    response = problem(error.status_code, str(error.detail), str(error.detail))
    response.headers.update(error.headers or {})
    if error.status_code == HTTP_405_METHOD_NOT_ALLOWED:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route allows on the request's path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def _correlation(raw: bytes | None) -> UUID:
    try:
        return UUID(raw.decode()) if raw else uuid7()
    except ValueError:
        return uuid7()


API_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
"""Sent with every API answer (one the route set itself wins): nothing is sniffed, cached, framed or referred."""

PAGE_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The console's pages: scripts only from its own address, never inline (an injected script does not run).

Styles may be inline (a progress bar's width, the indicator style htmx adds, Swagger UI's): a
style cannot run code, and the pages' texts are escaped where they are written.
"""

PAGE_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", PAGE_CSP.encode()),
)
"""Sent with every page of the console (its own Cache-Control decides what may be kept)."""

SECURITY_HEADERS: Final = frozenset(name.decode() for name, _ in (*API_HEADERS, *PAGE_HEADERS))
"""The names of the headers above: a proxy passes a service's own on, never replacing them with a page's."""

_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters no text of the platform holds (tab, line feed and carriage return aside)."""
_CONTROL_OR_BREAK: Final = re.compile("[\x00-\x1f\x7f]")
"""Control characters, line breaks included: never in a path, a query or a header-bound field."""
TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""What a text of a JSON body may hold, as the OpenAPI documents declare (runtime.openapi); `_CONTROL` is the rest."""
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def has_control(text: str, *, breaks: bool = True) -> bool:
    """Whether `text` holds a control character (with `breaks`, CR, LF and TAB count as ones)."""
    return (_CONTROL_OR_BREAK if breaks else _CONTROL).search(text) is not None


def _control_in(value: Any, where: str = "body") -> str | None:
    """Where in a parsed JSON value a string (or a key) holds a control character other than a line break."""
    if isinstance(value, str):
        return where if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _CONTROL.search(key):
                return where
            inner = _control_in(item, f"{where}.{key}")
            if inner:
                return inner
    elif isinstance(value, list):
        for index, item in enumerate(value):
            inner = _control_in(item, f"{where}[{index}]")
            if inner:
                return inner
    return None


MAX_OBJECT_MEMBERS: Final = 1000
"""The most members one JSON object of a body may have (no schema of ours has a tenth of it).

Validating and refusing 100,000 unknown fields one by one took a service most of a second;
a body that wide is refused before any model sees it.
"""


def _too_wide(value: Any, where: str = "body") -> str | None:
    """Where in a parsed JSON value an object has more than `MAX_OBJECT_MEMBERS` members."""
    if isinstance(value, dict):
        if len(value) > MAX_OBJECT_MEMBERS:
            return where
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        inner = _too_wide(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if inner:
            return inner
    return None


def _json_refusal(parsed: Any) -> tuple[str, str] | None:
    """Why a parsed JSON body is refused before any route reads it (and where), if it is."""
    where = _control_in(parsed)
    if where is not None:
        return f"a text holds a control character ({where})", where
    where = _too_wide(parsed)
    if where is not None:
        return f"an object has more than {MAX_OBJECT_MEMBERS} members ({where})", where
    return None


class _BodyTooLargeError(Exception):
    pass


async def _send_problem(
    send: Send, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> None:
    response = problem(status, title, detail, headers=headers, **extra)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def _send_failure(send: Send, error: Exception) -> None:
    """The answer to an error no handler knew: 503 with Retry-After for a passing database condition, else 500."""
    if transient(error):
        log.warning("database unavailable for a moment", error=repr(error))
        if isinstance(error, ROLLED_BACK):
            detail = "the database refused or rolled back this request for a moment; nothing was changed: try again"
        else:
            # The connection may have broken after the commit was sent: the outcome is unknown, so the
            # answer must not claim that nothing changed (docs/reliability.md).
            detail = (
                "the database was out of reach; this request may or may not have been applied:"
                " look before trying again, or try again with the same ids"
            )
        await _send_problem(send, 503, "Service unavailable", detail, headers={"Retry-After": "1"})
        return
    log.error("unhandled error", error=repr(error), exc_info=error)
    await _send_problem(send, 500, "Internal error", "the server failed; nothing was changed by this request")


class Guard:
    """The rules every request meets before any route, once for every service (docs/security.md).

    - A body larger than `max_body` (on a path of `body_limits`, than the limit its route applies
      itself with `read_body`: a signed bundle) is refused (413) before it is read: by its
      Content-Length, or as it streams in; so before it is parsed, and before the token is looked at.
    - A control character in the path or the query, or (but for line breaks) in any string or key
      of a JSON body, is refused (400/422): nothing downstream ever meets a NUL.
    - Every answer carries the security headers and the correlation id (the caller's, if a UUID).
    - An error no handler knew becomes a problem+json answer (503 with Retry-After for a passing database
      condition, `runtime.db.transient`; else 500), and the connection stays open.
    - Each request is timed (`cadre_http_request_seconds`).

    Plain ASGI rather than `@app.middleware("http")`: that one runs every request in an extra
    task and measurably slowed the services under load.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body: int = 8 * 1024 * 1024,
        body_limits: Mapping[str, int] | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = API_HEADERS,
        check_json: bool = True,
    ) -> None:
        self._app = app
        self._service = service
        self._max_body = max_body
        self._body_limits = dict(body_limits or {})
        self._headers = headers
        self._check_json = check_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == CORRELATION_HEADER_BYTES), None)
        correlation = _correlation(given)
        scope.setdefault("state", {})["correlation_id"] = correlation
        status = 500
        started_response = False
        extra_headers = [*self._headers, (CORRELATION_HEADER_BYTES, str(correlation).encode())]

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in extra_headers if name not in present),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(correlation_id=str(correlation))
        started = time.perf_counter()
        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_problem(send_with_headers, *refusal)
                return
            checked = await self._checked_body(scope, receive, send_with_headers)
            if checked is None:
                return
            await self._app(scope, checked, send_with_headers)
        except _BodyTooLargeError:
            if not started_response:
                await _send_problem(send_with_headers, *self._too_large(scope))
        except Exception as error:
            if started_response:
                raise  # a half-sent answer cannot be mended: the server ends the connection
            await _send_failure(send_with_headers, error)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_LATENCY.labels(self._service, scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )

    def _limit(self, scope: Scope) -> int:
        """The largest body accepted on this path: the service's, or one a route bounds itself (`read_body`)."""
        return self._body_limits.get(scope["path"], self._max_body)

    def _too_large(self, scope: Scope) -> tuple[int, str, str]:
        return 413, "Request too large", f"the body is larger than {self._limit(scope)} bytes"

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """A problem with the request line or its declared size, seen before anything is read."""
        query = unquote_to_bytes(scope.get("query_string", b"")).decode("utf-8", "replace")
        if has_control(scope["path"]) or has_control(query.replace("+", " ")):
            return 400, "Bad request", "the path or the query holds a control character"
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return 400, "Bad request", "Content-Length is not a number"
            if declared > self._limit(scope):
                return self._too_large(scope)
        return None

    async def _checked_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The body, counted (and for JSON read whole and checked for control characters); None once refused."""
        if scope["method"] not in _BODY_METHODS:
            return receive
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"").lower()
        is_json = self._check_json and b"json" in content_type
        declared = any(k == b"content-length" for k, _ in scope["headers"])
        if declared and not is_json:
            return self._counting(
                receive, self._limit(scope)
            )  # its declared length was checked; the server holds the body to it
        # JSON is read whole to be checked; a body of undeclared length (chunked) to be measured before the
        # route reads it (a route's body parsing would turn any error into a 400).
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # the client went away; the app sees the same
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit(scope):
                raise _BodyTooLargeError
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            parsed = orjson.loads(body) if body and is_json else None
        except orjson.JSONDecodeError:
            parsed = None  # the route's own parsing answers malformed JSON (422)
        refusal = _json_refusal(parsed)
        if refusal is not None:
            detail, where = refusal
            await _send_problem(send, 422, "Invalid request", detail, errors=[{"loc": where}])
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _counting(self, receive: Receive, limit: int) -> Receive:
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise _BodyTooLargeError
            return message

        return counted


def install(
    app: FastAPI, *, service: str, max_body: int = 8 * 1024 * 1024, body_limits: Mapping[str, int] | None = None
) -> None:
    """Add problem+json handlers and the `Guard` (limits, control characters, headers, correlation ids, metrics)."""
    app.add_exception_handler(CommandError, _command_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(Guard, service=service, max_body=max_body, body_limits=body_limits)


_ISO_8601: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_8601(value: object) -> object:
    """A text must be ISO 8601, as the documents declare (pydantic alone would take `0` for 1970-01-01)."""
    if isinstance(value, str) and not _ISO_8601.match(value):
        msg = "an ISO 8601 date (YYYY-MM-DD), not a number"
        raise ValueError(msg)
    return value


Day = Annotated[date, BeforeValidator(_iso_8601)]
"""A date parameter (query or header): ISO 8601 only."""
Moment = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time parameter (query or header): ISO 8601 only."""

LATE_REASON_HEADER: Final = "X-Late-Entry-Reason"
_LATE_REASON_MAX = 500
DEFAULT_BACKDATING_WINDOW: Final = timedelta(days=30)


async def command_context(
    request: Request,
    actor: CurrentActor,
    occurred_at: Annotated[
        Moment | None,
        Header(
            alias="X-Occurred-At",
            description="When it happened, if earlier (records entered late). Further back than the service's"
            " backdating window it needs the `late_entry` permission and X-Late-Entry-Reason",
        ),
    ] = None,
    late_reason: Annotated[
        str | None,
        Header(
            alias=LATE_REASON_HEADER,
            description="Why a record is entered this late (percent-encoded UTF-8): recorded with it",
            max_length=3 * _LATE_REASON_MAX,
        ),
    ] = None,
) -> CommandContext:
    """FastAPI dependency: the context of a command from its actor and headers.

    Backdating is an explicit, bounded act: `X-Occurred-At` may lie up to the service's backdating
    window back (`BACKDATING_WINDOW_DAYS`) for any organizer; further back the caller needs the
    `late_entry` permission (403 without) and a reason (422 without), and the store records both
    in a `LateEntryDeclared` event beside the command's own (runtime.store).
    """
    correlation: UUID = getattr(request.state, "correlation_id", None) or _correlation(
        request.headers.get(CORRELATION_HEADER, "").encode()
    )
    if occurred_at is not None and occurred_at.tzinfo is None:
        msg = "X-Occurred-At needs a time zone"
        raise CommandError(msg)
    late = _late_entry(request, occurred_at, late_reason)
    dry_run = bool(request.scope.get("state", {}).get(DRY_RUN_STATE))
    return CommandContext(
        actor=actor, correlation_id=correlation, occurred_at=occurred_at, dry_run=dry_run, late_entry=late
    )


def _late_entry(request: Request, occurred_at: datetime | None, raw_reason: str | None) -> LateEntry | None:
    """The declaration a command entered beyond the backdating window needs; None within it."""
    if raw_reason is not None and has_control(unquote(raw_reason)):  # refused whether or not it is needed
        msg = f"{LATE_REASON_HEADER} must be one line"
        raise RuleViolationError(msg)
    if occurred_at is None:
        return None
    window: timedelta = getattr(request.app.state, "backdating_window", DEFAULT_BACKDATING_WINDOW)
    if occurred_at >= clock.now() - window:
        return None
    days = window.days
    if Permission.LATE_ENTRY not in caller_of(request).permissions:
        msg = (
            f"X-Occurred-At lies more than {days} days back: entering records that late needs the"
            f" {Permission.LATE_ENTRY.value} permission"
        )
        raise ForbiddenError(msg)
    reason = unquote(raw_reason or "").strip()
    if not reason or len(reason) > _LATE_REASON_MAX or has_control(reason):
        msg = f"a record entered more than {days} days late needs its reason in {LATE_REASON_HEADER} (one line)"
        raise RuleViolationError(msg)
    return LateEntry(reason=reason, permission=Permission.LATE_ENTRY.value, window_days=days)


Context = Annotated[CommandContext, Depends(command_context)]


async def expensive(request: Request, actor: CurrentActor) -> None:
    """FastAPI dependency of reads that cost much (an audit question records an event): the actor's share."""
    limits.charge(request, actor, limits.EXPENSIVE)


Expensive = Depends(expensive)
"""Add to a route's (or a router's) `dependencies` to count its calls against the actor's share of expensive reads."""


_VERSION_DIGITS: Final = 18
"""A stream version has at most this many digits (it is a PostgreSQL bigint)."""
IF_MATCH_PATTERN: Final = rf'^(W/)?"?[0-9]{{1,{_VERSION_DIGITS}}}"?$'


async def expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Stream version the change is based on (optimistic concurrency)",
            json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> int | None:
    """FastAPI dependency: the version in `If-Match`, if any (400 unless it is one, as IF_MATCH_PATTERN declares)."""
    if if_match is None:
        return None
    digits = if_match.strip().removeprefix("W/").strip('"')
    if not digits.isascii() or not digits.isdigit() or len(digits) > _VERSION_DIGITS:
        msg = "If-Match must be a stream version number"
        raise CommandError(msg)
    return int(digits)


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
