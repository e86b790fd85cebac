"""Selection's part of the demo organization, loaded through selection's own HTTP API.

Every unit of the demo gets a leadership team: quotas per kind, principal and deputy
posts with titles and ranks, their holders (some reaching the age limit or the end of
their term within months), vacancies, successors with readiness (some posts with no one
ready, some units below the ratio), reviews of readiness, potential ratings and a few
appointments out of the pool. Then procedures at every step: just opened, recommended,
inspected, decided, on public notice (running, ended, with an objection open and one
overdue), notice closed, admitted, appointed, and stopped three ways.

`plan` is pure: what to send, derived from the registry demo's plan and today. A team and
a procedure each load whole: one found already there (its posts, its stream) counts all
its commands as already there and sends nothing, so loading again changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import httpx

from contracts.registry import OrgLevel
from runtime import clock
from runtime.demo import DemoLoader
from services.registry.demo import GIVEN, SURNAMES, DemoCadre, DemoOrg, Unit
from services.selection.working_days import WorkingCalendar

NAMESPACE: Final = uuid.UUID("3e7d2b9a-41c6-4f0e-8b2d-5a9c6e1f7d24")
CONCURRENCY: Final = 4
"""Teams (or procedures) loading at once."""
TEAM_HOUR: Final = 11
"""The hour of the organization's day the demo's team records are stamped with."""

TITLES: Final[dict[OrgLevel, tuple[tuple[str, ...], str, str]]] = {
    OrgLevel.PROVINCIAL: (("Secretary of the provincial party committee", "Governor"), "Vice governor", "provincial"),
    OrgLevel.DEPARTMENT: (("Head of the department",), "Deputy head of the department", "department"),
    OrgLevel.MUNICIPAL: (("Secretary of the municipal party committee", "Mayor"), "Vice mayor", "municipal"),
    OrgLevel.COUNTY: (("Secretary of the county party committee", "County head"), "Deputy county head", "county"),
    OrgLevel.TOWNSHIP: (
        ("Secretary of the township party committee", "Township head"),
        "Deputy township head",
        "township",
    ),
}
"""Per level: the principal posts, the deputies' title, the rank's level."""
DEPUTIES: Final = {OrgLevel.PROVINCIAL: 4, OrgLevel.MUNICIPAL: 4, OrgLevel.COUNTY: 3}
"""Deputy posts per level (others: 2)."""
PORTFOLIOS: Final = ("economy", "agriculture and rural affairs", "urban affairs", "education and health", "security")
READINESS: Final = ("ready_now", "one_to_two_years", "three_plus_years")

SCENARIOS: Final = (
    "opened",
    "recommended",
    "inspected",
    "decided",
    "notice",
    "notice_objection",
    "notice_ended",
    "objection_overdue",
    "notice_closed",
    "admitted",
    "appointed",
    "not_recommended",
    "withdrawn",
    "objection_upheld",
)
"""Where the demo's procedures stand, one of each at least (the board shows every step)."""
APPOINTMENTS: Final = frozenset({"inspected", "decided", "notice_ended", "appointed"})
"""Scenarios run as appointment procedures (onto a post) when the unit has a post and a reserve for it."""


@dataclass(frozen=True)
class Command:
    """One demo command: what to send, the day it happened, the version it expects."""

    method: str
    url: str
    body: dict[str, Any] | None
    day: date
    if_match: int | None = None
    last: bool = False
    """Sent after every team's other commands (an appointment: the cadre leaves the pool other teams name from)."""


@dataclass
class Block:
    """Commands that load together: a unit's team, or one procedure; `check` finds them already there."""

    check: str
    team: bool
    commands: list[Command] = field(default_factory=list)
    version: int = 0
    """The stream's version after the commands (each appends one event unless it says otherwise)."""

    def add(
        self, method: str, url: str, body: dict[str, Any] | None, day: date, *, events: int = 1, last: bool = False
    ) -> None:
        """Append a command expecting the stream's current version, which moves on by `events`."""
        self.commands.append(Command(method, url, body, day, self.version, last))
        self.version += events

    def add_unversioned(
        self, method: str, url: str, body: dict[str, Any] | None, day: date, *, events: int = 1
    ) -> None:
        """Append a command that names no version (a procedure's opening, an objection; a rating, on another stream)."""
        self.commands.append(Command(method, url, body, day))
        self.version += events


@dataclass(frozen=True)
class Plan:
    """Selection's demo: the teams (loaded first), then the procedures."""

    teams: list[Block]
    procedures: list[Block]

    def blocks(self) -> Iterator[Block]:
        """Every block, teams first (an appointment procedure's outcome then writes to a loaded team)."""
        yield from self.teams
        yield from self.procedures


