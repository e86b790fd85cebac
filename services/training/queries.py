"""Training's reads, scoped to the actor: records, postings, who is where, what is open."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel

from contracts.envelope import Actor
from contracts.training import PostingKind
from runtime import clock
from runtime.auth import subtree_root
from runtime.db import Reader, in_subtree_sql, row_view
from runtime.received import cadre_stream
from runtime.registry_view import known_cadre
from runtime.store import EventStore
from services.training import rules


class YearHours(BaseModel):
    """Training hours of one year: organized training is the main form, self-study the supplement."""

    year: int
    organized: int
    self_study: int


class EnrolmentView(BaseModel):
    """One programme in a cadre's record."""

    program_id: UUID
    title: str
    starts_on: date
    ends_on: date
    status: str
    hours: int | None
    score: int | None
    passed: bool | None


class SelfStudyView(BaseModel):
    """One self-study entry."""

    entry_id: UUID
    kind: str
    topic: str
    studied_on: date
    hours: int
    evidence: str


class SelfStudyReportView(BaseModel):
    """Self-study a cadre reported: waiting (`reported`), `confirmed` (it counts) or `rejected` (with the reason)."""

    entry_id: UUID
    cadre_id: UUID
    full_name: str | None = None
    org_path: str
    kind: str
    topic: str
    studied_on: date
    hours: int
    evidence_name: str
    evidence_sha256: str
    status: str
    reported_at: datetime
    decided_at: datetime | None
    reason: str | None


class TrainingRecord(BaseModel):
    """A cadre's theoretical training."""

    cadre_id: UUID
    yearly_hours_quota: int
    """Hours each cadre owes per year (organized and self-study together)."""
    hours_by_year: list[YearHours]
    programs: list[EnrolmentView]
    self_study: list[SelfStudyView]
    """Self-study that counts: logged by an organizer, or reported by the cadre and confirmed."""
    reports: list[SelfStudyReportView] = []
    """Self-study the cadre reported, newest first: waiting, confirmed or rejected."""


class PostingView(BaseModel):
    """One posting."""

    posting_id: UUID
    cadre_id: UUID
    full_name: str | None
    kind: PostingKind
    host_org_code: str
    host_unit_name: str
    position: str
    purpose: str
    starts_on: date
    planned_end_on: date
    ended_on: date | None
    outcome: str | None
    summary: str | None


class RecommendationView(BaseModel):
    """The posting kind to plan next for a cadre, and why."""

    cadre_id: UUID
    kind: PostingKind | None
    reason: str
    currently_posted: PostingView | None


class BehindQuota(BaseModel):
    """A cadre in the pool with fewer training hours this year than the yearly quota."""

    cadre_id: UUID
    full_name: str
    org_path: str
    hours: int
    quota: int


class CadreBrief(BaseModel):
    """A cadre in a list."""

    cadre_id: UUID
    full_name: str
    org_path: str
    grassroots_months: int


class ProgramView(BaseModel):
    """A programme and its places."""

    program_id: UUID
    title: str
    organizer_code: str
    org_path: str
    starts_on: date
    ends_on: date
    hours: int
    capacity: int
    free_places: int
    curriculum: list[str]
    format: str
    location: str
    cancelled: bool
    version: int


