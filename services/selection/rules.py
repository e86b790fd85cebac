"""Selection's rules: a unit's leadership team decides what may change, without I/O.

A team is replayed from its stream; each decision returns the events to append or raises
`RuleViolationError` (422) / `ConflictError` (409). The quota rule spans the team's posts:
a unit holds at most its approved number of incumbents of a kind unless the appointment
carries a recorded over-quota decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

from contracts.assessment import Grade
from contracts.event import Event
from contracts.selection import (
    CadreAppointed,
    IncumbentAppointed,
    IncumbentLeft,
    OverQuota,
    PostChanged,
    PostCreated,
    PostKind,
    PostQuotaSet,
    Potential,
    Readiness,
    ReadinessReviewed,
    SuccessorNamed,
    SuccessorWithdrawn,
    TenureEnd,
)
from runtime.errors import ConflictError, NotFoundError, RuleViolationError


@dataclass
class Holder:
    """Who holds a post now."""

    name: str
    starts_on: date
    ends_by: date | None
    cadre_id: UUID | None


@dataclass
class Post:
    """One post of the team."""

    post_id: UUID
    kind: PostKind
    title: str
    rank: str
    holder: Holder | None = None
    successors: dict[UUID, Readiness] = field(default_factory=dict)


@dataclass
class Team:
    """A unit's leadership team as its stream tells it."""

    org_code: str
    version: int = 0
    quotas: dict[PostKind, int] = field(default_factory=dict)
    posts: dict[UUID, Post] = field(default_factory=dict)

    @classmethod
    def replay(cls, org_code: str, events: Iterable[Event]) -> Team:
        """Fold the team's events (an empty stream: a team with nothing yet)."""
        team = cls(org_code)
        for event in events:
            team.apply(event)
        return team

    def apply(self, event: Event) -> None:
        """Fold one event."""
        self.version += 1
        match event:
            case PostQuotaSet():
                self.quotas[event.kind] = event.approved
            case PostCreated():
                self.posts[event.post_id] = Post(event.post_id, event.kind, event.title, event.rank)
            case PostChanged():
                self.posts[event.post_id].title = event.title
                self.posts[event.post_id].rank = event.rank
            case IncumbentAppointed():
                self.posts[event.post_id].holder = Holder(
                    event.holder_name, event.starts_on, event.ends_by, event.cadre_id
                )
            case CadreAppointed():
                post = self.posts[event.post_id]
                post.holder = Holder(event.full_name, event.appointed_on, event.ends_by, event.cadre_id)
                post.successors.pop(event.cadre_id, None)
            case IncumbentLeft():
                self.posts[event.post_id].holder = None
            case SuccessorNamed() | ReadinessReviewed():
                self.posts[event.post_id].successors[event.cadre_id] = event.readiness
            case SuccessorWithdrawn():
                self.posts[event.post_id].successors.pop(event.cadre_id, None)
            case _:
                pass

    def post(self, post_id: UUID) -> Post:
        """The post, or 404."""
        try:
            return self.posts[post_id]
        except KeyError:
            msg = f"post {post_id} not found in the team of {self.org_code}"
            raise NotFoundError(msg) from None

    def filled(self, kind: PostKind) -> int:
        """How many posts of `kind` have an incumbent."""
        return sum(1 for p in self.posts.values() if p.kind is kind and p.holder is not None)


def set_quota(team: Team, kind: PostKind, approved: int, document_number: str) -> list[Event]:
    """Set the approved number of posts of a kind (lowering it below the filled posts is allowed: they count over)."""
    if team.quotas.get(kind) == approved:
        return []
    return [PostQuotaSet(org_code=team.org_code, kind=kind, approved=approved, document_number=document_number)]


def create_post(team: Team, event: PostCreated) -> list[Event]:
    """Set up a post; its id is the caller's (a retry of the same id is refused with 409)."""
    if event.post_id in team.posts:
        msg = f"post {event.post_id} already exists"
        raise ConflictError(msg)
    return [event]


def change_post(team: Team, post_id: UUID, title: str, rank: str) -> list[Event]:
    """Retitle or re-rank a post."""
    post = team.post(post_id)
    if (post.title, post.rank) == (title, rank):
        return []
    return [PostChanged(post_id=post_id, title=title, rank=rank)]


