"""Notify's tables: its directory of the registry, the planned deliveries, the inbox, preferences.

`Planner` reads the registry, training, assessment and selection topics through one
consumer group: registry events keep the directory (the runtime's view of the registry,
`runtime.registry_view`: units and their leaders, cadres and their mentors, addresses
and languages; the organizers and their units; training's programmes; selection's
procedures as they opened), and every event is matched against the rules in
`rules.plan`. Each intent becomes one delivery row per channel, keyed by a notification
id derived from the event, rule, recipient and channel, so an event delivered twice
plans nothing new. The planning happens in the same transaction as
the consumer's watermark.

`NotifyProjection` folds notify's own events (inline, in the append's transaction):
an attempt's outcome updates its delivery row; a sent inbox notification becomes a
message; read marks and preferences are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson

from contracts.envelope import Role
from contracts.notify import Channel, NotificationFailed, NotificationPreferencesSet, NotificationRead, NotificationSent
from contracts.procedure import NoticePublished, ObjectionRaised, ProcedureOpened
from contracts.registry import AccessGranted, AccessRevoked
from contracts.training import TrainingEnrolled, TrainingProgramScheduled
from runtime import clock, registry_view
from runtime.db import Conn, in_scope, own_user, row_security, system_only
from runtime.projection import Recorded, Typed
from runtime.registry_view import RegistryView
from services.notify import rules

SCHEMA: Final = (
    *registry_view.SCHEMA,
    """
    CREATE TABLE IF NOT EXISTS programs (
        program_id  uuid PRIMARY KEY,
        title       text NOT NULL,
        starts_on   date NOT NULL,
        ends_on     date NOT NULL,
        location    text NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS deliveries (
        notification_id  uuid PRIMARY KEY,
        source_event_id  uuid NOT NULL,
        correlation_id   uuid NOT NULL,
        rule             text NOT NULL,
        template         text NOT NULL,
        channel          text NOT NULL,
        recipient_kind   text NOT NULL,
        recipient_key    text NOT NULL,
        recipient        text,
        org_path         text COLLATE "C" NOT NULL,
        cadre_id         uuid,
        context          jsonb NOT NULL,
        subject_ref      text COLLATE "C",
        due_at           timestamptz NOT NULL,
        status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'retrying', 'sent', 'dead', 'skipped', 'cancelled')),
        attempts         int NOT NULL DEFAULT 0,
        version          int NOT NULL DEFAULT 0,
        lease_until      timestamptz,
        last_error       text,
        planned_at       timestamptz NOT NULL,
        sent_at          timestamptz
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS organizers (
        user_id   text PRIMARY KEY,
        name      text NOT NULL,
        org_code  text NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS procedures (
        procedure_id        uuid PRIMARY KEY,
        kind                text NOT NULL,
        org_path            text COLLATE "C" NOT NULL,
        candidate_name      text NOT NULL,
        objection_due_days  int NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_at) WHERE status IN ('pending', 'retrying')",
    (
        "CREATE INDEX IF NOT EXISTS deliveries_subject ON deliveries (subject_ref)"
        " WHERE status IN ('pending', 'retrying') AND subject_ref IS NOT NULL"
    ),
    "CREATE INDEX IF NOT EXISTS deliveries_log ON deliveries (org_path, planned_at)",
    """
    CREATE TABLE IF NOT EXISTS messages (
        notification_id  uuid PRIMARY KEY,
        user_id          text NOT NULL,
        org_path         text COLLATE "C" NOT NULL,
        cadre_id         uuid,
        rule             text NOT NULL,
        subject          text NOT NULL,
        body             text NOT NULL,
        created_at       timestamptz NOT NULL,
        read_at          timestamptz
    )
    """,
    "CREATE INDEX IF NOT EXISTS messages_owner ON messages (user_id, created_at DESC)",
    """
    CREATE TABLE IF NOT EXISTS preferences (
        user_id      text PRIMARY KEY,
        email        boolean NOT NULL,
        inbox        boolean NOT NULL,
        webhook_url  text,
        language     text,
        version      int NOT NULL
    )
    """,
    # Who reads what (row-level security, runtime.db): an actor its subtree; a person its own inbox and preferences.
    *system_only("programs"),
    *system_only("organizers"),
    *system_only("procedures"),
    *row_security("deliveries", in_scope("org_path")),
    *row_security("messages", f"({own_user('user_id')} OR {in_scope('org_path')})"),
    *row_security("preferences", own_user("user_id")),
)

