"""Events of selection: leadership teams, their posts and quotas, incumbents, successors, appointments.

A unit's leadership team is one stream (`team-<org code>`): its approved number of posts per
kind, its posts, who holds each, who is named to succeed, and the appointments out of the
pool. One stream, so that the rules spanning posts (the quota of a kind) are decided against
one version under optimistic concurrency. A cadre's potential rating is the cadre's own.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from contracts import topics
from contracts.envelope import OrgCode
from contracts.event import Event, Value
from contracts.registry import Name, Statement, Text


class PostKind(StrEnum):
    """Posts of a team are principal (party secretary, county head) or deputy."""

    PRINCIPAL = "principal"
    DEPUTY = "deputy"


class Readiness(StrEnum):
    """How soon a successor could take the post, best first."""

    READY_NOW = "ready_now"
    ONE_TO_TWO_YEARS = "one_to_two_years"
    THREE_PLUS_YEARS = "three_plus_years"


class TenureEnd(StrEnum):
    """Why an incumbent left a post."""

    SUCCEEDED = "succeeded"
    """Someone was appointed to the post (the appointment ends the tenure before it)."""
    APPOINTED_ELSEWHERE = "appointed_elsewhere"
    AGE_LIMIT = "age_limit"
    END_OF_TERM = "end_of_term"
    REMOVED = "removed"


class Potential(StrEnum):
    """The rated judgement of a cadre's potential, lowest first (the 9-box's vertical axis)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class OverQuota(Value):
    """The recorded decision that lets a unit hold more incumbents of a kind than its approved number."""

    document_number: Name
    reason: Statement


class _SelectionEvent(Event):
    """An event of the selection service, on its topic."""

    topic: ClassVar[str] = topics.SELECTION


class PostQuotaSet(_SelectionEvent):
    """A unit's approved number of posts of a kind (职数) was set."""

    org_code: OrgCode
    kind: PostKind
    approved: int = Field(ge=0, le=200)
    document_number: Name
    """The approving document."""


class PostCreated(_SelectionEvent):
    """A leadership post was set up in a unit's team."""

    post_id: UUID
    org_code: OrgCode
    kind: PostKind
    title: Name
    rank: Name
    """The rank the post carries (e.g. county level principal)."""


class PostChanged(_SelectionEvent):
    """A post's title or rank changed (both given, as they now are)."""

    post_id: UUID
    title: Name
    rank: Name


class IncumbentAppointed(_SelectionEvent):
    """Someone holds a post from a date: a team's present members, or anyone appointed from outside the pool."""

    post_id: UUID
    holder_name: Name
    starts_on: date
    ends_by: date | None = None
    """When the holder reaches the age limit or the end of term, whichever comes first."""
    cadre_id: UUID | None = None
    over_quota: OverQuota | None = None
    """Set when this incumbent takes the unit beyond its approved number of the post's kind."""
    birth_date: date | None = None
    """The holder's date of birth, for the team's age structure (none: not recorded here; a cadre of the
    pool's is the registry's)."""


class IncumbentLeft(_SelectionEvent):
    """An incumbent's tenure ended."""

    post_id: UUID
    holder_name: Name
    left_on: date
    reason: TenureEnd
    note: Text = ""


class SuccessorNamed(_SelectionEvent):
    """A reserve cadre was named as a successor for a post, with a readiness."""

    post_id: UUID
    cadre_id: UUID
    full_name: Name
    readiness: Readiness
    reason: Statement


class ReadinessReviewed(_SelectionEvent):
    """A successor's readiness was reviewed (changed or confirmed), with the reason."""

    post_id: UUID
    cadre_id: UUID
    readiness: Readiness
    reason: Statement


class SuccessorWithdrawn(_SelectionEvent):
    """A cadre is no longer a successor for a post."""

    post_id: UUID
    cadre_id: UUID
    reason: Statement


class CadreAppointed(_SelectionEvent):
    """A reserve cadre was appointed out of the pool to a post (one decision, with its document).

    It fills the post; an `IncumbentLeft(reason=succeeded)` of the holder before it comes in the
    same append. The registry takes the cadre out of the pool as *appointed*, linked to the post.
    """

    post_id: UUID
    cadre_id: UUID
    full_name: Name
    org_code: OrgCode
    """The post's unit."""
    kind: PostKind
    post_title: Name
    appointed_on: date
    document_number: Name
    ends_by: date | None = None
    over_quota: OverQuota | None = None
    procedure_id: UUID | None = None
    """The appointment procedure that decided it; none for an appointment recorded before procedures were."""


class PotentialRated(_SelectionEvent):
    """A cadre's potential was rated, with the reason, in a review cycle (the rater is the envelope's actor)."""

    cadre_id: UUID
    potential: Potential
    cycle: Name
    """The review it belongs to (e.g. 2026)."""
    reason: Statement