@dataclass
class _Post:
    post_id: uuid.UUID
    kind: str
    title: str
    held: bool = True
    left_on: date | None = None
    touched: bool = False
    """Vacated, or appointed to directly: an appointment procedure takes another."""


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts))


def _sha(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def _in(unit: Unit, cadre: DemoCadre) -> bool:
    return cadre.unit.path == unit.path or cadre.unit.path.startswith(unit.path + ".")


def plan(org: DemoOrg, today: date | None = None, seed: int = 29) -> Plan:
    """What selection's demo sends for `org` (the whole organization or a level's part) as of `today`."""
    today = today or clock.today()
    rng = random.Random(seed)
    active = [c for c in org.cadres if c.retirement is None]
    appointed: set[uuid.UUID] = set()
    teams: list[Block] = []
    posts_of: dict[str, list[_Post]] = {}
    for unit in org.units:
        block, posts = _team(rng, unit, active, appointed, today)
        teams.append(block)
        posts_of[unit.code] = posts
    for block, unit in zip(teams, org.units, strict=True):
        for cadre in (c for c in active if c.unit.code == unit.code and c.cadre_id not in appointed):
            if rng.random() < 0.6:
                _rate(block, rng, cadre, today)
    procedures: list[Block] = []
    candidates = [c for c in active if c.cadre_id not in appointed and c.nominated_on < today - timedelta(days=90)]
    if org.units:
        for index in range(max(len(org.units), len(SCENARIOS))):
            unit = org.units[index % len(org.units)]
            scenario = SCENARIOS[index % len(SCENARIOS)]
            procedures.append(
                procedure_block(
                    rng, index, unit, scenario=scenario, posts=posts_of[unit.code], candidates=candidates, today=today
                )
            )
    return Plan(teams, procedures)


def _holder_name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"


def _team(
    rng: random.Random, unit: Unit, active: Sequence[DemoCadre], appointed: set[uuid.UUID], today: date
) -> tuple[Block, list[_Post]]:
    principals, deputy_title, rank_level = TITLES.get(unit.level, TITLES[OrgLevel.COUNTY])
    deputies = DEPUTIES.get(unit.level, 2)
    team = f"/teams/{unit.code}"
    block = Block(check=team, team=True)
    founded = today - timedelta(days=2000)
    document = f"{unit.code.upper()}-ORG-{founded.year}-{rng.randint(1, 40)}"
    block.add(
        "POST",
        f"{team}/quotas",
        {"kind": "principal", "approved": len(principals), "document_number": document},
        founded,
    )
    block.add("POST", f"{team}/quotas", {"kind": "deputy", "approved": deputies, "document_number": document}, founded)
    posts: list[_Post] = []
    for index, title in enumerate(principals):
        posts.append(_Post(_id(unit.code, "post", "principal", index), "principal", title))
    for index in range(deputies):
        title = f"{deputy_title} ({PORTFOLIOS[index % len(PORTFOLIOS)]})"
        posts.append(_Post(_id(unit.code, "post", "deputy", index), "deputy", title))
    for post in posts:
        body = {"post_id": str(post.post_id), "kind": post.kind, "title": post.title}
        block.add("POST", f"{team}/posts", {**body, "rank": f"{rank_level} level {post.kind}"}, founded)
    reserves = [c for c in active if _in(unit, c) and c.cadre_id not in appointed]
    for post in posts:
        _hold(block, rng, team, post, today)
    for post in posts:
        _successors(block, rng, team, post, reserves=reserves, today=today)
    for post in posts:
        if not post.held and post.kind == "deputy" and rng.random() < 0.5:
            _appoint(block, rng, team, post, reserves=reserves, appointed=appointed, today=today)
    return block, posts


def _hold(block: Block, rng: random.Random, team: str, post: _Post, today: date) -> None:
    """The post's holder: in office (some leaving within months), gone (a vacancy), or never filled."""
    url = f"{team}/posts/{post.post_id}/incumbent"
    roll = rng.random()
    if roll < 0.08 and post.kind == "deputy":
        post.held, post.touched = False, True  # vacant since the team was set up
        return
    starts = today - timedelta(days=rng.randint(200, 1700))
    term_end = starts + timedelta(days=5 * 365)
    soon = today + timedelta(days=rng.randint(30, 270))
    ends_by = soon if rng.random() < 0.3 else max(term_end, today + timedelta(days=300))
    body = {"holder_name": _holder_name(rng), "starts_on": starts.isoformat(), "ends_by": ends_by.isoformat()}
    block.add("POST", url, body, starts)
    if roll > 0.82:  # left: the age limit or the end of the term came
        left = today - timedelta(days=rng.randint(10, 150))
        reason = rng.choice(("age_limit", "end_of_term"))
        note = "Reached the age limit for the post" if reason == "age_limit" else "Term of office completed"
        block.add("POST", f"{url}/end", {"left_on": left.isoformat(), "reason": reason, "note": note}, left)
        post.held, post.touched, post.left_on = False, True, left


def _successors(
    block: Block, rng: random.Random, team: str, post: _Post, *, reserves: Sequence[DemoCadre], today: date
) -> None:
    """Successors with readiness (none for some posts); a few readiness reviews."""
    available = [c for c in reserves if c.nominated_on < today - timedelta(days=30)]
    count = rng.choice((0, 1, 1, 2, 3)) if post.kind == "deputy" else rng.choice((0, 1, 2))
    for cadre in rng.sample(available, min(count, len(available))):
        named = max(cadre.nominated_on + timedelta(days=20), today - timedelta(days=rng.randint(60, 400)))
        readiness = rng.choices(READINESS, (3, 4, 3))[0]
        url = f"{team}/posts/{post.post_id}/successors"
        reason = {
            "ready_now": "Led comparable work for two years with excellent results",
            "one_to_two_years": "Strong record; needs experience of a full budget cycle",
            "three_plus_years": "Promising; still to serve at the grass roots",
        }[readiness]
        block.add("POST", url, {"cadre_id": str(cadre.cadre_id), "readiness": readiness, "reason": reason}, named)
        if readiness != "ready_now" and rng.random() < 0.3:
            reviewed = min(today, named + timedelta(days=rng.randint(30, 120)))
            better = READINESS[READINESS.index(readiness) - 1]
            body = {"readiness": better, "reason": "Annual talent review: the posting at the grass roots went well"}
            block.add("POST", f"{url}/{cadre.cadre_id}/review", body, reviewed)


def _appoint(
    block: Block,
    rng: random.Random,
    team: str,
    post: _Post,
    *,
    reserves: Sequence[DemoCadre],
    appointed: set[uuid.UUID],
    today: date,
) -> None:
    """A vacancy filled directly out of the pool (the registry then takes the cadre out of it)."""
    chosen = [c for c in reserves if c.cadre_id not in appointed and c.nominated_on < today - timedelta(days=60)]
    if not chosen:
        return
    cadre = rng.choice(chosen)
    on = today - timedelta(days=rng.randint(3, 50))
    if post.left_on is not None:
        on = max(on, min(today, post.left_on + timedelta(days=rng.randint(1, 20))))
    body = {
        "cadre_id": str(cadre.cadre_id),
        "appointed_on": on.isoformat(),
        "document_number": f"{team.rsplit('/', 1)[-1].upper()}-APPT-{on.year}-{rng.randint(1, 90)}",
        "ends_by": (on + timedelta(days=5 * 365)).isoformat(),
    }
    block.add("POST", f"{team}/posts/{post.post_id}/appointment", body, on, last=True)
    appointed.add(cadre.cadre_id)
    post.held = True


def _rate(block: Block, rng: random.Random, cadre: DemoCadre, today: date) -> None:
    rated = max(cadre.nominated_on, today - timedelta(days=rng.randint(5, 120)))
    potential = rng.choices(("low", "medium", "high"), (1, 3, 2))[0]
    body = {
        "potential": potential,
        "cycle": f"Talent review {rated.year}",
        "reason": {
            "low": "Steady in the present post; little appetite for wider responsibility",
            "medium": "Grows with each assignment; broader experience needed",
            "high": "Handles complex tasks beyond the post; trusted by colleagues and the public",
        }[potential],
    }
    block.add_unversioned("POST", f"/cadres/{cadre.cadre_id}/potential", body, rated, events=0)


@dataclass(frozen=True)
class _Timeline:
    """The days a procedure's steps happened on (None: not reached)."""

    opened: date
    recommended: date | None = None
    inspected: date | None = None
    decided: date | None = None
    notice: date | None = None
    objection: date | None = None
    objection_concluded: date | None = None
    closed: date | None = None
    concluded: date | None = None
    stopped: date | None = None


def _timeline(scenario: str, today: date, calendar: WorkingCalendar) -> _Timeline:  # noqa: C901, PLR0911, PLR0912 - one case per scenario
    def days(n: int) -> date:
        return today - timedelta(days=n)

    def to_decision(start: int) -> dict[str, date]:
        return {
            "opened": days(start),
            "recommended": days(start - 4),
            "inspected": days(start - 10),
            "decided": days(start - 16),
        }

    def closing(notice: date) -> date | None:
        closed = calendar.working_day(notice, 5) + timedelta(days=1)
        return closed if closed <= today else None

    match scenario:
        case "opened":
            return _Timeline(today)
        case "recommended":
            return _Timeline(days(6), days(3))
        case "inspected":
            return _Timeline(days(20), days(16), days(5))
        case "decided":
            return _Timeline(**to_decision(22))
        case "notice":
            return _Timeline(**to_decision(30), notice=days(1))
        case "notice_objection":
            return _Timeline(**to_decision(30), notice=days(2), objection=today)
        case "notice_ended":
            return _Timeline(**to_decision(45), notice=days(20))
        case "objection_overdue":
            return _Timeline(**to_decision(45), notice=days(20), objection=days(18))
        case "notice_closed":
            closed = closing(days(28))
            return _Timeline(
                **to_decision(50), notice=days(28), objection=days(26), objection_concluded=days(25), closed=closed
            )
        case "admitted" | "appointed":
            closed = closing(days(45))
            concluded = closed + timedelta(days=2) if closed is not None else None
            return _Timeline(
                **to_decision(70),
                notice=days(45),
                closed=closed,
                concluded=concluded if concluded and concluded <= today else None,
            )
        case "not_recommended":
            return _Timeline(days(15), days(12))
        case "withdrawn":
            return _Timeline(days(25), days(21), stopped=days(10))
        case _:  # objection_upheld
            return _Timeline(**to_decision(50), notice=days(30), objection=days(28), objection_concluded=days(20))


def procedure_block(
    rng: random.Random,
    index: int,
    unit: Unit,
    *,
    scenario: str,
    posts: Sequence[_Post],
    candidates: list[DemoCadre],
    today: date,
) -> Block:
    """The commands of one procedure at `unit` that reaches `scenario`'s step (onto a post when it can)."""
    procedure_id = _id("procedure", index, unit.code, scenario)
    url = f"/procedures/{procedure_id}"
    block = Block(check=f"{url}/verify", team=False)
    when = _timeline(scenario, today, WorkingCalendar())
    held = [p for p in posts if p.held and not p.touched]
    mine = [c for c in candidates if _in(unit, c)] or candidates
    body: dict[str, Any] = {"procedure_id": str(procedure_id), "org_code": unit.code}
    if scenario in APPOINTMENTS and held and mine:
        post = rng.choice(held)
        post.touched = True
        cadre = rng.choice(mine)
        candidates.remove(cadre)
        candidate_id, name = cadre.cadre_id, cadre.full_name
        body |= {
            "kind": "appointment",
            "candidate_id": str(candidate_id),
            "motion": {
                "post_id": str(post.post_id),
                "post_title": post.title,
                "reason": f"{post.title} falls vacant; the team's plan names a successor from the reserve pool",
                "document": {"title": "Motion of the unit's party committee", "sha256": _sha(procedure_id, "motion")},
            },
            "reason": "Appointment to fill the post",
        }
    else:
        candidate_id = _id("candidate", procedure_id)
        name = _holder_name(rng)
        age = rng.randint(28, 34)
        body |= {
            "kind": "entry",
            "candidate_id": str(candidate_id),
            "candidate": {
                "full_name": name,
                "gender": rng.choice(("female", "male")),
                "birth_date": date(today.year - age, rng.randint(1, 12), rng.randint(1, 28)).isoformat(),
                "education": rng.choice(("bachelor", "master")),
                "current_position": rng.choice(("Section chief, finance bureau", "Deputy township head")),
                "years_of_service": age - 23,
                "grassroots_months": rng.randint(12, 60),
            },
            "reserve_kind": f"{unit.level.value} deputy reserve",
            "reason": "Annual replenishment of the reserve pool",
        }
    block.add_unversioned("POST", "/procedures", body, when.opened)
    _steps(block, url, (procedure_id, candidate_id, name, unit.code), scenario, when)
    return block


def _document(procedure_id: uuid.UUID, title: str) -> dict[str, str]:
    return {"title": title, "sha256": _sha(procedure_id, title)}


def _steps(
    block: Block,
    url: str,
    who: tuple[uuid.UUID, uuid.UUID, str, str],
    scenario: str,
    when: _Timeline,
) -> None:
    procedure_id, candidate_id, name, org_code = who
    if when.recommended is not None:
        votes = 20 if scenario == "not_recommended" else 41
        meeting = {
            "held_on": when.recommended.isoformat(),
            "eligible": 60,
            "present": 55,
            "ballots_cast": 55,
            "valid_ballots": 54,
            "invalid_ballots": 1,
            "tally": [
                {"candidate_name": name, "candidate_id": str(candidate_id), "votes": votes},
                {"candidate_name": "Other nominees", "votes": 54 - votes},
            ],
        }
        body = {
            "meeting": meeting,
            "talks": {"interviewed": 30, "in_favour": 24 if votes > 27 else 11},
            "documents": [_document(procedure_id, "Recommendation meeting record")],
        }
        block.add(
            "POST", f"{url}/recommendation", body, when.recommended, events=2 if scenario == "not_recommended" else 1
        )
    if when.inspected is not None:
        body = {
            "team": ["Liu Qiang", "Sun Jing"],
            "interviewed": 25,
            "report": _document(procedure_id, "Inspection report"),
            "conclusion": "fit",
            "summary": "Firm in ideals, capable, diligent; no problems found",
            "clean_record": _document(procedure_id, "Letter of the discipline inspection commission"),
        }
        block.add("POST", f"{url}/inspection", body, when.inspected)
    if when.decided is not None:
        body = {
            "held_on": when.decided.isoformat(),
            "members": 11,
            "present": 10,
            "votes_for": 9,
            "votes_against": 1,
            "abstentions": 0,
            "minutes": _document(procedure_id, "Minutes of the standing committee"),
        }
        block.add("POST", f"{url}/decision", body, when.decided)
    if when.notice is not None:
        body = {"where": "The unit's notice board and the organization department's website"}
        block.add("POST", f"{url}/notice", body, when.notice)
    objection_id = _id("objection", procedure_id)
    if when.objection is not None:
        body = {"objection_id": str(objection_id), "summary": "A letter questions the candidate's attendance record"}
        block.add_unversioned("POST", f"{url}/objections", body, when.objection)
    if when.objection_concluded is not None:
        upheld = scenario == "objection_upheld"
        finding = (
            "Confirmed: months of absence were not reported"
            if upheld
            else "The attendance records were checked: the letter is unfounded"
        )
        body = {"substantiated": upheld, "finding": finding}
        block.add(
            "POST",
            f"{url}/objections/{objection_id}/conclusion",
            body,
            when.objection_concluded,
            events=2 if upheld else 1,
        )
    if when.closed is not None:
        block.add("POST", f"{url}/notice/close", None, when.closed)
    if when.concluded is not None:
        number = f"{org_code.upper()}-ORG-{when.concluded.year}-{procedure_id.hex[:4]}"
        body = {"document_number": number, "document_date": when.concluded.isoformat()}
        block.add("POST", f"{url}/outcome", body, when.concluded)
    if when.stopped is not None:
        block.add_unversioned(
            "POST", f"{url}/stop", {"reason": "The candidate withdrew for family reasons"}, when.stopped
        )


async def _there(loader: DemoLoader, block: Block) -> bool:
    """Whether the block was loaded before: the team has posts, the procedure its stream."""
    response = await loader.get(block.check)
    if response.status_code != httpx.codes.OK:
        return False
    return bool(response.json()["posts"]) if block.team else True


async def load(client: httpx.AsyncClient, token: str, org: DemoOrg) -> tuple[int, int]:
    """Send selection's demo commands; return (sent, already there).

    Teams and procedures are streams of their own: a few load at once, each in its order. The
    appointments out of the pool go after every team's other commands (a cadre appointed leaves the
    pool that other teams name successors from), and the procedures after the teams.
    """
    loader = DemoLoader(client, token, hour=TEAM_HOUR)
    demo = plan(org)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def send(commands: Sequence[Command]) -> None:
        async with slots:
            for command in commands:
                # Units and cadres reach selection from the registry's topic: a 404 waits for them.
                await loader.send(
                    command.method, command.url, command.body, command.day, if_match=command.if_match, until_known=True
                )

    teams = []
    for block in demo.teams:
        if await _there(loader, block):
            loader.skipped += len(block.commands)
        else:
            teams.append(block)
    procedures = []
    for block in demo.procedures:
        if await _there(loader, block):
            loader.skipped += len(block.commands)
        else:
            procedures.append(block)
    await asyncio.gather(*(send([c for c in block.commands if not c.last]) for block in teams))
    await asyncio.gather(*(send([c for c in block.commands if c.last]) for block in teams))
    await asyncio.gather(*(send(block.commands) for block in procedures))
    return loader.sent, loader.skipped
