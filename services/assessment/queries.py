"""Assessment's reads, scoped to the actor: files, cycles, ranking, reminders, distributions, gaps."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from contracts.assessment import Grade
from contracts.envelope import Actor
from runtime import clock
from runtime.auth import subtree_root
from runtime.db import Reader, in_subtree_sql, row_view
from runtime.errors import NotFoundError
from runtime.registry_view import known_cadre
from services.assessment import rules


class EvaluationView(BaseModel):
    """One evaluation, standing or superseded."""

    evaluation_id: UUID
    cycle_id: UUID
    cycle_name: str
    period: str
    starts_on: date
    grade: Grade
    political_integrity: int
    ability: int
    diligence: int
    performance: int
    probity: int
    evaluator_id: str
    evaluator_name: str
    comments: str
    evidence: list[str]
    supersedes: UUID | None
    superseded_by: UUID | None
    recorded_at: datetime


class CheckInView(BaseModel):
    """One check-in."""

    check_in_id: UUID
    held_on: date
    held_by: str
    thinking: str
    work: str
    life: str
    follow_up: str


class ReminderView(BaseModel):
    """One reminder."""

    reminder_id: UUID
    cadre_id: UUID
    full_name: str | None = None
    concern: str
    severity: str
    follow_up_on: date
    rule: str | None
    issued_at: datetime
    resolved_on: date | None
    resolution: str | None


class ExitView(BaseModel):
    """One exit recommendation, and whether the case is closed."""

    recommendation_id: UUID
    rule: str
    evidence: list[UUID]
    summary: str
    recommended_at: datetime
    status: str


class CadreFileView(BaseModel):
    """A cadre's assessment file."""

    cadre_id: UUID
    full_name: str
    org_path: str
    case: str
    """`open` while the cadre is in the pool; `closed: <reason>` once it left."""
    evaluations: list[EvaluationView]
    check_ins: list[CheckInView]
    reminders: list[ReminderView]
    exit_recommendations: list[ExitView]


class CycleProgress(BaseModel):
    """Who of a cycle's subtree has been evaluated."""

    cycle_id: UUID
    name: str
    closed: bool
    due: int
    evaluated: int
    not_yet_evaluated: list[UUID]


class Ranked(BaseModel):
    """One cadre's place in a subtree's ranking."""

    rank: int
    cadre_id: UUID
    full_name: str
    org_path: str
    score: float
    grades: list[Grade]
    postings_served: int
    training_hours_this_year: int


class LevelGrades(BaseModel):
    """How the standing grades of one level of units are distributed."""

    level: str
    counts: dict[Grade, int]


class Shortfall(BaseModel):
    """A unit whose pool fell below its target."""

    code: str
    name: str
    path: str
    target: int
    in_pool: int


class CycleView(BaseModel):
    """An assessment cycle."""

    cycle_id: UUID
    org_code: str
    org_path: str
    period: str
    name: str
    starts_on: date
    ends_on: date
    closed_on: date | None
    version: int


class ExitCase(BaseModel):
    """An exit recommendation waiting for the organizer's decision (the cadre is still in the pool)."""

    recommendation_id: UUID
    cadre_id: UUID
    full_name: str
    org_path: str
    rule: str
    summary: str
    recommended_at: datetime


class OverdueCheckIn(BaseModel):
    """A cadre nobody has talked with for longer than the check-in interval."""

    cadre_id: UUID
    full_name: str
    org_path: str
    last_check_in: date | None
    due_since: date


class Mentee(BaseModel):
    """One cadre a mentor answers for, and what is due: a check-in, open reminders."""

    cadre_id: UUID
    full_name: str
    org_code: str
    org_name: str
    org_path: str
    last_check_in: date | None
    check_in_due_on: date
    check_in_overdue: bool
    open_reminders: int


class MentorDuty(BaseModel):
    """A mentor held to account (the responsibility report): mentees, check-ins held against due, reminders."""

    mentor_user: str
    mentor_name: str
    mentees: int
    checked_in_on_time: int
    """Mentees whose last check-in lies within the check-in interval."""
    check_ins_overdue: int
    open_reminders: int
    reminders_overdue: int
    """Open reminders past their follow-up date."""


