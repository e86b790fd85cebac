"""Events of multi-level sync: who owns a stream, what a higher level decides, who is linked.

A deployment (one full stack: Kafka, PostgreSQL, every service) owns a subtree of the
organization. Its events reach the levels above it (MirrorMaker 2 or signed bundles);
what a higher level decides about a lower level's cadre goes down as a directive.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import Field, StringConstraints

from contracts import topics
from contracts.envelope import OrgPath
from contracts.event import Event

DeploymentId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
"""A deployment's name: the alias MirrorMaker puts before its topics at the level above."""
PublicKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
"""An Ed25519 (or X25519) public key: base64 of its 32 raw bytes."""
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class StreamHandedOver(Event):
    """The last word of a deployment on a stream: from now on `to_deployment` writes it.

    Every service appends it to its own streams of a cadre that moves to another
    deployment; the new owner writes only once it has received it (its next version
    follows this one), and the old owner refuses any later write.
    """

    topic: ClassVar[str] = "<service>.events"

    to_deployment: DeploymentId
    reason: Reason = ""


class _SyncEvent(Event):
    """An event of the sync service, on its topic."""

    topic: ClassVar[str] = topics.SYNC


class DeploymentLinked(_SyncEvent):
    """A deployment vouches for a deployment below it: its root unit and its public key.

    Appended by the sync service for each of its children (and again when a key changes).
    The levels further up learn from it whom to trust for events forwarded from below.
    """

    deployment: DeploymentId
    root: OrgPath
    public_key: PublicKey
    parent: DeploymentId


class DirectiveKind(StrEnum):
    """What a higher level may decide about a lower level's cadre, and the command it becomes there."""

    ASSIGN_POSTING = "assign_posting"
    """Training: `POST /cadres/{cadre_id}/postings` (e.g. a posting to a higher authority)."""
    RECORD_EVALUATION = "record_evaluation"
    """Assessment: `POST /cadres/{cadre_id}/evaluations` (an evaluation by the higher level)."""
    CONFIRM_EXIT = "confirm_exit"
    """Registry: `POST /cadres/{cadre_id}/retirement` (an exit confirmed above)."""
    HAND_OVER = "hand_over"
    """Registry: `POST /cadres/{cadre_id}/handover` (the cadre's streams move to another deployment)."""
    ADMIT = "admit"
    """Registry: `POST /cadres/{cadre_id}/admission` (an entry procedure run above admitted the candidate into the
    pool of a unit below; issued by the sync service when the procedure concludes, ADR 0039)."""
    APPOINT = "appoint"
    """Selection: `POST /cadres/{cadre_id}/appointment` (a level above appointed a reserve of a unit below to a
    post of that unit's team: the body names the unit, the post, the date and the document; ADR 0042)."""


class DirectiveIssued(_SyncEvent):
    """A higher level decided something about a cadre that a lower deployment owns."""

    directive_id: UUID
    target_deployment: DeploymentId
    cadre_id: UUID
    kind: DirectiveKind
    body: dict[str, Any]
    """The command's body, as the owning service's API takes it."""
    note: Reason = ""


class DirectiveApplied(_SyncEvent):
    """The owning deployment applied a directive (once), as a command on the higher level's authority."""

    directive_id: UUID
    issued_by: DeploymentId
    cadre_id: UUID
    events: list[UUID] = Field(default_factory=list)
    """The events the command recorded (empty when it had been applied before)."""


class DirectiveRefused(_SyncEvent):
    """The owning deployment refused a directive; the reason goes back up."""

    directive_id: UUID
    issued_by: DeploymentId
    cadre_id: UUID
    status: int = Field(ge=400, le=599)
    reason: Reason