def _quota_check(team: Team, post: Post, over_quota: OverQuota | None) -> OverQuota | None:
    """The over-quota decision the filling of `post` needs and has (None: within the quota); 422 if it lacks one."""
    if post.holder is not None:
        return None  # one holder follows another: the count does not change
    approved = team.quotas.get(post.kind, 0)
    if team.filled(post.kind) < approved:
        return None
    if over_quota is None:
        msg = (
            f"{team.org_code} holds {team.filled(post.kind)} of {approved} approved {post.kind.value} posts:"
            " filling another needs a recorded over-quota decision (over_quota with its document and reason)"
        )
        raise RuleViolationError(msg)
    return over_quota


def _not_before(post: Post, on: date) -> None:
    if post.holder is not None and on < post.holder.starts_on:
        msg = f"the post's present holder started on {post.holder.starts_on}, after {on}"
        raise RuleViolationError(msg)


def appoint_incumbent(
    team: Team,
    post_id: UUID,
    *,
    holder_name: str,
    starts_on: date,
    ends_by: date | None,
    cadre_id: UUID | None,
    over_quota: OverQuota | None,
    today: date,
    birth_date: date | None = None,
) -> list[Event]:
    """Record who holds a vacant post (a present member of the team, or someone from outside the pool)."""
    post = team.post(post_id)
    if post.holder is not None:
        msg = f"post {post.title} is held by {post.holder.name}: record that tenure's end first"
        raise RuleViolationError(msg)
    _dates(starts_on, ends_by, today)
    if birth_date is not None and birth_date >= starts_on:
        msg = f"a holder born on {birth_date} cannot hold a post from {starts_on}"
        raise RuleViolationError(msg)
    decision = _quota_check(team, post, over_quota)
    return [
        IncumbentAppointed(
            post_id=post_id,
            holder_name=holder_name,
            starts_on=starts_on,
            ends_by=ends_by,
            cadre_id=cadre_id,
            over_quota=decision,
            birth_date=birth_date,
        )
    ]


def _dates(starts_on: date, ends_by: date | None, today: date) -> None:
    if starts_on > today:
        msg = "a tenure cannot start on a day that has not come"
        raise RuleViolationError(msg)
    if ends_by is not None and ends_by <= starts_on:
        msg = "ends_by must come after the start"
        raise RuleViolationError(msg)


def end_tenure(team: Team, post_id: UUID, *, left_on: date, reason: TenureEnd, note: str, today: date) -> list[Event]:
    """The incumbent leaves the post (age limit, end of term, appointed elsewhere, removed)."""
    post = team.post(post_id)
    if post.holder is None:
        msg = f"post {post.title} is vacant"
        raise RuleViolationError(msg)
    if reason is TenureEnd.SUCCEEDED:
        msg = "a tenure ends as succeeded only through an appointment to the post"
        raise RuleViolationError(msg)
    if left_on > today:
        msg = "a tenure cannot end on a day that has not come"
        raise RuleViolationError(msg)
    _not_before(post, left_on)
    return [IncumbentLeft(post_id=post_id, holder_name=post.holder.name, left_on=left_on, reason=reason, note=note)]


def name_successor(
    team: Team, post_id: UUID, *, cadre_id: UUID, full_name: str, readiness: Readiness, reason: str
) -> list[Event]:
    """Name a reserve as successor for a post (once; a second naming is a review)."""
    post = team.post(post_id)
    if cadre_id in post.successors:
        msg = f"cadre {cadre_id} is already a successor for {post.title}: review the readiness instead"
        raise ConflictError(msg)
    if post.holder is not None and post.holder.cadre_id == cadre_id:
        msg = "the post's holder cannot succeed to it"
        raise RuleViolationError(msg)
    return [SuccessorNamed(post_id=post_id, cadre_id=cadre_id, full_name=full_name, readiness=readiness, reason=reason)]


def review_readiness(team: Team, post_id: UUID, *, cadre_id: UUID, readiness: Readiness, reason: str) -> list[Event]:
    """Review a successor's readiness (a confirmation is recorded too: it is the review of a cycle)."""
    post = team.post(post_id)
    if cadre_id not in post.successors:
        msg = f"cadre {cadre_id} is not a successor for {post.title}"
        raise NotFoundError(msg)
    return [ReadinessReviewed(post_id=post_id, cadre_id=cadre_id, readiness=readiness, reason=reason)]


def withdraw_successor(team: Team, post_id: UUID, *, cadre_id: UUID, reason: str) -> list[Event]:
    """A cadre is no longer meant for the post."""
    post = team.post(post_id)
    if cadre_id not in post.successors:
        msg = f"cadre {cadre_id} is not a successor for {post.title}"
        raise NotFoundError(msg)
    return [SuccessorWithdrawn(post_id=post_id, cadre_id=cadre_id, reason=reason)]