class AssessmentQueries:
    """Reads over assessment's own tables."""

    def __init__(self, pool: Reader, weights: rules.RankingWeights) -> None:
        self._pool = pool
        self._weights = weights

    async def file(self, actor: Actor, cadre_id: UUID) -> CadreFileView:
        """Grades over time, dimension scores, reminders, check-ins, exits: the whole file."""
        cadre = await known_cadre(self._pool, actor, cadre_id)
        case = "open" if cadre["in_pool"] else f"closed: {cadre['retired_reason']} on {cadre['retired_on']}"
        evaluations = await self._pool.fetch(
            "SELECT e.*, c.name AS cycle_name, c.period, c.starts_on FROM evaluations e JOIN cycles c USING (cycle_id)"
            " WHERE e.cadre_id = $1 ORDER BY c.starts_on, e.recorded_at",
            cadre_id,
        )
        check_ins = await self._pool.fetch("SELECT * FROM check_ins WHERE cadre_id = $1 ORDER BY held_on", cadre_id)
        reminders = await self._pool.fetch("SELECT * FROM reminders WHERE cadre_id = $1 ORDER BY issued_at", cadre_id)
        exits = await self._pool.fetch(
            "SELECT * FROM exit_recommendations WHERE cadre_id = $1 ORDER BY recommended_at", cadre_id
        )
        return CadreFileView(
            cadre_id=cadre_id,
            full_name=cadre["full_name"],
            org_path=cadre["org_path"],
            case=case,
            evaluations=[row_view(EvaluationView, row) for row in evaluations],
            check_ins=[row_view(CheckInView, row) for row in check_ins],
            reminders=[row_view(ReminderView, row) for row in reminders],
            exit_recommendations=[
                row_view(ExitView, row, status=_exit_status(row, cadre["in_pool"], case)) for row in exits
            ],
        )

    async def cycle_progress(self, actor: Actor, cycle_id: UUID) -> CycleProgress:
        """Evaluated against due: due are the cadres in the pool of the cycle's subtree that the actor sees.

        A cycle of a unit above the actor (the province's, read by a county) is the actor's
        too: its progress is that of the actor's own subtree.
        """
        cycle = await self._pool.fetchrow("SELECT * FROM cycles WHERE cycle_id = $1", cycle_id)
        if cycle is None or not actor.reaches(cycle["org_path"]):
            msg = f"cycle {cycle_id} not found"
            raise NotFoundError(msg)
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, EXISTS (SELECT 1 FROM evaluations e WHERE e.cadre_id = c.cadre_id AND e.cycle_id = $2"  # noqa: S608 - fixed clauses, values bound
            " AND e.superseded_by IS NULL) AS evaluated FROM pool_cadres c"
            f" WHERE c.in_pool AND {in_subtree_sql('c.org_path', '$1')} ORDER BY c.org_path, c.cadre_id",
            actor.narrower(cycle["org_path"]),
            cycle_id,
        )
        return CycleProgress(
            cycle_id=cycle_id,
            name=cycle["name"],
            closed=cycle["closed_on"] is not None,
            due=len(rows),
            evaluated=sum(1 for row in rows if row["evaluated"]),
            not_yet_evaluated=[row["cadre_id"] for row in rows if not row["evaluated"]],
        )

    async def ranking(self, actor: Actor, under: str | None, limit: int) -> list[Ranked]:
        """The pool of a subtree, best first, by the documented score (rules.score)."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.full_name, c.org_path,"  # noqa: S608 - fixed clauses, values bound
            " array_remove(array_agg(e.grade ORDER BY cy.starts_on), NULL) AS grades,"
            " avg((e.political_integrity + e.ability + e.diligence + e.performance + e.probity) / 5.0) AS dims,"
            " coalesce(max(p.served), 0) AS served, coalesce(max(h.organized + h.self_study), 0) AS hours"
            " FROM pool_cadres c"
            " LEFT JOIN evaluations e ON e.cadre_id = c.cadre_id AND e.superseded_by IS NULL"
            " LEFT JOIN cycles cy ON cy.cycle_id = e.cycle_id"
            " LEFT JOIN postings_served p ON p.cadre_id = c.cadre_id"
            " LEFT JOIN training_hours h ON h.cadre_id = c.cadre_id AND h.year = $2"
            f" WHERE c.in_pool AND {in_subtree_sql('c.org_path', '$1')}"
            " GROUP BY c.cadre_id, c.full_name, c.org_path",
            root,
            clock.today().year,
        )
        scored = []
        for row in rows:
            grades = [Grade(g) for g in row["grades"]]
            standing = rules.Standing(
                grade_points=[rules.GRADE_POINTS[g] for g in grades],
                dimension_average=float(row["dims"]) if row["dims"] is not None else None,
                postings_served=row["served"],
                training_hours_this_year=row["hours"],
            )
            scored.append((rules.score(standing, self._weights), row, grades))
        scored.sort(key=lambda item: (-item[0], str(item[1]["cadre_id"])))
        return [
            Ranked(
                rank=rank,
                cadre_id=row["cadre_id"],
                full_name=row["full_name"],
                org_path=row["org_path"],
                score=score,
                grades=grades,
                postings_served=row["served"],
                training_hours_this_year=row["hours"],
            )
            for rank, (score, row, grades) in enumerate(scored[:limit], start=1)
        ]

    async def open_reminders(self, actor: Actor, under: str | None) -> list[ReminderView]:
        """Unresolved reminders of cadres still in the pool of a subtree, soonest follow-up first."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT r.*, c.full_name FROM reminders r JOIN pool_cadres c USING (cadre_id)"  # noqa: S608 - fixed clauses, values bound
            f" WHERE r.resolved_on IS NULL AND c.in_pool AND {in_subtree_sql('r.org_path', '$1')}"
            " ORDER BY r.follow_up_on, r.reminder_id",
            root,
        )
        return [row_view(ReminderView, row) for row in rows]

    async def grade_distribution(self, actor: Actor, under: str | None, cycle_id: UUID | None) -> list[LevelGrades]:
        """Standing grades by the level of the cadre's unit (optionally in one cycle)."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT u.level, e.grade, count(*) AS n FROM evaluations e"  # noqa: S608 - fixed clauses, values bound
            " JOIN pool_cadres c USING (cadre_id) JOIN units u ON u.code = c.org_code"
            f" WHERE e.superseded_by IS NULL AND {in_subtree_sql('e.org_path', '$1')}"
            " AND ($2::uuid IS NULL OR e.cycle_id = $2) GROUP BY u.level, e.grade",
            root,
            cycle_id,
        )
        levels: dict[str, dict[Grade, int]] = {}
        for row in rows:
            levels.setdefault(row["level"], dict.fromkeys(Grade, 0))[Grade(row["grade"])] = row["n"]
        return [LevelGrades(level=level, counts=counts) for level, counts in sorted(levels.items())]

    async def shortfalls(self, actor: Actor, under: str | None) -> list[Shortfall]:
        """Units of a subtree whose own pool is below its target size: where new entries are needed."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT u.code, u.name, u.path, u.target_pool_size AS target,"  # noqa: S608 - fixed clauses, values bound
            " count(c.cadre_id) FILTER (WHERE c.in_pool) AS in_pool"
            " FROM units u LEFT JOIN pool_cadres c ON c.org_code = u.code"
            f" WHERE {in_subtree_sql('u.path', '$1')} GROUP BY u.code"
            " HAVING count(c.cadre_id) FILTER (WHERE c.in_pool) < u.target_pool_size ORDER BY u.path",
            root,
        )
        return [Shortfall(**dict(row)) for row in rows]

    async def cycles(self, actor: Actor, under: str | None) -> list[CycleView]:
        """Cycles over a subtree (default: the actor's) and those over units above it, newest first."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            f"SELECT * FROM cycles WHERE {in_subtree_sql('org_path', '$1')} OR {in_subtree_sql('$1', 'org_path')}"  # noqa: S608 - fixed clauses
            " ORDER BY starts_on DESC, cycle_id",
            root,
        )
        return [row_view(CycleView, row) for row in rows]

    async def exit_queue(self, actor: Actor, under: str | None) -> list[ExitCase]:
        """Exit recommendations of cadres still in the pool of a subtree, oldest first."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT x.*, c.full_name FROM exit_recommendations x JOIN pool_cadres c USING (cadre_id)"  # noqa: S608 - fixed clauses, values bound
            f" WHERE c.in_pool AND x.rejection IS NULL AND {in_subtree_sql('x.org_path', '$1')}"
            " ORDER BY x.recommended_at, x.recommendation_id",
            root,
        )
        return [row_view(ExitCase, row) for row in rows]

    async def overdue_check_ins(self, actor: Actor, under: str | None, every_days: int) -> list[OverdueCheckIn]:
        """Cadres in the pool of a subtree whose last check-in (or nomination) is older than `every_days`."""
        root = await subtree_root(self._pool, actor, under)
        today = clock.today()
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.full_name, c.org_path, max(k.held_on) AS last_check_in,"  # noqa: S608 - fixed clauses, values bound
            " coalesce(max(k.held_on), c.nominated_on) + $3::int AS due_since"
            " FROM pool_cadres c LEFT JOIN check_ins k USING (cadre_id)"
            f" WHERE c.in_pool AND {in_subtree_sql('c.org_path', '$1')}"
            " GROUP BY c.cadre_id HAVING coalesce(max(k.held_on), c.nominated_on) + $3::int < $2"
            " ORDER BY due_since, c.cadre_id LIMIT 500",
            root,
            today,
            every_days,
        )
        return [row_view(OverdueCheckIn, row) for row in rows]

    async def mentees(self, actor: Actor, mentor: str, every_days: int) -> list[Mentee]:
        """The cadres in the pool of the actor's subtree whose mentor is `mentor`, the most overdue first."""
        today = clock.today()
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.full_name, c.org_code, c.org_path, max(k.held_on) AS last_check_in,"  # noqa: S608 - fixed clauses, values bound
            " coalesce((SELECT u.name FROM units u WHERE u.code = c.org_code), c.org_code) AS org_name,"
            " coalesce(max(k.held_on), c.nominated_on) + $3::int AS check_in_due_on,"
            " (SELECT count(*) FROM reminders r WHERE r.cadre_id = c.cadre_id AND r.resolved_on IS NULL)::int"
            " AS open_reminders"
            " FROM pool_cadres c LEFT JOIN check_ins k USING (cadre_id)"
            f" WHERE c.in_pool AND c.mentor_user = $2 AND {in_subtree_sql('c.org_path', '$1')}"
            " GROUP BY c.cadre_id ORDER BY check_in_due_on, c.cadre_id LIMIT 500",
            actor.org_path,
            mentor,
            every_days,
        )
        return [row_view(Mentee, row, check_in_overdue=row["check_in_due_on"] < today) for row in rows]

    async def responsibility(self, actor: Actor, under: str | None, every_days: int) -> list[MentorDuty]:
        """Every mentor of a subtree's pool and what they owe, the most overdue first (the responsibility report)."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "WITH last AS (SELECT c.cadre_id, c.mentor_user, c.mentor_name,"  # noqa: S608 - fixed clauses, values bound
            " coalesce(max(k.held_on), c.nominated_on) + $3::int AS due FROM pool_cadres c"
            " LEFT JOIN check_ins k USING (cadre_id)"
            f" WHERE c.in_pool AND c.mentor_user IS NOT NULL AND {in_subtree_sql('c.org_path', '$1')}"
            " GROUP BY c.cadre_id)"
            " SELECT l.mentor_user, max(l.mentor_name) AS mentor_name, count(*)::int AS mentees,"
            " count(*) FILTER (WHERE l.due >= $2)::int AS checked_in_on_time,"
            " count(*) FILTER (WHERE l.due < $2)::int AS check_ins_overdue,"
            " coalesce(sum(r.open), 0)::int AS open_reminders, coalesce(sum(r.late), 0)::int AS reminders_overdue"
            " FROM last l LEFT JOIN LATERAL (SELECT count(*) AS open, count(*) FILTER (WHERE follow_up_on < $2) AS late"
            " FROM reminders WHERE cadre_id = l.cadre_id AND resolved_on IS NULL) r ON true"
            " GROUP BY l.mentor_user ORDER BY check_ins_overdue DESC, reminders_overdue DESC, l.mentor_user",
            root,
            clock.today(),
            every_days,
        )
        return [MentorDuty(**dict(row)) for row in rows]


def _exit_status(row: Any, in_pool: bool, case: str) -> str:
    """`open`, `rejected: <reason>`, or the closed case."""
    if row["rejection"] is not None:
        return f"rejected: {row['rejection']}"
    return "open" if in_pool else case