_VIEW: Final = RegistryView()
"""The directory: the runtime's view of the registry (units and their leaders, cadres and their mentors)."""
_DIRECTORY: Final = frozenset(
    {
        TrainingProgramScheduled.event_type,
        AccessGranted.event_type,
        AccessRevoked.event_type,
        ProcedureOpened.event_type,
    }
)
"""What the directory keeps beside the registry's view: programmes, organizers, procedures."""


class Planner:
    """Keeps the directory and plans deliveries from the registry's, training's and assessment's events."""

    name = "planner"

    def __init__(self, policy: rules.Policy, channels: Sequence[Channel]) -> None:
        self._policy = policy
        self._channels = list(channels)

    def handles(self, event_type: str) -> bool:
        """What the directory keeps and what the rules plan from (others are skipped unparsed)."""
        return _VIEW.handles(event_type) or event_type in _DIRECTORY or event_type in rules.PLANNED

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Directory first, then the plan, one event at a time in topic order."""
        now = clock.now()
        for recorded in events:
            await _directory(conn, recorded)
            if recorded.envelope.event_type not in rules.PLANNED:
                continue
            facts = await _facts(conn, recorded)
            planned = rules.plan(recorded, facts, self._policy, now)
            for cancel in planned.cancels:
                await _cancel(conn, cancel)
            if planned.intents:
                await self._insert(conn, recorded, planned.intents, now)

    async def _insert(self, conn: Conn, recorded: Recorded, intents: Sequence[rules.Intent], now: datetime) -> None:
        env = recorded.envelope
        rows: list[tuple[Any, ...]] = []
        for intent in intents:
            context = orjson.dumps(intent.context, default=str).decode()
            for channel in self._channels:
                nid = rules.notification_id(env.event_id, intent.rule, intent.recipient, channel)
                rows.append(
                    (nid, env.event_id, env.correlation_id, intent.rule, intent.template, channel.value,
                     intent.recipient.kind.value, intent.recipient.key, env.org_path, env.cadre_id, context,
                     intent.subject_ref, intent.due_at or now, now)
                )  # fmt: skip
        await conn.executemany(
            "INSERT INTO deliveries (notification_id, source_event_id, correlation_id, rule, template, channel,"
            " recipient_kind, recipient_key, org_path, cadre_id, context, subject_ref, due_at, planned_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14)"
            " ON CONFLICT (notification_id) DO NOTHING",
            rows,
        )


async def _directory(conn: Conn, recorded: Recorded) -> None:
    # One event at a time: each plan reads the directory as it stood at its event.
    if _VIEW.handles(recorded.envelope.event_type):
        await _VIEW.apply(conn, [recorded])
        return
    event = recorded.event
    if isinstance(event, TrainingProgramScheduled):
        await conn.execute(
            "INSERT INTO programs (program_id, title, starts_on, ends_on, location) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (program_id) DO NOTHING",
            event.program_id,
            event.title,
            event.starts_on,
            event.ends_on,
            event.location,
        )
    elif isinstance(event, AccessGranted | AccessRevoked):
        if isinstance(event, AccessGranted) and event.role is Role.ORGANIZER:
            await conn.execute(
                "INSERT INTO organizers (user_id, name, org_code) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id) DO UPDATE SET name = $2, org_code = $3",
                event.user_id,
                event.name,
                event.org_code,
            )
        else:  # revoked, or granted another role
            await conn.execute("DELETE FROM organizers WHERE user_id = $1", event.user_id)
    elif isinstance(event, ProcedureOpened):
        await conn.execute(
            "INSERT INTO procedures (procedure_id, kind, org_path, candidate_name, objection_due_days)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (procedure_id) DO NOTHING",
            event.procedure_id,
            event.kind.value,
            recorded.envelope.org_path,
            event.candidate_name,
            event.rules.objection_due_days,
        )


async def _procedure_facts(conn: Conn, procedure_id: UUID) -> rules.ProcedureFacts | None:
    """The procedure as it opened, and the organizers at the nearest unit at or above it that has any."""
    row = await conn.fetchrow("SELECT * FROM procedures WHERE procedure_id = $1", procedure_id)
    if row is None:
        return None
    found = await conn.fetch(
        "SELECT o.user_id, u.path FROM organizers o JOIN units u ON u.code = o.org_code"
        " WHERE $1 = u.path OR $1 LIKE u.path || '.%' ORDER BY length(u.path) DESC, o.user_id",
        row["org_path"],
    )
    nearest = [r["user_id"] for r in found if r["path"] == found[0]["path"]]
    return rules.ProcedureFacts(row["kind"], row["candidate_name"], row["objection_due_days"], tuple(nearest))


async def _facts(conn: Conn, recorded: Recorded) -> rules.Facts:
    env, event = recorded.envelope, recorded.event
    unit = await conn.fetchrow("SELECT name FROM units WHERE code = $1", rules.unit_of(env.org_path))
    cadre = (
        await conn.fetchrow(
            "SELECT full_name, position, mentor_name FROM pool_cadres WHERE cadre_id = $1", env.cadre_id
        )
        if env.cadre_id is not None
        else None
    )
    program = (
        await conn.fetchrow("SELECT * FROM programs WHERE program_id = $1", event.program_id)
        if isinstance(event, TrainingEnrolled)
        else None
    )
    return rules.Facts(
        cadre_name=cadre["full_name"] if cadre else "",
        cadre_position=cadre["position"] if cadre else "",
        unit_name=unit["name"] if unit else "",
        mentor_name=(cadre["mentor_name"] or "") if cadre else "",
        program_title=program["title"] if program else "",
        program_starts_on=program["starts_on"] if program else None,
        program_ends_on=program["ends_on"] if program else None,
        program_location=program["location"] if program else "",
        procedure=(
            await _procedure_facts(conn, event.procedure_id)
            if isinstance(event, NoticePublished | ObjectionRaised)
            else None
        ),
    )


async def _cancel(conn: Conn, cancel: rules.Cancel) -> None:
    if cancel.cadre_id is not None:
        await conn.execute(
            "UPDATE deliveries SET status = 'cancelled', lease_until = NULL WHERE cadre_id = $1"
            " AND subject_ref IS NOT NULL AND status IN ('pending', 'retrying')",
            cancel.cadre_id,
        )
    if cancel.prefix is not None:
        await conn.execute(
            "UPDATE deliveries SET status = 'cancelled', lease_until = NULL WHERE subject_ref >= $1"
            " AND subject_ref < $1 || chr(1114111) AND status IN ('pending', 'retrying')",
            cancel.prefix,
        )


class NotifyProjection(Typed):
    """Notify's own events, folded inline: attempts, inbox messages, read marks, preferences."""

    name = "notify"

    events = (
        NotificationSent,
        NotificationFailed,
        NotificationRead,
        NotificationPreferencesSet,
    )

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Each event updates the row it names."""
        for recorded in events:
            env, event = recorded.envelope, recorded.event
            if isinstance(event, NotificationSent):
                await conn.execute(
                    "UPDATE deliveries SET status = 'sent', attempts = $2, version = $3, lease_until = NULL,"
                    " sent_at = $4, recipient = $5, last_error = NULL WHERE notification_id = $1",
                    event.notification_id,
                    event.attempt,
                    env.stream_version,
                    env.recorded_at,
                    event.recipient,
                )
                if event.channel is Channel.INBOX:
                    await conn.execute(
                        "INSERT INTO messages (notification_id, user_id, org_path, cadre_id, rule, subject, body,"
                        " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                        event.notification_id,
                        event.recipient,
                        env.org_path,
                        event.cadre_id,
                        event.rule,
                        event.subject,
                        event.body,
                        env.recorded_at,
                    )
            elif isinstance(event, NotificationFailed):
                await conn.execute(
                    "UPDATE deliveries SET status = $2, attempts = $3, version = $4, lease_until = NULL,"
                    " due_at = coalesce($5, due_at), last_error = $6, recipient = $7 WHERE notification_id = $1",
                    event.notification_id,
                    "dead" if event.permanent else "retrying",
                    event.attempt,
                    env.stream_version,
                    event.retry_at,
                    event.error,
                    event.recipient,
                )
            elif isinstance(event, NotificationRead):
                await conn.execute(
                    "UPDATE messages SET read_at = coalesce(read_at, $3) WHERE notification_id = $1 AND user_id = $2",
                    event.notification_id,
                    event.user_id,
                    env.recorded_at,
                )
                await conn.execute(
                    "UPDATE deliveries SET version = $2 WHERE notification_id = $1",
                    event.notification_id,
                    env.stream_version,
                )
            elif isinstance(event, NotificationPreferencesSet):
                await conn.execute(
                    "INSERT INTO preferences (user_id, email, inbox, webhook_url, language, version)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET email = $2, inbox = $3,"
                    " webhook_url = $4, language = $5, version = $6",
                    event.user_id,
                    event.email,
                    event.inbox,
                    event.webhook_url,
                    event.language.value if event.language else None,
                    env.stream_version,
                )
