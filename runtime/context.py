"""Who asks for a change, in which conversation, and when it happened (a record entered late declares itself)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from uuid import UUID

from contracts.audit import LateEntryDeclared
from contracts.envelope import Actor, Envelope, Role
from runtime import clock


@dataclass(frozen=True, slots=True)
class LateEntry:
    """Why a command's events are entered beyond the backdating window, and on which permission (runtime.http)."""

    reason: str
    permission: str
    window_days: int


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked for a change, and which conversation it belongs to."""

    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None = None
    occurred_at: datetime | None = None
    """When it happened in the world, if earlier than now (records entered late)."""
    decided_at: datetime = field(default_factory=clock.now)
    """When the command was decided: its events happened then unless `occurred_at` says otherwise."""
    dry_run: bool = False
    """Decide and check, write nothing (a batch's dry run): `append` answers what it would record."""
    late_entry: LateEntry | None = None
    """Set when `occurred_at` lies beyond the backdating window: the store records a `LateEntryDeclared` too."""

    @property
    def occurred(self) -> datetime:
        """When the command's events happened."""
        return self.occurred_at or self.decided_at

    @property
    def day(self) -> date:
        """The organization's date on which the command's events happened: the rules' "today"."""
        return clock.date_of(self.occurred)

    @classmethod
    def reacting_to(cls, envelope: Envelope, service: str, *, org_path: str | None = None) -> CommandContext:
        """The context of a command a service issues by itself in reaction to `envelope`.

        The actor is the service (role `system`) acting at the event's org unit (or at `org_path`);
        the correlation id carries over and the causation id names the event.
        """
        return cls(
            actor=Actor(user=f"system:{service}", org_path=org_path or envelope.org_path, role=Role.SYSTEM),
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )

    def late_declaration(
        self, stream_id: str, first_version: int, last_version: int
    ) -> tuple[LateEntryDeclared, CommandContext] | None:
        """The `LateEntryDeclared` that events entered this late are recorded with, and its own context; else None.

        The declaration happens now (its context has no `occurred_at`), in a stream of its own just before them.
        """
        late, occurred_at = self.late_entry, self.occurred_at
        if late is None or occurred_at is None:
            return None
        event = LateEntryDeclared(
            stream_id=stream_id,
            first_version=first_version,
            last_version=last_version,
            occurred_at=occurred_at,
            window_days=late.window_days,
            permission=late.permission,
            reason=late.reason,
        )
        return event, replace(self, occurred_at=None, late_entry=None)
