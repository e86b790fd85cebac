"""The guard each HTTP request passes first: limits, control characters, security headers, correlation ids, metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote_to_bytes
from uuid import UUID

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.envelope import TEXT, uuid7
from runtime import logs, metrics
from runtime.db import ROLLED_BACK, transient
from runtime.problems import problem

log = logs.get(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_HEADER_BYTES = CORRELATION_HEADER.lower().encode()
DRY_RUN_STATE = "dry_run"
"""Set in a request's ASGI state by the batch endpoint only (runtime.batch): no header can set it."""


def correlation_of(raw: bytes | None) -> UUID:
    """The correlation id a caller sent (a UUID), else a new one."""
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
TEXT_PATTERN: Final = TEXT
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
        correlation = correlation_of(given)
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
