"""The scheduler and sender: delivers every due notification once, and records what became of it.

Each round claims due deliveries (`pending` or `retrying`, `due_at` passed) with a
lease, under `FOR UPDATE SKIP LOCKED`, so replicas share the work and a crashed
sender's rows come back when its lease runs out. For each one it resolves the
recipient from the directory, renders the template in the recipient's language,
sends, and appends `NotificationSent` or `NotificationFailed` to the
notification's stream with the version it read: the outcome and the row's new
status are one transaction, and a second writer's outcome is refused.

Because the schedule is the `deliveries` table, a reminder survives restarts, and
because a sent row is never claimed again, it fires once. On SIGTERM the round
in progress finishes (sends complete and are recorded) before the service stops.
Only a crash between an SMTP server's "250 OK" and the commit can repeat an email (a
database out of reach after the send is waited for, within half the lease);
its Message-ID (and a webhook's Idempotency-Key) is the notification id, so the
receiving side can recognise the repeat.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson

from contracts.envelope import Actor, Role
from contracts.event import Event
from contracts.notify import Channel, NotificationFailed, NotificationSent
from contracts.registry import Language
from runtime import clock, logs, metrics
from runtime.context import CommandContext
from runtime.db import UNREACHABLE, Pool
from runtime.errors import ConcurrencyError
from runtime.store import EventStore
from services.notify import rules
from services.notify.channels import DeliveryError, EmailChannel, Message, WebhookChannel
from services.notify.templates import render

log = logs.get(__name__)

_CLAIM: Final = """
    UPDATE deliveries SET lease_until = $3::timestamptz + make_interval(secs => $2)
    WHERE notification_id IN (
        SELECT notification_id FROM deliveries
        WHERE status IN ('pending', 'retrying') AND due_at <= $3
          AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY due_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING *
"""


@dataclass(frozen=True, slots=True)
class Person:
    """A recipient resolved from the directory."""

    recipient: str
    """User id, or `cadre:<id>` for a cadre without an account."""
    name: str
    email: str | None
    language: str | None
    has_account: bool

    @classmethod
    def named(cls, row: Any, role: str) -> Person:
        """The `role` (leader, mentor) a directory row names in its `<role>_user`, `_name`, `_email`, `_language`."""
        user, name, email, language = (row[f"{role}_{column}"] for column in ("user", "name", "email", "language"))
        return cls(user, name, email, language, has_account=True)


@dataclass(frozen=True, slots=True)
class Skip:
    """Nobody to tell (no leader designated, no mentor): the delivery is skipped, not failed."""

    reason: str


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """How hard to try."""

    batch_size: int = 100
    concurrency: int = 10
    lease_seconds: float = 120.0
    max_attempts: int = 6
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    default_language: Language = Language.ZH


class Dispatcher:
    """Claims due deliveries, sends them over their channel, and records each outcome as an event."""

    def __init__(
        self,
        pool: Pool,
        store: EventStore,
        *,
        email: EmailChannel | None,
        webhook: WebhookChannel,
        policy: DispatchPolicy,
    ) -> None:
        self._pool = pool
        self._store = store
        self._email = email
        self._webhook = webhook
        self._policy = policy
        self._slots = asyncio.Semaphore(policy.concurrency)

    async def dispatch_due(self) -> int:
        """One round: claim what is due and deliver it; the number of deliveries handled."""
        rows = await self._pool.fetch(_CLAIM, self._policy.batch_size, self._policy.lease_seconds, clock.now())
        if rows:
            await asyncio.gather(*(self._deliver_one(row) for row in rows))
        return len(rows)

    async def _deliver_one(self, row: Any) -> None:
        async with self._slots:
            try:
                await self._deliver(row)
            except Exception as error:  # one delivery's bug must not stop the others
                log.exception("delivery failed unexpectedly", notification_id=str(row["notification_id"]))
                await self._failed(row, row["recipient"] or row["recipient_key"], f"internal error: {error!r}", None)

    async def _deliver(self, row: Any) -> None:
        person = await self._resolve(row)
        if isinstance(person, Skip):
            await self._skip(row, person.reason)
            return
        if person is None:
            await self._failed(row, row["recipient_key"], "recipient not in the directory yet", None)
            return
        channel = Channel(row["channel"])
        prefs = await self._pool.fetchrow("SELECT * FROM preferences WHERE user_id = $1", person.recipient)
        address, reason = self._address(channel, person, prefs)
        if reason is not None:
            await self._skip(row, reason)
            return
        language = Language((prefs and prefs["language"]) or person.language or self._policy.default_language)
        context = orjson.loads(row["context"])
        subject, body = render(row["template"], language, {**context, "recipient_name": person.name})
        message = Message(row["notification_id"], person.name, subject, body, language.value)
        try:
            if channel is Channel.EMAIL:
                assert self._email is not None
                await self._email.send(message, address)
            elif channel is Channel.WEBHOOK:
                extra = {"rule": row["rule"], "recipient": person.recipient, "cadre_id": row["cadre_id"]}
                await self._webhook.send(message, address, {k: str(v) if v else None for k, v in extra.items()})
        except DeliveryError as error:
            await self._failed(row, person.recipient, str(error), error.permanent)
            return
        event = NotificationSent(
            notification_id=row["notification_id"],
            source_event_id=row["source_event_id"],
            rule=row["rule"],
            channel=channel,
            recipient=person.recipient,
            recipient_name=person.name,
            address=address,
            language=language,
            subject=subject,
            body=body,
            attempt=row["attempts"] + 1,
            cadre_id=row["cadre_id"],
        )
        await self._record_sent(row, event)
        metrics.NOTIFICATIONS.labels(channel.value, "sent").inc()

    async def _record_sent(self, row: Any, event: Event) -> None:
        """Record a send that happened: while the database is out of reach, try again within half the lease.

        Giving up at once would let the lease lapse and the message go out a second time.
        """
        deadline = time.monotonic() + self._policy.lease_seconds / 2
        while True:
            try:
                await self._record(row, event)
            except UNREACHABLE as error:
                if time.monotonic() > deadline:
                    raise
                log.warning(
                    "recording a sent notification failed; trying again",
                    notification_id=str(row["notification_id"]),
                    error=repr(error),
                )
                await asyncio.sleep(0.5)
            else:
                return

    def _address(self, channel: Channel, person: Person, prefs: Any) -> tuple[str, str | None]:  # noqa: PLR0911 - one answer per reason
        """Where `channel` reaches `person`, or why it does not."""
        if channel is Channel.EMAIL:
            if self._email is None:
                return "", "email is not configured (SMTP_HOST)"
            if prefs is not None and not prefs["email"]:
                return "", "email turned off by the recipient"
            return (person.email, None) if person.email else ("", "no email address")
        if channel is Channel.WEBHOOK:
            url = prefs["webhook_url"] if prefs is not None else None
            return (url, None) if url else ("", "no webhook configured")
        if not person.has_account:
            return "", "no user account for an inbox"
        if prefs is not None and not prefs["inbox"]:
            return "", "inbox turned off by the recipient"
        return "", None

    async def _resolve(self, row: Any) -> Person | Skip | None:  # noqa: PLR0911 - one answer per case
        """The person behind the row's recipient role; None when the directory does not know them yet."""
        kind, key = rules.RecipientKind(row["recipient_kind"]), row["recipient_key"]
        if kind is rules.RecipientKind.LEADER:
            unit = await self._pool.fetchrow("SELECT * FROM units WHERE code = $1", key)
            if unit is None:
                return None
            if unit["leader_user"] is None:
                return Skip(f"unit {key} has no responsible leader designated")
            return Person.named(unit, "leader")
        if kind is rules.RecipientKind.ORGANIZER:
            organizer = await self._pool.fetchrow("SELECT name FROM organizers WHERE user_id = $1", key)
            if organizer is None:
                return Skip(f"{key} is no longer an organizer")
            return Person(key, organizer["name"], None, None, has_account=True)
        cadre = await self._pool.fetchrow("SELECT * FROM pool_cadres WHERE cadre_id = $1::uuid", key)
        if cadre is None:
            return None
        if kind is rules.RecipientKind.MENTOR:
            if cadre["mentor_user"] is None:
                return Skip("the cadre has no mentor")
            return Person.named(cadre, "mentor")
        user = cadre["user_id"]
        return Person(
            user or f"cadre:{key}", cadre["full_name"], cadre["email"], cadre["language"], has_account=user is not None
        )

    async def _skip(self, row: Any, reason: str) -> None:
        await self._pool.execute(
            "UPDATE deliveries SET status = 'skipped', last_error = $2, lease_until = NULL"
            " WHERE notification_id = $1 AND status IN ('pending', 'retrying')",
            row["notification_id"],
            reason,
        )
        metrics.NOTIFICATIONS.labels(row["channel"], "skipped").inc()

    async def _failed(self, row: Any, recipient: str, error: str, permanent: bool | None) -> None:
        """Record a failed attempt; `permanent=None` means temporary unless attempts are used up."""
        attempt = row["attempts"] + 1
        dead = bool(permanent) or attempt >= self._policy.max_attempts
        retry_at = None
        if not dead:
            delay = rules.backoff(attempt, self._policy.retry_base_seconds, self._policy.retry_max_seconds)
            retry_at = clock.now() + delay
        event = NotificationFailed(
            notification_id=row["notification_id"],
            source_event_id=row["source_event_id"],
            rule=row["rule"],
            channel=Channel(row["channel"]),
            recipient=recipient,
            attempt=attempt,
            error=error[:20_000],
            permanent=dead,
            retry_at=retry_at,
            cadre_id=row["cadre_id"],
        )
        await self._record(row, event)
        metrics.NOTIFICATIONS.labels(row["channel"], "dead" if dead else "failed").inc()
        log.warning("delivery failed", notification_id=str(row["notification_id"]), error=error, permanent=dead)

    async def _record(self, row: Any, event: Event) -> None:
        ctx = CommandContext(
            actor=Actor(user="system:notify", org_path=row["org_path"], role=Role.SYSTEM),
            correlation_id=row["correlation_id"],
            causation_id=row["source_event_id"],
        )
        try:
            await self._store.append(
                f"notification-{row['notification_id']}",
                row["version"],
                [event],
                ctx=ctx,
                org_path=row["org_path"],
                cadre_id=row["cadre_id"],
            )
        except ConcurrencyError:
            log.warning("outcome already recorded by another sender", notification_id=str(row["notification_id"]))