class TrainingQueries:
    """Reads over training's own tables and store."""

    def __init__(
        self, pool: Reader, store: EventStore, long_grassroots_months: int, yearly_hours_quota: int = 60
    ) -> None:
        self._pool = pool
        self._store = store
        self._long_grassroots_months = long_grassroots_months
        self._quota = yearly_hours_quota

    async def record(self, actor: Actor, cadre_id: UUID) -> TrainingRecord:
        """Hours by year (organized vs self-study), programmes and self-study of one cadre."""
        await known_cadre(self._pool, actor, cadre_id, own=True)
        hours = await self._pool.fetch(
            "SELECT year, sum(organized)::int AS organized, sum(self_study)::int AS self_study FROM ("
            " SELECT extract(year FROM ended_on)::int AS year, hours AS organized, 0 AS self_study"
            " FROM enrolments WHERE cadre_id = $1 AND status = 'completed'"
            " UNION ALL SELECT extract(year FROM studied_on)::int, 0, hours FROM self_study WHERE cadre_id = $1"
            ") h GROUP BY year ORDER BY year",
            cadre_id,
        )
        programs = await self._pool.fetch(
            "SELECT e.*, p.title, p.starts_on, p.ends_on FROM enrolments e JOIN programs p USING (program_id)"
            " WHERE e.cadre_id = $1 ORDER BY p.starts_on",
            cadre_id,
        )
        study = await self._pool.fetch("SELECT * FROM self_study WHERE cadre_id = $1 ORDER BY studied_on", cadre_id)
        reports = await self._pool.fetch(
            "SELECT * FROM self_study_reports WHERE cadre_id = $1 ORDER BY reported_at DESC", cadre_id
        )
        return TrainingRecord(
            cadre_id=cadre_id,
            yearly_hours_quota=self._quota,
            hours_by_year=[YearHours(**dict(row)) for row in hours],
            programs=[row_view(EnrolmentView, row) for row in programs],
            self_study=[row_view(SelfStudyView, row) for row in study],
            reports=[row_view(SelfStudyReportView, row) for row in reports],
        )

    async def waiting_reports(self, actor: Actor, under: str | None, limit: int) -> list[SelfStudyReportView]:
        """Self-study reported by cadres of a subtree and not decided yet, oldest first."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT r.*, c.full_name FROM self_study_reports r LEFT JOIN pool_cadres c USING (cadre_id)"  # noqa: S608 - fixed clauses, values bound
            f" WHERE r.status = 'reported' AND {in_subtree_sql('r.org_path', '$1')}"
            " ORDER BY r.reported_at, r.entry_id LIMIT $2",
            root,
            limit,
        )
        return [row_view(SelfStudyReportView, row) for row in rows]

    async def postings(self, actor: Actor, cadre_id: UUID) -> list[PostingView]:
        """A cadre's postings, oldest first."""
        cadre = await known_cadre(self._pool, actor, cadre_id, own=True)
        rows = await self._pool.fetch("SELECT * FROM postings WHERE cadre_id = $1 ORDER BY starts_on", cadre_id)
        return [row_view(PostingView, row, full_name=cadre["full_name"]) for row in rows]

    async def current_postings(self, actor: Actor, under: str | None, on: date | None = None) -> list[PostingView]:
        """Who of a subtree is posted where on a day (default today)."""
        root = await subtree_root(self._pool, actor, under)
        day = on or clock.today()
        rows = await self._pool.fetch(
            "SELECT p.*, c.full_name FROM postings p LEFT JOIN pool_cadres c USING (cadre_id)"  # noqa: S608 - fixed clauses, values bound
            f" WHERE {in_subtree_sql('p.org_path', '$1')} AND p.starts_on <= $2"
            " AND coalesce(p.ended_on, p.planned_end_on) >= $2 AND (p.ended_on IS NULL OR p.ended_on >= $2)"
            " ORDER BY p.org_path, p.starts_on",
            root,
            day,
        )
        return [row_view(PostingView, row) for row in rows]

    async def without_grassroots(self, actor: Actor, under: str | None) -> list[CadreBrief]:
        """Cadres in the pool with neither grass-roots service nor a served downward posting."""
        root = await subtree_root(self._pool, actor, under)
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.full_name, c.org_path, c.grassroots_months FROM pool_cadres c"  # noqa: S608 - fixed clauses, values bound
            f" WHERE {in_subtree_sql('c.org_path', '$1')} AND c.in_pool AND c.grassroots_months = 0"
            " AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.cadre_id = c.cadre_id AND p.kind = 'downward'"
            " AND p.starts_on < coalesce(p.ended_on, p.planned_end_on))"
            " ORDER BY c.org_path, c.cadre_id",
            root,
        )
        return [CadreBrief(**dict(row)) for row in rows]

    async def recommendation(self, actor: Actor, cadre_id: UUID) -> RecommendationView:
        """The next posting kind for a cadre, from its history."""
        cadre = await known_cadre(self._pool, actor, cadre_id, own=True)
        history = await self._store.read_stream(cadre_stream(cadre_id))
        state = rules.CadreTraining.replay(cadre_id, [r.event for r in history])
        advice = rules.recommend(
            state,
            registry_grassroots_months=cadre["grassroots_months"],
            long_grassroots_months=self._long_grassroots_months,
        )
        current = None
        if state.open_posting is not None:
            row = await self._pool.fetchrow(
                "SELECT * FROM postings WHERE posting_id = $1", state.open_posting.posting_id
            )
            current = row_view(PostingView, row, full_name=cadre["full_name"]) if row else None
        return RecommendationView(cadre_id=cadre_id, kind=advice.kind, reason=advice.reason, currently_posted=current)

    async def programs(self, actor: Actor, *, with_free_places: bool, upcoming_only: bool) -> list[ProgramView]:
        """Programmes the actor may use: organized above it (on its path) or inside its subtree."""
        rows = await self._pool.fetch(
            "SELECT *, CASE WHEN cancelled THEN 0 ELSE greatest(capacity - taken, 0) END AS free_places"  # noqa: S608 - fixed clauses, values bound
            f" FROM programs WHERE ({in_subtree_sql('org_path', '$1')} OR {in_subtree_sql('$1', 'org_path')})"
            " AND (NOT $2 OR (NOT cancelled AND capacity > taken)) AND (NOT $3 OR starts_on >= $4)"
            " ORDER BY starts_on, program_id",
            actor.org_path,
            with_free_places,
            upcoming_only,
            clock.today(),
        )
        return [row_view(ProgramView, row) for row in rows]

    async def behind_quota(self, actor: Actor, under: str | None, limit: int) -> list[BehindQuota]:
        """Cadres in the pool of a subtree with fewer hours this year than the quota, furthest behind first."""
        root = await subtree_root(self._pool, actor, under)
        year = clock.today().year
        rows = await self._pool.fetch(
            "SELECT c.cadre_id, c.full_name, c.org_path, coalesce(h.hours, 0)::int AS hours FROM pool_cadres c"  # noqa: S608 - fixed clauses, values bound
            " LEFT JOIN (SELECT cadre_id, sum(hours) AS hours FROM ("
            " SELECT cadre_id, hours FROM enrolments WHERE status = 'completed' AND extract(year FROM ended_on) = $2"
            " UNION ALL SELECT cadre_id, hours FROM self_study WHERE extract(year FROM studied_on) = $2) y"
            " GROUP BY cadre_id) h USING (cadre_id)"
            f" WHERE c.in_pool AND {in_subtree_sql('c.org_path', '$1')} AND coalesce(h.hours, 0) < $3"
            " ORDER BY hours, c.org_path, c.cadre_id LIMIT $4",
            root,
            year,
            self._quota,
            limit,
        )
        return [BehindQuota(quota=self._quota, **dict(row)) for row in rows]
