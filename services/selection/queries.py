"""Selection's reads, scoped to the actor (row-level security): teams, quota counts, strength, the pool's use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from contracts.assessment import Grade
from contracts.envelope import Actor
from contracts.registry import Basis
from contracts.selection import PostKind, Potential, Readiness
from runtime import clock
from runtime.auth import subtree_root
from runtime.db import Pool, Reader, in_subtree_sql
from runtime.errors import CommandError, NotFoundError
from runtime.summaries import UnitSummaries
from services.selection import rules, team_ages

RATING_COUNTS_SQL = "(cycle = $3 OR cycle ~ ('(^|[^0-9])' || $4 || '([^0-9]|$)'))"
"""A potential rating counts for the cycle named $3 that starts in year $4 (`rules.rating_counts_for`)."""

ACTIVE_ON = "t.starts_on <= $2 AND (t.left_on IS NULL OR t.left_on > $2)"
"""A tenure held on day $2."""
SUCCESSORS_OF_POST = (
    "SELECT count(*) AS successors, count(*) FILTER (WHERE s.readiness = 'ready_now') AS ready_now"
    " FROM successors s WHERE s.post_id = p.post_id AND s.active"
)
"""A post `p`'s successors, and how many of them are ready now (a lateral subquery `g`)."""
NO_READY_SUCCESSOR = "g.ready_now = 0"
GAPS_LISTED = 100
"""How many posts of each list of gaps the strength answers by default (the posts' export has them all)."""


def falling_vacant(days: int) -> str:
    """Of a post `p` held by `t` (if anyone) with successors `g`: vacant, or its holder leaving within `days` of $2."""
    return f"g.successors = 0 AND (t.holder_name IS NULL OR t.ends_by <= $2::date + {int(days)})"


def _days_ahead(months: int) -> int:
    return round(months * 30.4375)


def strength_counts(pool: Pool, days: int) -> UnitSummaries:
    """Per unit and kind on a day: posts, distinct successors, posts with no ready successor, falling vacant."""
    return UnitSummaries(
        pool,
        "selection.strength",
        f"""
        SELECT p.org_path, p.kind, count(*) AS posts,
            (SELECT count(DISTINCT s.cadre_id) FROM successors s JOIN posts q ON q.post_id = s.post_id
             WHERE q.org_path = p.org_path AND q.kind = p.kind AND q.created_on <= $2 AND s.active) AS successors,
            count(*) FILTER (WHERE {NO_READY_SUCCESSOR}) AS no_ready,
            count(*) FILTER (WHERE {falling_vacant(days)}) AS falling
        FROM posts p
        LEFT JOIN tenures t ON t.post_id = p.post_id AND {ACTIVE_ON}
        CROSS JOIN LATERAL ({SUCCESSORS_OF_POST}) g
        WHERE p.org_path = ANY($1::text[]) AND p.created_on <= $2
        GROUP BY 1, 2
        """,  # noqa: S608 - our own fragments
    )


class HolderView(BaseModel):
    """Who holds a post."""

    holder_name: str
    cadre_id: UUID | None
    from_pool: bool
    starts_on: date
    ends_by: date | None
    over_quota_document: str | None
    basis: Basis = Basis.WITHOUT_PROCEDURE
    """What the appointment stands on: an appointment procedure (`procedure_id`), or one decision recorded
    without a procedure (before procedures were recorded, directly, or a holder recorded as in office)."""
    procedure_id: UUID | None = None


class SuccessorView(BaseModel):
    """A successor named for a post."""

    cadre_id: UUID
    full_name: str
    readiness: Readiness
    reviewed_on: date


class PostView(BaseModel):
    """A post of a team as of a day."""

    post_id: UUID
    kind: PostKind
    title: str
    rank: str
    holder: HolderView | None
    successors: list[SuccessorView]


class KindCount(BaseModel):
    """A unit's posts of one kind against its quota, as of a day."""

    org_code: str
    unit_name: str
    kind: PostKind
    approved: int
    posts: int
    filled: int
    vacant: int
    over_quota: int
    """Incumbents beyond the approved number."""
    over_quota_decisions: int
    """Incumbents holding their post on a recorded over-quota decision."""


