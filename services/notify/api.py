"""Notify's HTTP API: each user's inbox and preferences, and the org-scoped delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict

from contracts.envelope import Role
from contracts.notify import Channel, NotificationPreferencesSet, NotificationRead
from contracts.registry import Language
from runtime import egress
from runtime.auth import CurrentActor, require_role
from runtime.commands import Accepted, check_expected, retrying
from runtime.db import in_subtree_sql
from runtime.errors import NotFoundError, RuleViolationError
from runtime.export import Table, table_or_rows
from runtime.http import Change, Create
from runtime.service import ActorDB, ServicePool, ServiceStore, given

router = APIRouter()


Allow = Annotated[egress.Allowlist, given(egress.Allowlist)]


class MessageView(BaseModel):
    """One message in an inbox."""

    notification_id: UUID
    rule: str
    subject: str
    body: str
    cadre_id: UUID | None
    created_at: datetime
    read_at: datetime | None


class DeliveryView(BaseModel):
    """One planned notification over one channel, and what became of it."""

    notification_id: UUID
    source_event_id: UUID
    rule: str
    channel: Channel
    recipient_kind: str
    recipient_key: str
    recipient: str | None
    org_path: str
    cadre_id: UUID | None
    status: str
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None


class Preferences(BaseModel):
    """How the current user wants to be told."""

    model_config = ConfigDict(extra="forbid")

    email: bool = True
    inbox: bool = True
    webhook_url: AnyHttpUrl | None = None
    language: Language | None = None


@router.get("/inbox", tags=["inbox"])
async def inbox(
    actor: CurrentActor,
    pool: ActorDB,
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[MessageView]:
    """Your own in-app messages, newest first."""
    rows = await pool.fetch(
        "SELECT * FROM messages WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)"
        " ORDER BY created_at DESC, notification_id LIMIT $3",
        actor.user,
        unread_only,
        limit,
    )
    return [MessageView.model_validate(dict(row)) for row in rows]


@router.post("/inbox/{notification_id}/read", tags=["inbox"])
async def mark_read(notification_id: UUID, act: Create, pool: ServicePool, store: ServiceStore) -> Accepted:
    """Mark one of your messages read (again: nothing changes)."""
    stream = f"notification-{notification_id}"

    async def attempt() -> Accepted:
        row = await pool.fetchrow(
            "SELECT m.read_at, m.org_path, m.cadre_id, d.version FROM messages m"
            " JOIN deliveries d USING (notification_id) WHERE m.notification_id = $1 AND m.user_id = $2",
            notification_id,
            act.ctx.actor.user,
        )
        if row is None:
            msg = "message not found"
            raise NotFoundError(msg)
        if row["read_at"] is not None:
            return Accepted.of(stream, row["version"], [])
        event = NotificationRead(notification_id=notification_id, user_id=act.ctx.actor.user)
        envelopes = await store.append(
            stream, row["version"], [event], ctx=act.ctx, org_path=row["org_path"], cadre_id=row["cadre_id"]
        )
        return Accepted.of(stream, row["version"], envelopes)

    return act.tagged(await retrying(attempt, expected=None))


@router.get("/preferences", tags=["preferences"])
async def get_preferences(actor: CurrentActor, pool: ActorDB) -> Preferences:
    """Your notification preferences (defaults until you set them)."""
    row = await pool.fetchrow("SELECT * FROM preferences WHERE user_id = $1", actor.user)
    if row is None:
        return Preferences()
    return Preferences(email=row["email"], inbox=row["inbox"], webhook_url=row["webhook_url"], language=row["language"])


@router.put("/preferences", tags=["preferences"])
async def set_preferences(
    body: Preferences, act: Change, pool: ServicePool, store: ServiceStore, allow: Allow
) -> Accepted:
    """Choose your channels, a webhook that receives signed copies (a public address: 422 else), and your language."""
    stream = f"preferences-{act.ctx.actor.user}"

    if body.webhook_url is not None:
        try:
            await egress.check(str(body.webhook_url), allow)
        except egress.RefusedDestinationError as error:
            raise RuleViolationError(str(error), field="webhook_url") from error

    async def attempt() -> Accepted:
        version = await pool.fetchval("SELECT version FROM preferences WHERE user_id = $1", act.ctx.actor.user) or 0
        check_expected(stream, act.expected, version)
        event = NotificationPreferencesSet(
            user_id=act.ctx.actor.user,
            email=body.email,
            inbox=body.inbox,
            webhook_url=str(body.webhook_url) if body.webhook_url else None,
            language=body.language,
        )
        envelopes = await store.append(stream, version, [event], ctx=act.ctx, org_path=act.ctx.actor.org_path)
        return Accepted.of(stream, version, envelopes)

    return act.tagged(await retrying(attempt, expected=act.expected))


@router.get("/deliveries", tags=["delivery log"], response_model=list[DeliveryView])
async def deliveries(
    actor: CurrentActor,
    pool: ActorDB,
    table: Table,
    status: Literal["pending", "retrying", "sent", "dead", "skipped", "cancelled"] | None = None,
    cadre_id: UUID | None = None,
    rule: str | None = None,
    channel: Channel | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryView] | Response:
    """The delivery log of your subtree, newest first (organizers and auditors)."""
    require_role(actor, Role.ORGANIZER, Role.AUDITOR)
    filters: list[Any] = [status, cadre_id, rule, channel.value if channel else None]
    rows = await pool.fetch(
        f"SELECT * FROM deliveries WHERE {in_subtree_sql('org_path', '$1')}"  # noqa: S608 - fixed SQL fragment
        " AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR cadre_id = $3)"
        " AND ($4::text IS NULL OR rule = $4) AND ($5::text IS NULL OR channel = $5)"
        " ORDER BY planned_at DESC, notification_id LIMIT $6",
        actor.org_path,
        *filters,
        limit,
    )
    return table_or_rows(table, [DeliveryView.model_validate(dict(row)) for row in rows], filename="deliveries")
