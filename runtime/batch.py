"""Many commands in one request: each through its own route (rules, scope checks, events), one group commit.

`POST /batch` takes up to `MAX_COMMANDS` commands, each a method, a path and a JSON body, and runs
every one of them through the service's own ASGI app, concurrently, with the caller's token and
correlation id: the same validation, authorization, rules and events as when sent one by one,
and their appends meet in the event store's group commit. Only the routes a service lists in
`ServiceSpec.batchable` are allowed (the commands an import sends, nothing with side effects
outside the event store). With `dry_run` every command is decided and checked and nothing is
written (`CommandContext.dry_run`). The answer lists each command's status and body, in order.
See ADR 0012.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Match, Route
from starlette.types import Message, Scope

from runtime import limits
from runtime.auth import CurrentActor
from runtime.errors import CommandError
from runtime.http import CORRELATION_HEADER, DRY_RUN_STATE

MAX_COMMANDS: Final = 2000


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

    @routes.post("/batch", tags=["batch"])
    async def run_batch(body: Batch, request: Request, actor: CurrentActor) -> BatchResult:
        """Run many commands as if sent one by one (each with its own rules, checks and events)."""
        del actor  # authenticated here once; each command checks its own permissions again
        for command in body.commands:
            template = _route_template(request, command)
            if template not in allowed:
                msg = f"{command.method} {command.path} is not a command this service runs in a batch"
                raise CommandError(msg, allowed=sorted(allowed))
        outcomes = await asyncio.gather(*(_run(request, command, dry_run=body.dry_run) for command in body.commands))
        return BatchResult(dry_run=body.dry_run, outcomes=list(outcomes))

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


async def _run(request: Request, command: Command, *, dry_run: bool) -> Outcome:
    """One command through the app itself (its middleware, routing, dependencies, error handlers)."""
    payload = orjson.dumps(command.body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"authorization", request.headers.get("authorization", "").encode()),
        (CORRELATION_HEADER.lower().encode(), str(request.state.correlation_id).encode()),
    ]
    if command.if_match is not None:
        headers.append((b"if-match", f'"{command.if_match}"'.encode()))
    scope: Scope = {
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
        "state": {DRY_RUN_STATE: dry_run, limits.BATCHED: True},
    }
    sent = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    raw = b"".join(chunks)
    return Outcome(status=status, body=orjson.loads(raw) if raw else None)
