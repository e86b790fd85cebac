"""Events of notify: who was told what, over which channel, and what became of each attempt."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import Field, StringConstraints

from contracts import topics
from contracts.envelope import NOT_BLANK_LINE
from contracts.event import Event
from contracts.registry import Language, Name, UserId

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NOT_BLANK_LINE)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Body = Annotated[str, StringConstraints(max_length=20_000)]


class Channel(StrEnum):
    """How a notification reaches its recipient."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    INBOX = "inbox"


class _NotifyEvent(Event):
    """An event of the notify service, on its topic."""

    topic: ClassVar[str] = topics.NOTIFY


class NotificationSent(_NotifyEvent):
    """A notification reached its channel.

    The SMTP server accepted it, the webhook answered 2xx, or it was placed in the recipient's in-app inbox.
    """

    notification_id: UUID
    """Derived from the source event, the rule, the recipient and the channel: the same inputs name the same
    notification, so a redelivered event can never make a second one."""
    source_event_id: UUID
    rule: RuleName
    channel: Channel
    recipient: UserId
    """The recipient's user id, or `cadre:<id>` / `email:<address>` for someone without an account."""
    recipient_name: Name
    address: Address = ""
    """Where it went: the email address or the webhook URL (empty for the inbox)."""
    language: Language
    subject: Body
    body: Body
    attempt: int = Field(ge=1)
    cadre_id: UUID | None = None


class NotificationFailed(_NotifyEvent):
    """An attempt to deliver a notification failed; `permanent` ones are dead letters and are not retried."""

    notification_id: UUID
    source_event_id: UUID
    rule: RuleName
    channel: Channel
    recipient: UserId
    attempt: int = Field(ge=1)
    error: Body
    permanent: bool
    retry_at: datetime | None = None
    """When the next attempt is due (temporary failures)."""
    cadre_id: UUID | None = None


class NotificationRead(_NotifyEvent):
    """The owner of an in-app inbox message marked it read."""

    notification_id: UUID
    user_id: UserId


class NotificationPreferencesSet(_NotifyEvent):
    """A user chose how to be notified (absent channels keep their defaults)."""

    user_id: UserId
    email: bool = True
    inbox: bool = True
    webhook_url: Address | None = None
    """An HTTPS (or loopback HTTP) endpoint that receives signed JSON copies of this user's notifications."""
    language: Language | None = None