class TeamView(BaseModel):
    """A unit's leadership team as of a day."""

    org_code: str
    unit_name: str
    on: date
    counts: list[KindCount]
    posts: list[PostView]


class UnitStrength(BaseModel):
    """A unit's reserves against the ratio its level asks for, per kind of post."""

    org_code: str
    unit_name: str
    level: str
    kind: PostKind
    posts: int
    successors: int
    """Distinct reserves named as successors for the unit's posts of this kind."""
    ratio: float
    required: int
    below_ratio: bool


class PostGap(BaseModel):
    """A post without the successor it needs."""

    post_id: UUID
    org_code: str
    unit_name: str
    kind: PostKind
    title: str
    holder_name: str | None
    ends_by: date | None
    successors: int
    ready_now: int


class PostRow(BaseModel):
    """A post of a subtree as of a day, for the list of posts and its CSV/XLSX export."""

    post_id: UUID
    org_code: str
    unit_name: str
    kind: PostKind
    title: str
    rank: str
    vacant: bool
    holder_name: str | None
    cadre_id: UUID | None
    starts_on: date | None
    ends_by: date | None
    """When the holder's term ends or the age limit comes, as recorded with the incumbent."""
    successors: int
    best_readiness: Readiness | None


POSTS_LIMIT = 200_000
"""The most posts one answer of `GET /posts` lists (a large province's posts, whole)."""


class Strength(BaseModel):
    """The pool's strength and gaps in a subtree as of a day."""

    on: date
    within_months: int
    units: list[UnitStrength]
    below_ratio: list[UnitStrength]
    no_ready_successor: list[PostGap]
    """The first of them in the units' order (`no_ready_successor_total` in all; the posts' export has every one)."""
    no_ready_successor_total: int
    falling_vacant_without_successor: list[PostGap]
    """The first of them, likewise (`falling_vacant_total` in all)."""
    falling_vacant_total: int


class UseRow(BaseModel):
    """Appointments to a unit's posts of a kind in a period, and how many came out of the pool."""

    org_code: str
    unit_name: str
    level: str
    kind: str
    """`principal`, `deputy`, or `unnamed` (older retirements as appointed that name no post here)."""
    appointments: int
    from_pool: int
    share_from_pool: float | None
    average_months_in_pool: float | None


class PoolUse(BaseModel):
    """The pool's use in a subtree over a period."""

    since: date
    until: date
    appointments: int
    from_pool: int
    share_from_pool: float | None
    rows: list[UseRow]


class ReadinessChange(BaseModel):
    """One entry of a successor's history."""

    readiness: Readiness | None
    """None: withdrawn."""
    reason: str
    actor: str
    recorded_on: date


class CycleRef(BaseModel):
    """An assessment cycle the 9-box can be drawn for."""

    cycle_id: UUID
    name: str
    org_code: str
    starts_on: date
    ends_on: date


class PlacedCadre(BaseModel):
    """A cadre with the grade and the potential that place it (either may be missing: then not in a box)."""

    cadre_id: UUID
    full_name: str | None
    org_code: str | None
    unit_name: str | None
    grade: Grade | None
    potential: Potential | None


class BoxView(BaseModel):
    """One box of the 9-box and the cadres in it."""

    number: int
    """1 (low performance, low potential) to 9 (high, high), row by row from the bottom."""
    performance: Potential
    potential: Potential
    cadres: list[PlacedCadre]


class Move(BaseModel):
    """A cadre's box in the earlier cycle and in this one."""

    cadre_id: UUID
    full_name: str | None
    org_code: str | None
    unit_name: str | None
    before: int
    after: int
    direction: str
    """`up`, `down`, `across` (one axis up, the other down) or `stayed`."""


