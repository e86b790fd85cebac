"""The pool of a subtree as it stood at a moment, folded from archived events (pure functions).

Only events recorded at or before the moment count: what the system knew then, not what
was entered later about that time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from contracts.assessment import EvaluationRecorded
from contracts.envelope import in_subtree
from contracts.registry import CadreNominated, CadreProfileUpdated, CadreRetired, MentorAssigned
from contracts.training import PostingAssigned, PostingCompleted
from runtime.projection import Recorded

RELEVANT = frozenset(
    {
        CadreNominated.event_type,
        CadreProfileUpdated.event_type,
        MentorAssigned.event_type,
        CadreRetired.event_type,
        PostingAssigned.event_type,
        PostingCompleted.event_type,
        EvaluationRecorded.event_type,
    }
)


class Posting(BaseModel):
    """Where a cadre was posted."""

    posting_id: UUID
    kind: str
    host_org_code: str
    host_unit_name: str
    position: str
    starts_on: str
    planned_end_on: str


class PoolEntry(BaseModel):
    """One cadre of the pool at a moment."""

    cadre_id: UUID
    full_name: str
    org_code: str
    org_path: str
    current_position: str
    mentor: str | None = None
    posting: Posting | None = None
    latest_grade: str | None = None
    evaluations: int = 0


@dataclass
class _State:
    entry: PoolEntry
    in_pool: bool = True
    grades: dict[UUID, str] = field(default_factory=dict)
    """Evaluation id → grade, in order; a correction replaces the one it supersedes."""


def pool_at(events: Iterable[Recorded], root_path: str) -> list[PoolEntry]:
    """Fold `events` (in recorded order) into the pool of the subtree at `root_path`."""
    states: dict[UUID, _State] = {}
    for recorded in events:
        _apply(states, recorded)
    entries = [s.entry for s in states.values() if s.in_pool and in_subtree(s.entry.org_path, root_path)]
    return sorted(entries, key=lambda e: (e.org_path, str(e.cadre_id)))


def _apply(states: dict[UUID, _State], recorded: Recorded) -> None:  # noqa: C901 - a case per type
    event, env = recorded.event, recorded.envelope
    if isinstance(event, CadreNominated):
        states[event.cadre_id] = _State(
            PoolEntry(
                cadre_id=event.cadre_id,
                full_name=event.full_name,
                org_code=event.org_code,
                org_path=env.org_path,
                current_position=event.current_position,
            )
        )
        return
    cadre_id = getattr(event, "cadre_id", None)
    state = states.get(cadre_id) if isinstance(cadre_id, UUID) else None
    if state is None:
        return
    entry = state.entry
    if isinstance(event, CadreProfileUpdated):
        changes = event.changes
        entry.full_name = changes.full_name or entry.full_name
        entry.current_position = changes.current_position or entry.current_position
    elif isinstance(event, MentorAssigned):
        entry.mentor = event.mentor.name
    elif isinstance(event, CadreRetired):
        state.in_pool = False
    elif isinstance(event, PostingAssigned):
        entry.posting = Posting(
            posting_id=event.posting_id,
            kind=event.kind.value,
            host_org_code=event.host_org_code,
            host_unit_name=event.host_unit_name,
            position=event.position,
            starts_on=event.starts_on.isoformat(),
            planned_end_on=event.planned_end_on.isoformat(),
        )
    elif isinstance(event, PostingCompleted):
        if entry.posting is not None and entry.posting.posting_id == event.posting_id:
            entry.posting = None
    elif isinstance(event, EvaluationRecorded):
        if event.supersedes is not None:
            state.grades.pop(event.supersedes, None)
        state.grades[event.evaluation_id] = event.grade.value
        entry.latest_grade = next(reversed(state.grades.values()), None)
        entry.evaluations = len(state.grades)


class Change(BaseModel):
    """How one cadre's entry differs between two moments."""

    cadre_id: UUID
    full_name: str
    fields: dict[str, Any]
    """Field → [before, after]."""


class PoolDiff(BaseModel):
    """The difference between the pool at two moments."""

    joined: list[PoolEntry]
    left: list[PoolEntry]
    changed: list[Change]


def diff(before: list[PoolEntry], after: list[PoolEntry]) -> PoolDiff:
    """Who joined, who left, and what changed for those in both."""
    old = {e.cadre_id: e for e in before}
    new = {e.cadre_id: e for e in after}
    changed = []
    for cadre_id in old.keys() & new.keys():
        a, b = old[cadre_id].model_dump(mode="json"), new[cadre_id].model_dump(mode="json")
        fields = {k: [a[k], b[k]] for k in a if a[k] != b[k]}
        if fields:
            changed.append(Change(cadre_id=cadre_id, full_name=new[cadre_id].full_name, fields=fields))
    return PoolDiff(
        joined=[new[c] for c in new.keys() - old.keys()],
        left=[old[c] for c in old.keys() - new.keys()],
        changed=sorted(changed, key=lambda c: str(c.cadre_id)),
    )
