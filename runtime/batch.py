"""Many commands in one request: each through its own route (rules, scope checks, events), one group commit.

`POST /batch` takes up to `MAX_COMMANDS` commands, each a method, a path and a JSON body, and runs
every one of them through the service's own ASGI app, concurrently, with the caller's token and
correlation id: the same validation, authorization, rules and events as when sent one by one,
and their appends meet in the event store's group commit. Only the routes a service lists in
`ServiceSpec.batchable` are allowed (the commands an import sends, nothing with side effects
outside the event store). With `dry_run` every command is decided and checked and nothing is
written (`CommandContext.dry_run`). The answer lists each command's status and body, in order.

What a batch saves is the cost around the commands, never a check: the commands of a batch share
one `Memo` for the lookups of facts that never change (an org unit's path and level: looked up
once per batch, not once per row), and each command's answer goes into the batch's answer as the
bytes its route wrote (not parsed and serialized again). See ADR 0012.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import AsyncExitStack
from typing import Annotated, Any, Final, Literal, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Match, Route
from starlette.types import Message, Scope

from runtime import limits
from runtime.auth import CurrentActor
from runtime.errors import CommandError
from runtime.guard import CORRELATION_HEADER, DRY_RUN_STATE

MAX_COMMANDS: Final = 2000
MEMO_STATE: Final = "memo"
"""Where a request's `Memo` lives in its ASGI state (one per batch, shared by its commands)."""

T = TypeVar("T")


class Memo:
    """Lookups of facts that never change once true (an org unit's path and level), made once per memo.

    Each request has one; the commands of a batch share the batch's, so a thousand nominations
    into ten units look up ten units. What was not found is not kept (it may appear later), nor
    is a failed lookup.
    """

    def __init__(self) -> None:
        self._found: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The value under `key`, loaded once by `load` (concurrent askers wait for the same load)."""
        known = self._found.get(key)
        if known is None:
            known = asyncio.ensure_future(load())
            self._found[key] = known
        try:
            value: T | None = await known
        except BaseException:
            self._forget(key, known)
            raise
        if value is None:
            self._forget(key, known)
        return value

    def _forget(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if self._found.get(key) is future:
            del self._found[key]


def memo_of(request: Request) -> Memo:
    """The request's memo: its batch's when it is a command of a batch, else its own."""
    state = request.scope.setdefault("state", {})
    memo = state.get(MEMO_STATE)
    if not isinstance(memo, Memo):
        memo = state[MEMO_STATE] = Memo()
    return memo


class Command(BaseModel):
    """One command of a batch."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["POST", "PUT", "PATCH"]
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./{}-]*$", max_length=300)]
    body: dict[str, Any] = Field(default_factory=dict)
    if_match: int | None = Field(default=None, description="The stream version the change is based on")


class Batch(BaseModel):
    """Commands to run as if sent one by one."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Decide and check every command; write nothing")
    commands: list[Command] = Field(min_length=1, max_length=MAX_COMMANDS)


class Outcome(BaseModel):
    """What one command answered."""

    status: int
    body: Any


class BatchResult(BaseModel):
    """Each command's answer, in the order sent."""

    dry_run: bool
    outcomes: list[Outcome]


def router(batchable: Sequence[str]) -> APIRouter:
    """The `/batch` route of a service that allows the routes `batchable` (path templates) in a batch."""
    allowed = frozenset(batchable)
    routes = APIRouter()

    @routes.post("/batch", tags=["batch"], response_model=BatchResult)
    async def run_batch(body: Batch, request: Request, actor: CurrentActor) -> Response:
        """Run many commands as if sent one by one (each with its own rules, checks and events)."""
        del actor  # authenticated here once; each command checks its own permissions again
        for command in body.commands:
            template = _route_template(request, command)
            if template not in allowed:
                msg = f"{command.method} {command.path} is not a command this service runs in a batch"
                raise CommandError(msg, allowed=sorted(allowed))
        memo = Memo()
        outcomes = await asyncio.gather(*(_run(request, command, body.dry_run, memo) for command in body.commands))
        head = b'{"dry_run":%s,"outcomes":[' % (b"true" if body.dry_run else b"false")
        return Response(head + b",".join(outcomes) + b"]}", media_type="application/json")

    return routes


def _routes(routes: Sequence[Any]) -> Iterator[Route]:
    """Every route, also those of included routers (which FastAPI wraps)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)


def _route_template(request: Request, command: Command) -> str | None:
    scope = {"type": "http", "method": command.method, "path": command.path, "root_path": ""}
    for route in _routes(request.app.router.routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path
    return None


def _scope(request: Request, command: Command, payload: bytes, dry_run: bool, memo: Memo) -> Scope:
    """The ASGI scope of one command of the batch `request`: its token, correlation id, dry run, memo."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"authorization", request.headers.get("authorization", "").encode()),
        (CORRELATION_HEADER.lower().encode(), str(request.state.correlation_id).encode()),
    ]
    if command.if_match is not None:
        headers.append((b"if-match", f'"{command.if_match}"'.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": command.method,
        "scheme": "http",
        "path": command.path,
        "raw_path": command.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
        "app": request.app,
        "state": {DRY_RUN_STATE: dry_run, MEMO_STATE: memo, limits.BATCHED: True},
        # The app's exception handlers, as its ExceptionMiddleware gave them to the batch request.
        "starlette.exception_handlers": request.scope["starlette.exception_handlers"],
    }


def _is_json(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"content-type" and value.split(b";")[0].strip().endswith((b"/json", b"+json"))
        for name, value in headers
    )


async def _run(request: Request, command: Command, dry_run: bool, memo: Memo) -> bytes:
    """One command through the app's router: its routing, dependencies, validation and error handlers.

    The app's middleware (correlation id, request metrics, telemetry) ran once, for the batch: the
    command inherits the batch's correlation id and log context. No rule lives in middleware:
    authentication, scope and role checks are the routes' own dependencies, so every command
    meets them here. Its answer as an `Outcome` in JSON: the body the route wrote, as it wrote it.
    """
    payload = orjson.dumps(command.body)
    scope = _scope(request, command, payload, dry_run, memo)
    sent = False
    status = 500
    json_body = False
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, json_body
        if message["type"] == "http.response.start":
            status = message["status"]
            json_body = _is_json(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        async with AsyncExitStack() as files:
            scope["fastapi_middleware_astack"] = files  # what FastAPI's own middleware would provide
            await request.app.router(scope, receive, send)
    except Exception as error:
        handler = request.app.exception_handlers.get(Exception)
        if handler is None:
            raise
        chunks.clear()
        await (await handler(Request(scope, receive, send), error))(scope, receive, send)
    raw = b"".join(chunks)
    if not raw:
        raw = b"null"
    elif not json_body:
        raw = orjson.dumps(raw.decode(errors="replace"))
    return b'{"status":%d,"body":%s}' % (status, raw)