class NineBox(BaseModel):
    """Performance (the cycle's grade) against potential (rated for it) in a subtree, and movement since."""

    cycles: list[CycleRef]
    """Every cycle that covers the subtree or lies in it, newest first."""
    cycle: CycleRef | None
    """The cycle drawn; none when there is no cycle yet."""
    compared_with: CycleRef | None
    """The earlier cycle the movement is measured from (default: the one before)."""
    boxes: list[BoxView]
    """The nine boxes in reading order: high potential first, low performance first in a row."""
    placed: int
    without_potential: list[PlacedCadre]
    """Graded in the cycle, but no potential rated for it."""
    without_grade: list[PlacedCadre]
    """Potential rated for the cycle, but not graded in it."""
    movements: list[Move]
    """Cadres placed in both cycles, each with its direction."""
    moved: dict[str, int]
    """How many moved up, down, across, or stayed."""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _months(days: float | None) -> float | None:
    return None if days is None else round(float(days) / 30.4375, 1)


class SelectionQueries:
    """Reads as the actor sees them."""

    def __init__(self, db: Reader, ratios: Mapping[str, Mapping[PostKind, float]], *, system: Pool) -> None:
        self._db = db
        self._ratios = ratios
        self._system = system  # where the counts kept per unit are read and kept (runtime.summaries)

    def ratio(self, level: str, kind: PostKind) -> float:
        """Reserves per post the organization asks for at `level` (the `default` entry, else 1:1 and 1:2)."""
        found = self._ratios.get(level) or self._ratios.get("default") or {}
        return float(found.get(kind, 1.0 if kind is PostKind.PRINCIPAL else 2.0))

    async def _unit(self, actor: Actor, code: str) -> Any:
        row = await self._db.fetchrow("SELECT code, name, path, level FROM units WHERE code = $1", code)
        if row is None or not actor.covers(row["path"]):
            msg = f"org unit {code} not found"
            raise NotFoundError(msg)
        return row

    async def counts(self, actor: Actor, under: str | None, on: date | None) -> list[KindCount]:
        """Approved, filled, vacant and over-quota posts per unit and kind in a subtree, as of a day."""
        root = await subtree_root(self._db, actor, under)
        return await self._counts(in_subtree_sql("org_path", "$1"), root, on or clock.today())

    async def _counts(self, where: str, key: str, on: date) -> list[KindCount]:
        rows = await self._db.fetch(
            f"""
            WITH q AS (
                SELECT DISTINCT ON (org_code, kind) org_code, kind, approved FROM quotas
                WHERE {where} AND set_on <= $2 ORDER BY org_code, kind, set_on DESC, event_id DESC
            ), p AS (
                SELECT p.org_code, p.kind, count(*) AS posts, count(t.event_id) AS filled,
                    count(t.over_quota_document) AS decisions
                FROM posts p LEFT JOIN tenures t ON t.post_id = p.post_id AND {ACTIVE_ON}
                WHERE {where.replace("org_path", "p.org_path")} AND p.created_on <= $2 GROUP BY p.org_code, p.kind
            )
            SELECT c.org_code, u.name AS unit_name, u.path, c.kind, coalesce(q.approved, 0) AS approved,
                coalesce(p.posts, 0) AS posts, coalesce(p.filled, 0) AS filled, coalesce(p.decisions, 0) AS decisions
            FROM (SELECT org_code, kind FROM q UNION SELECT org_code, kind FROM p) c
            LEFT JOIN q USING (org_code, kind) LEFT JOIN p USING (org_code, kind)
            JOIN units u ON u.code = c.org_code
            ORDER BY u.path, c.kind DESC
            """,  # noqa: S608 - our own fragments; values are parameters
            key,
            on,
        )
        return [
            KindCount(
                org_code=r["org_code"],
                unit_name=r["unit_name"],
                kind=PostKind(r["kind"]),
                approved=r["approved"],
                posts=r["posts"],
                filled=r["filled"],
                vacant=r["posts"] - r["filled"],
                over_quota=max(r["filled"] - r["approved"], 0),
                over_quota_decisions=r["decisions"],
            )
            for r in rows
        ]

    async def team(self, actor: Actor, org_code: str, on: date | None) -> TeamView:
        """A unit's team as of a day: counts per kind, each post with its holder and its successors."""
        unit = await self._unit(actor, org_code)
        day = on or clock.today()
        posts = await self._db.fetch(
            f"""
            SELECT p.post_id, p.kind, p.title, p.rank, t.holder_name, t.cadre_id, t.from_pool, t.starts_on,
                t.ends_by, t.over_quota_document, t.procedure_id
            FROM posts p LEFT JOIN tenures t ON t.post_id = p.post_id AND {ACTIVE_ON}
            WHERE p.org_code = $1 AND p.created_on <= $2
            ORDER BY p.kind DESC, p.title, p.post_id
            """,  # noqa: S608 - our own fragment
            org_code,
            day,
        )
        successors: dict[UUID, list[SuccessorView]] = {}
        for row in await self._db.fetch(
            "SELECT s.post_id, s.cadre_id, s.full_name, s.readiness, s.reviewed_on FROM successors s"
            " JOIN posts p USING (post_id) WHERE p.org_code = $1 AND s.active ORDER BY s.readiness, s.full_name",
            org_code,
        ):
            successors.setdefault(row["post_id"], []).append(
                SuccessorView(
                    cadre_id=row["cadre_id"],
                    full_name=row["full_name"],
                    readiness=Readiness(row["readiness"]),
                    reviewed_on=row["reviewed_on"],
                )
            )
        return TeamView(
            org_code=org_code,
            unit_name=unit["name"],
            on=day,
            counts=await self._counts("org_code = $1", org_code, day),
            posts=[
                PostView(
                    post_id=r["post_id"],
                    kind=PostKind(r["kind"]),
                    title=r["title"],
                    rank=r["rank"],
                    holder=None
                    if r["holder_name"] is None
                    else HolderView(
                        holder_name=r["holder_name"],
                        cadre_id=r["cadre_id"],
                        from_pool=r["from_pool"],
                        starts_on=r["starts_on"],
                        ends_by=r["ends_by"],
                        over_quota_document=r["over_quota_document"],
                        basis=Basis.of(r["procedure_id"]),
                        procedure_id=r["procedure_id"],
                    ),
                    successors=successors.get(r["post_id"], []),
                )
                for r in posts
            ],
        )

    async def team_ages(self, actor: Actor, under: str | None, on: date | None) -> team_ages.TeamStructure:
        """The age structure of each leadership team of a subtree on a day (default today; never after it).

        Who held a post that day (by the tenures' dates); a holder's birth date is the one recorded with
        the incumbent, else the registry's for a cadre of the pool.
        """
        root = await subtree_root(self._db, actor, under)
        today = clock.today()
        day = on or today
        if day > today:
            msg = f"{day} is after today ({today}): the teams of a day to come are not known"
            raise CommandError(msg)
        units = await self._db.fetch(
            f"SELECT code, name, level, path FROM units WHERE {in_subtree_sql('path', '$1')} ORDER BY path",  # noqa: S608
            root,
        )
        held: dict[str, list[team_ages.Seats]] = {}
        for path, band, kind, members, ages in await seats_held(self._system).rows(root, day):
            held.setdefault(path, []).append(team_ages.Seats(band, kind, members, ages))
        name = next((u["name"] for u in units if u["path"] == root), None)
        teams = ((team_ages.Team(u["code"], u["name"], u["level"]), held.get(u["path"], ())) for u in units)
        return team_ages.tally(root, name or root.rsplit(".", 1)[-1], day, teams)

    async def readiness_history(self, actor: Actor, post_id: UUID, cadre_id: UUID) -> list[ReadinessChange]:
        """How a successor's readiness for a post was set and reviewed, oldest first."""
        del actor  # row-level security keeps it to the actor's subtree
        rows = await self._db.fetch(
            "SELECT readiness, reason, actor, recorded_on FROM readiness_history"
            " WHERE post_id = $1 AND cadre_id = $2 ORDER BY event_id",
            post_id,
            cadre_id,
        )
        if not rows:
            msg = f"cadre {cadre_id} was never a successor for post {post_id}"
            raise NotFoundError(msg)
        return [
            ReadinessChange(
                readiness=Readiness(r["readiness"]) if r["readiness"] else None,
                reason=r["reason"],
                actor=r["actor"],
                recorded_on=r["recorded_on"],
            )
            for r in rows
        ]

    async def posts(self, actor: Actor, under: str | None, on: date | None, limit: int) -> list[PostRow]:
        """The posts of a subtree as of a day, by unit: incumbent, successors and the best readiness among them."""
        root = await subtree_root(self._db, actor, under)
        order = " ".join(f"WHEN '{r.value}' THEN {i}" for i, r in enumerate(Readiness))
        rows = await self._db.fetch(
            f"""
            SELECT p.post_id, p.org_code, u.name AS unit_name, p.kind, p.title, p.rank, t.holder_name, t.cadre_id,
                t.starts_on, t.ends_by, count(s.cadre_id) AS successors,
                min(CASE s.readiness {order} END) AS best
            FROM posts p JOIN units u ON u.code = p.org_code
            LEFT JOIN tenures t ON t.post_id = p.post_id AND {ACTIVE_ON}
            LEFT JOIN successors s ON s.post_id = p.post_id AND s.active
            WHERE {in_subtree_sql("p.org_path", "$1")} AND p.created_on <= $2
            GROUP BY p.post_id, u.code, t.event_id
            ORDER BY u.path, p.kind DESC, p.title, p.post_id
            LIMIT $3
            """,  # noqa: S608 - our own fragments; values are parameters
            root,
            on or clock.today(),
            limit,
        )
        readiness = list(Readiness)
        return [
            PostRow(
                post_id=r["post_id"],
                org_code=r["org_code"],
                unit_name=r["unit_name"],
                kind=PostKind(r["kind"]),
                title=r["title"],
                rank=r["rank"],
                vacant=r["holder_name"] is None,
                holder_name=r["holder_name"],
                cadre_id=r["cadre_id"],
                starts_on=r["starts_on"],
                ends_by=r["ends_by"],
                successors=r["successors"],
                best_readiness=None if r["best"] is None else readiness[r["best"]],
            )
            for r in rows
        ]

    async def strength(
        self, actor: Actor, under: str | None, on: date | None, within_months: int, limit: int = GAPS_LISTED
    ) -> Strength:
        """Reserves per kind against the ratio, posts with no ready successor, posts falling vacant without one.

        The units' figures are counted per unit and kept until the unit's posts change (`strength_counts`);
        of the posts in each list, the first `limit` in the order of the units, with how many there are.
        """
        root = await subtree_root(self._db, actor, under)
        day = on or clock.today()
        days = _days_ahead(within_months)
        units = {
            u["path"]: u
            for u in await self._db.fetch(
                f"SELECT code, name, level, path FROM units WHERE {in_subtree_sql('path', '$1')}",  # noqa: S608
                root,
            )
        }
        strengths: list[UnitStrength] = []
        no_ready, falling = 0, 0
        for path, kind, posts, successors, without_ready, falling_without in sorted(
            await strength_counts(self._system, days).rows(root, day), key=lambda r: (r[0], r[1] != "principal")
        ):
            unit = units.get(path)
            if unit is None:  # a unit the registry's view has not (yet) heard of: as the lists, which join it
                continue
            no_ready += without_ready
            falling += falling_without
            ratio = self.ratio(unit["level"], PostKind(kind))
            required = math.ceil(posts * ratio)
            strengths.append(
                UnitStrength(
                    org_code=unit["code"],
                    unit_name=unit["name"],
                    level=unit["level"],
                    kind=PostKind(kind),
                    posts=posts,
                    successors=successors,
                    ratio=ratio,
                    required=required,
                    below_ratio=successors < required,
                )
            )

        async def listed(condition: str) -> list[PostGap]:
            rows = await self._db.fetch(
                f"""
                SELECT p.post_id, p.org_code, u.name AS unit_name, p.kind, p.title, t.holder_name, t.ends_by,
                    g.successors, g.ready_now
                FROM posts p JOIN units u ON u.code = p.org_code
                LEFT JOIN tenures t ON t.post_id = p.post_id AND {ACTIVE_ON}
                CROSS JOIN LATERAL ({SUCCESSORS_OF_POST}) g
                WHERE {in_subtree_sql("p.org_path", "$1")} AND p.created_on <= $2 AND {condition}
                ORDER BY p.org_path, p.kind DESC, p.title LIMIT $3
                """,  # noqa: S608 - our own fragments
                root,
                day,
                limit,
            )
            return [PostGap(**dict(r)) for r in rows]

        return Strength(
            on=day,
            within_months=within_months,
            units=strengths,
            below_ratio=[s for s in strengths if s.below_ratio],
            no_ready_successor=await listed(NO_READY_SUCCESSOR),
            no_ready_successor_total=no_ready,
            falling_vacant_without_successor=await listed(falling_vacant(days)),
            falling_vacant_total=falling,
        )

    async def pool_use(self, actor: Actor, under: str | None, since: date | None, until: date | None) -> PoolUse:
        """Appointments in a subtree over a period (default: this year to today), and the share from the pool.

        Appointments to posts are counted at the post's unit; older retirements as *appointed* that
        name no post here count as appointments from the pool to an unnamed post, at the cadre's unit.
        """
        root = await subtree_root(self._db, actor, under)
        end = until or clock.today()
        start = since or date(end.year, 1, 1)
        rows = await self._db.fetch(
            f"""
            WITH named AS (
                SELECT t.org_path, t.kind, t.from_pool, (t.starts_on - c.nominated_on) AS days
                FROM tenures t LEFT JOIN pool_cadres c ON t.from_pool AND c.cadre_id = t.cadre_id
                WHERE {in_subtree_sql("t.org_path", "$1")} AND t.starts_on BETWEEN $2 AND $3
            ), unnamed AS (
                SELECT c.org_path, 'unnamed' AS kind, true AS from_pool, (c.retired_on - c.nominated_on) AS days
                FROM pool_cadres c
                WHERE {in_subtree_sql("c.org_path", "$1")} AND c.retired_reason = 'appointed'
                    AND c.retired_on BETWEEN $2 AND $3
                    AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.cadre_id = c.cadre_id)
            ), joined AS (SELECT * FROM named UNION ALL SELECT * FROM unnamed)
            SELECT u.code, u.name, u.level, j.kind, count(*) AS appointments,
                count(*) FILTER (WHERE j.from_pool) AS from_pool,
                avg(j.days) FILTER (WHERE j.from_pool) AS days
            FROM joined j JOIN units u ON u.path = j.org_path
            GROUP BY u.code, u.name, u.level, u.path, j.kind ORDER BY u.path, j.kind DESC
            """,  # noqa: S608 - our own fragments
            root,
            start,
            end,
        )
        use = [
            UseRow(
                org_code=r["code"],
                unit_name=r["name"],
                level=r["level"],
                kind=r["kind"],
                appointments=r["appointments"],
                from_pool=r["from_pool"],
                share_from_pool=_share(r["from_pool"], r["appointments"]),
                average_months_in_pool=_months(r["days"]),
            )
            for r in rows
        ]
        total = sum(r.appointments for r in use)
        pooled = sum(r.from_pool for r in use)
        return PoolUse(
            since=start,
            until=end,
            appointments=total,
            from_pool=pooled,
            share_from_pool=_share(pooled, total),
            rows=use,
        )

    async def nine_box(
        self, actor: Actor, under: str | None, cycle_id: UUID | None, compare_with: UUID | None
    ) -> NineBox:
        """The 9-box of a subtree as of a cycle (default: the latest begun), and movement from an earlier one."""
        root = await subtree_root(self._db, actor, under)
        covering = f"{in_subtree_sql('org_path', '$1')} OR ($1 >= org_path AND $1 < org_path || '/')"
        rows = await self._db.fetch(
            "SELECT cycle_id, name, org_code, starts_on, ends_on FROM review_cycles"  # noqa: S608 - our fragment
            f" WHERE {covering} ORDER BY starts_on DESC, name, cycle_id",  # a cycle above the subtree, or in it
            root,
        )
        cycles = [CycleRef(**dict(r)) for r in rows]
        cycle = _chosen(cycles, cycle_id, lambda c: c.starts_on <= clock.today())
        earlier = [c for c in cycles if cycle is not None and c.starts_on < cycle.starts_on]
        compared = _chosen(earlier, compare_with, lambda _: True) if cycle is not None else None
        if compare_with is not None and compared is None:
            msg = f"cycle {compare_with} is not an earlier cycle of this subtree"
            raise NotFoundError(msg)
        now = await self._placements(root, cycle) if cycle else []
        boxes = {box: BoxView(number=box.number, performance=box.performance, potential=box.potential, cadres=[])
                 for box in rules.grid()}  # fmt: skip
        for cadre in now:
            if cadre.grade is not None and cadre.potential is not None:
                boxes[rules.box_of(cadre.grade, cadre.potential)].cadres.append(cadre)
        before = {
            c.cadre_id: rules.box_of(c.grade, c.potential)
            for c in (await self._placements(root, compared) if compared else [])
            if c.grade is not None and c.potential is not None
        }
        movements = [
            Move(
                cadre_id=c.cadre_id,
                full_name=c.full_name,
                org_code=c.org_code,
                unit_name=c.unit_name,
                before=before[c.cadre_id].number,
                after=rules.box_of(c.grade, c.potential).number,
                direction=rules.movement(before[c.cadre_id], rules.box_of(c.grade, c.potential)),
            )
            for c in now
            if c.grade is not None and c.potential is not None and c.cadre_id in before
        ]
        return NineBox(
            cycles=cycles,
            cycle=cycle,
            compared_with=compared,
            boxes=list(boxes.values()),
            placed=sum(len(b.cadres) for b in boxes.values()),
            without_potential=[c for c in now if c.potential is None],
            without_grade=[c for c in now if c.grade is None],
            movements=movements,
            moved={d: sum(m.direction == d for m in movements) for d in ("up", "down", "across", "stayed")},
        )

    async def _placements(self, root: str, cycle: CycleRef) -> list[PlacedCadre]:
        """Each cadre of the subtree graded in the cycle or rated for it: the current grade, the latest rating."""
        rows = await self._db.fetch(
            f"""
            WITH g AS (
                SELECT DISTINCT ON (cadre_id) cadre_id, grade FROM review_grades
                WHERE cycle_id = $2 AND NOT superseded AND {in_subtree_sql("org_path", "$1")}
                ORDER BY cadre_id, evaluation_id DESC
            ), p AS (
                SELECT DISTINCT ON (cadre_id) cadre_id, potential FROM potentials
                WHERE {RATING_COUNTS_SQL} AND {in_subtree_sql("org_path", "$1")}
                ORDER BY cadre_id, rated_on DESC, event_id DESC
            )
            SELECT cadre_id, g.grade, p.potential, c.full_name, c.org_code, u.name AS unit_name
            FROM g FULL JOIN p USING (cadre_id)
            LEFT JOIN pool_cadres c USING (cadre_id) LEFT JOIN units u ON u.code = c.org_code
            ORDER BY u.path, c.full_name, cadre_id
            """,  # noqa: S608 - our own fragments; values are parameters
            root,
            cycle.cycle_id,
            cycle.name,
            str(cycle.starts_on.year),
        )
        return [
            PlacedCadre(
                cadre_id=r["cadre_id"],
                full_name=r["full_name"],
                org_code=r["org_code"],
                unit_name=r["unit_name"],
                grade=Grade(r["grade"]) if r["grade"] else None,
                potential=Potential(r["potential"]) if r["potential"] else None,
            )
            for r in rows
        ]


def _chosen(cycles: list[CycleRef], wanted: UUID | None, default: Callable[[CycleRef], bool]) -> CycleRef | None:
    """The cycle asked for (404 when not among these), else the first that `default` accepts, else the first."""
    if wanted is not None:
        for cycle in cycles:
            if cycle.cycle_id == wanted:
                return cycle
        msg = f"cycle {wanted} not found for this subtree"
        raise NotFoundError(msg)
    return next((c for c in cycles if default(c)), cycles[0] if cycles else None)


def seats_held(pool: Pool) -> UnitSummaries:
    """The seats of each unit's team held on a day, per band and kind, kept until its tenures or holders change."""
    return UnitSummaries(pool, "selection.seats", team_ages.seats_sql())