def appointed_before(events: Sequence[Event], post_id: UUID, cadre_id: UUID, document_number: str) -> bool:
    """Whether the team's events already hold this appointment: the cadre holds the post, by this document."""
    team = Team.replay("", events)
    post = team.posts.get(post_id)
    if post is None or post.holder is None or post.holder.cadre_id != cadre_id:
        return False
    last = [e for e in events if isinstance(e, CadreAppointed) and e.post_id == post_id]
    return bool(last) and last[-1].cadre_id == cadre_id and last[-1].document_number == document_number


def appoint_cadre(
    team: Team,
    post_id: UUID,
    *,
    cadre_id: UUID,
    full_name: str,
    nominated_on: date,
    appointed_on: date,
    document_number: str,
    ends_by: date | None,
    over_quota: OverQuota | None,
    today: date,
    procedure_id: UUID | None = None,
) -> list[Event]:
    """Appoint a reserve to a post: the holder before (if any) leaves as succeeded, the cadre fills the post."""
    post = team.post(post_id)
    if post.holder is not None and post.holder.cadre_id == cadre_id:
        msg = f"cadre {cadre_id} already holds {post.title}"
        raise ConflictError(msg)
    _dates(appointed_on, ends_by, today)
    if appointed_on < nominated_on:
        msg = f"the appointment on {appointed_on} precedes the cadre's nomination on {nominated_on}"
        raise RuleViolationError(msg)
    _not_before(post, appointed_on)
    decision = _quota_check(team, post, over_quota)
    events: list[Event] = []
    if post.holder is not None:
        events.append(
            IncumbentLeft(
                post_id=post_id,
                holder_name=post.holder.name,
                left_on=appointed_on,
                reason=TenureEnd.SUCCEEDED,
                note=f"succeeded by {full_name} ({document_number})",
            )
        )
    events.append(
        CadreAppointed(
            post_id=post_id,
            cadre_id=cadre_id,
            full_name=full_name,
            org_code=team.org_code,
            kind=post.kind,
            post_title=post.title,
            appointed_on=appointed_on,
            document_number=document_number,
            ends_by=ends_by,
            over_quota=decision,
            procedure_id=procedure_id,
        )
    )
    return events


# The 9-box: performance (the grade of an assessment cycle) across, potential (rated) up.

PERFORMANCE_OF_GRADE: dict[Grade, Potential] = {
    Grade.EXCELLENT: Potential.HIGH,
    Grade.COMPETENT: Potential.MEDIUM,
    Grade.BASICALLY_COMPETENT: Potential.LOW,
    Grade.INCOMPETENT: Potential.LOW,
}
"""The four grades on the 9-box's three columns: excellent high, competent medium, the two below low."""

LEVELS: tuple[Potential, ...] = (Potential.LOW, Potential.MEDIUM, Potential.HIGH)


@dataclass(frozen=True)
class Box:
    """One of the nine boxes: a performance column and a potential row."""

    performance: Potential
    potential: Potential

    @property
    def number(self) -> int:
        """1 (low, low) to 9 (high, high), row by row from the bottom: the numbering talent reviews use."""
        return LEVELS.index(self.potential) * 3 + LEVELS.index(self.performance) + 1


def box_of(grade: Grade, potential: Potential) -> Box:
    """Where a cadre with this grade and this potential stands."""
    return Box(PERFORMANCE_OF_GRADE[grade], potential)


def grid() -> list[Box]:
    """The nine boxes in reading order: high potential first, low performance first in a row."""
    return [Box(performance, potential) for potential in reversed(LEVELS) for performance in LEVELS]


def movement(before: Box, after: Box) -> str:
    """How a cadre moved between two cycles: `up`, `down`, `stayed`, or `across` (one axis up, the other down)."""
    rise = (
        LEVELS.index(after.performance) - LEVELS.index(before.performance),
        LEVELS.index(after.potential) - LEVELS.index(before.potential),
    )
    if rise == (0, 0):
        return "stayed"
    if min(rise) >= 0:
        return "up"
    if max(rise) <= 0:
        return "down"
    return "across"


def rating_counts_for(label: str, cycle_name: str, starts_on: date) -> bool:
    """Whether a potential rating labelled `label` counts for an assessment cycle.

    It does when the label is the cycle's name, or names the year the cycle starts as a number
    of its own (`2026`, `Talent review 2026`, not `20261`). `queries.RATING_COUNTS_SQL` asks the same of the database.
    """
    return label == cycle_name or re.search(rf"(^|[^0-9]){starts_on.year}([^0-9]|$)", label) is not None
