"""Events of the audit trail itself: signed chain checkpoints (every service) and audit queries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from contracts import topics
from contracts.envelope import ONE_LINE, Sha256
from contracts.event import Event


class ChainCheckpointed(Event):
    """A service signed the head of its hash chain (Ed25519), so a later rewrite of the chain shows.

    Each service appends these to its own stream `chain-checkpoints` and publishes them on its
    own topic; the signature covers `checkpoint_message(source, deployment, position, hash)`.
    """

    topic: ClassVar[str] = "<service>.events"

    position: int = Field(ge=1)
    """The last event the signature covers."""
    hash: Sha256
    """That event's hash: the head of the chain at `position`."""
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    """The first 16 hex digits of SHA-256 over the raw public key."""
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]


class AuditQueryMade(Event):
    """An audit reviewer (or anyone) asked the audit service something; the question is on record."""

    topic: ClassVar[str] = topics.AUDIT

    query: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """`timeline`, `pool`, `pool-diff`, `export`."""
    parameters: dict[str, Any]
    results: int = Field(ge=0)
    """How many entries were answered."""
    as_of: datetime | None = None


class LateEntryDeclared(Event):
    """Events were entered further back in time than the backdating window, by a caller permitted to, for a reason.

    Recorded by any service in the same transaction as the events it declares (a stream of its own,
    `late-entry-<id>`), so the audit trail shows a late entry as such (runtime.store, runtime.http).
    """

    topic: ClassVar[str] = "<service>.events"

    stream_id: str
    """The stream the late events were appended to."""
    first_version: int = Field(ge=1)
    last_version: int = Field(ge=1)
    occurred_at: datetime
    """When the caller says they happened."""
    window_days: int = Field(ge=0)
    """The backdating window they lie beyond."""
    permission: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """The permission the caller held for it."""
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=ONE_LINE)]


def checkpoint_message(source: str, deployment: str, position: int, head_hash: str) -> bytes:
    """The bytes a chain checkpoint signs."""
    return f"cadre-pool checkpoint v1|{source}|{deployment}|{position}|{head_hash}".encode()
