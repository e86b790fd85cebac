"""Refusals as RFC 9457 problems (application/problem+json): one shape for every error a service tells."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.status import HTTP_405_METHOD_NOT_ALLOWED

from runtime.errors import CommandError

PROBLEM_JSON = "application/problem+json"


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


def install_handlers(app: FastAPI) -> None:
    """Tell a command's refusal, a schema's and Starlette's own (404, 405, ...) as problems."""
    app.add_exception_handler(CommandError, _command_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
