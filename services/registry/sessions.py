"""The console's sign-in sessions, kept where every console process reads them (issue 22, ADR 0023).

A session is known here only by the SHA-256 of its id (the id itself lives in the person's
sealed cookie): it is open from sign-in until sign-out, its end, or the person's grant going
(a session counts only while its user holds a grant). The console asks on every request.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runtime import clock
from runtime.auth import OWN_RECORD, CurrentActor
from runtime.db import own_user, row_security
from runtime.errors import ConflictError, ForbiddenError, NotFoundError, RuleViolationError
from runtime.service import service_of

SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS console_sessions (
        session_hash  bytea PRIMARY KEY,
        user_id       text NOT NULL,
        started_at    timestamptz NOT NULL,
        ends_at       timestamptz NOT NULL,
        ended_at      timestamptz
    )
    """,
    "CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions (user_id)",
    *row_security("console_sessions", own_user("user_id")),
)

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{32,128}$")]

router = APIRouter(tags=["access"])


class OpenSession(BaseModel):
    """A session the console opened for the caller."""

    model_config = ConfigDict(extra="forbid")

    session_id: SessionId = Field(description="The session's secret id (only its hash is kept)")
    ends_at: datetime = Field(description="When it ends whatever happens")


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


@router.post("/sessions", status_code=status.HTTP_204_NO_CONTENT, openapi_extra=OWN_RECORD)
async def open_session(body: OpenSession, request: Request, actor: CurrentActor) -> None:
    """Record a session of yours as open (the console, at sign-in); 403 while you hold no grant.

    Opening the same session again is harmless (its first start and end stand); an id that is
    another person's session is refused (409).
    """
    now = clock.now()
    if body.ends_at <= now:
        msg = "a session must end after it starts"
        raise RuleViolationError(msg)
    pool = service_of(request).pool
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM access_grants WHERE user_id = $1", actor.user):
            msg = "you hold no grant on this platform: a session of yours would open nothing"
            raise ForbiddenError(msg)
        await conn.execute("DELETE FROM console_sessions WHERE ends_at < $1", now)  # the ended ones, as they pass
        holder = await conn.fetchval(
            "INSERT INTO console_sessions (session_hash, user_id, started_at, ends_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (session_hash) DO UPDATE SET session_hash = EXCLUDED.session_hash RETURNING user_id",
            _hash(body.session_id),
            actor.user,
            now,
            body.ends_at,
        )
        if holder != actor.user:  # a secret id already someone else's: never shared, never taken over
            msg = "that session id is taken"
            raise ConflictError(msg)


@router.get(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, openapi_extra=OWN_RECORD
)
async def session_open(session_id: SessionId, request: Request, actor: CurrentActor) -> Response:
    """204 while this session of yours is open; 404 once it ended (signed out, over, or your grant went)."""
    found = await service_of(request).pool.fetchval(
        "SELECT 1 FROM console_sessions s WHERE s.session_hash = $1 AND s.user_id = $2 AND s.ended_at IS NULL"
        " AND s.ends_at > $3 AND EXISTS (SELECT 1 FROM access_grants g WHERE g.user_id = s.user_id)",
        _hash(session_id),
        actor.user,
        clock.now(),
    )
    if not found:
        msg = "session not found"
        raise NotFoundError(msg)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, openapi_extra=OWN_RECORD)
async def end_session(session_id: SessionId, request: Request, actor: CurrentActor) -> None:
    """End a session of yours (the console, at sign-out): a copy of its cookie opens nothing after."""
    await service_of(request).pool.execute(
        "UPDATE console_sessions SET ended_at = $3 WHERE session_hash = $1 AND user_id = $2 AND ended_at IS NULL",
        _hash(session_id),
        actor.user,
        clock.now(),
    )
