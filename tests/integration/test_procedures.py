"""The procedures against real PostgreSQL: commands, the board, the refusals, the file's check.

The units and the pool are the registry's view (`runtime.registry_view`), filled here as the
registry's events would fill them; the procedures' own events go through the store and its
inline projection, as in the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from uuid import UUID

import pytest

from contracts.envelope import Actor, Role, uuid7
from contracts.procedure import (
    Candidate,
    Document,
    InspectionConclusion,
    MeetingVote,
    Motion,
    ProcedureKind,
    ProcedureRules,
    Talks,
    TallyLine,
)
from contracts.registry import Education, Gender
from runtime import clock, db, registry_view, store
from runtime.context import CommandContext
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from services.selection import procedure_commands as commands
from services.selection import projection as selection_projection
from services.selection.procedure_board import SCHEMA, ProcedureBoard
from services.selection.procedure_commands import ProcedureCommands
from services.selection.procedure_file import check
from tests.support import DatabaseFactory

COUNTY = Actor(user="organizer-county", org_path="prov.county", role=Role.ORGANIZER)
OTHER = Actor(user="organizer-other", org_path="prov.other", role=Role.ORGANIZER)
PROVINCE = Actor(user="organizer-province", org_path="prov", role=Role.ORGANIZER)
DOC = Document(title="report", sha256="b" * 64)


def ctx(actor: Actor = COUNTY) -> CommandContext:
    return CommandContext(actor=actor, correlation_id=uuid7())


@pytest.fixture
async def handlers(database: DatabaseFactory) -> AsyncIterator[tuple[ProcedureCommands, db.Pool]]:
    pool = await db.create_pool(await database("selection"))
    await db.apply_schema(pool, (*store.SCHEMA, *registry_view.SCHEMA, *selection_projection.SCHEMA, *SCHEMA))
    for code, path in (("prov", "prov"), ("county", "prov.county"), ("other", "prov.other")):
        await pool.execute(
            "INSERT INTO units (code, name, level, parent_code, path) VALUES ($1, $1, 'county', NULL, $2)", code, path
        )
    es = store.EventStore(pool, source="selection", deployment="prov", inline=ProcedureBoard())
    yield ProcedureCommands(es, pool), pool
    await es.close()
    await pool.close()


def entry() -> commands.OpenEntry:
    return commands.OpenEntry(
        kind=ProcedureKind.ENTRY,
        org_code="county",
        reserve_kind="county deputy",
        candidate=Candidate(
            full_name="Li Ming",
            gender=Gender.FEMALE,
            birth_date=date(1988, 5, 1),
            education=Education.MASTER,
            current_position="deputy director",
            years_of_service=12,
            grassroots_months=30,
        ),
    )


def ballot(votes: int) -> commands.RecordRecommendation:
    return commands.RecordRecommendation(
        meeting=MeetingVote(
            held_on=clock.today(),
            eligible=45,
            present=42,
            ballots_cast=40,
            valid_ballots=40,
            invalid_ballots=0,
            tally=(TallyLine(candidate_name="Li Ming", votes=votes),),
        ),
        talks=Talks(interviewed=20, in_favour=15),
        documents=(DOC,),
    )


INSPECTION = commands.RecordInspection(
    team=("Zhao", "Qian"), interviewed=25, report=DOC, conclusion=InspectionConclusion.FIT, clean_record=DOC
)


def decision(present: int = 9) -> commands.RecordDecision:
    return commands.RecordDecision(
        held_on=clock.today(),
        members=9,
        present=present,
        votes_for=present,
        votes_against=0,
        abstentions=0,
        minutes=DOC,
    )


async def to_notice(cmd: ProcedureCommands, opening: commands.OpenEntry) -> tuple[str, UUID]:
    opened = await cmd.open(ctx(), opening)
    procedure_id = uuid_of(opened.stream_id)
    await cmd.recommend(ctx(), procedure_id, ballot(30), None)
    await cmd.inspect(ctx(), procedure_id, INSPECTION, None)
    await cmd.decide(ctx(), procedure_id, decision(), None)
    await cmd.publish_notice(ctx(), procedure_id, commands.PublishNotice(), None)
    return opened.stream_id, procedure_id


def uuid_of(stream_id: str) -> UUID:
    return UUID(stream_id.removeprefix("procedure-"))


async def board(pool: db.Pool, procedure_id: UUID) -> dict[str, object]:
    row = await pool.fetchrow("SELECT * FROM procedures WHERE procedure_id = $1", procedure_id)
    assert row is not None
    return dict(row)


async def test_a_whole_entry_procedure_with_a_dismissed_objection(handlers: tuple[ProcedureCommands, db.Pool]) -> None:
    cmd, pool = handlers
    _, procedure_id = await to_notice(cmd, entry())
    row = await board(pool, procedure_id)
    assert row["step"] == "notice"
    assert row["notice_starts_on"] == clock.today()
    raised = await cmd.raise_objection(ctx(), procedure_id, commands.RaiseObjection(summary="a complaint"))
    objection_id = await pool.fetchval(
        "SELECT objection_id FROM procedure_objections WHERE procedure_id = $1", procedure_id
    )
    assert raised.version == 6
    procedure, _ = await cmd.load(ctx(), procedure_id)
    ends_at = procedure.notice_ends_at(clock.current())
    assert ends_at is not None
    clock.use(clock.current().at(ends_at))
    with pytest.raises(ConflictError, match="still open"):
        await cmd.close_notice(ctx(), procedure_id, None)
    await cmd.conclude_objection(
        ctx(), procedure_id, objection_id, commands.ConcludeObjection(substantiated=False, finding="not borne out")
    )
    await cmd.close_notice(ctx(), procedure_id, None)
    done = await cmd.conclude(
        ctx(), procedure_id, commands.Conclude(document_number="Org [2026] 7", document_date=clock.today()), None
    )
    assert [e.event_type for e in done.events] == ["ProcedureConcluded"]
    row = await board(pool, procedure_id)
    assert (row["step"], row["document_number"], row["version"]) == ("concluded", "Org [2026] 7", done.version)
    assert (
        await pool.fetchval("SELECT substantiated FROM procedure_objections WHERE procedure_id = $1", procedure_id)
        is False
    )


async def test_refusals_change_nothing(handlers: tuple[ProcedureCommands, db.Pool]) -> None:
    cmd, pool = handlers
    opened = await cmd.open(ctx(), entry())
    procedure_id = uuid_of(opened.stream_id)
    with pytest.raises(ConflictError, match="out of order"):
        await cmd.inspect(ctx(), procedure_id, INSPECTION, None)
    with pytest.raises(RuleViolationError, match="does not add up"):
        await cmd.recommend(ctx(), procedure_id, ballot(41), None)
    await cmd.recommend(ctx(), procedure_id, ballot(30), None)
    await cmd.inspect(ctx(), procedure_id, INSPECTION, None)
    with pytest.raises(RuleViolationError, match="quorum not met"):
        await cmd.decide(ctx(), procedure_id, decision(present=5), None)
    await cmd.decide(ctx(), procedure_id, decision(), None)
    await cmd.publish_notice(ctx(), procedure_id, commands.PublishNotice(), None)
    with pytest.raises(RuleViolationError, match="close early"):
        await cmd.close_notice(ctx(), procedure_id, None)
    with pytest.raises(ConflictError, match="still running"):
        await cmd.open(
            ctx(), entry().model_copy(update={"candidate_id": (await board(pool, procedure_id))["candidate_id"]})
        )
    row = await board(pool, procedure_id)
    assert (row["step"], row["version"]) == ("notice", 5)
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", opened.stream_id) == 5


async def test_a_substantiated_objection_stops_an_appointment(handlers: tuple[ProcedureCommands, db.Pool]) -> None:
    cmd, pool = handlers
    cadre_id = uuid7()
    await pool.execute(
        "INSERT INTO pool_cadres (cadre_id, org_code, org_path, full_name, position, grassroots_months, language,"
        " nominated_on, in_pool, version) VALUES ($1, 'county', 'prov.county', 'Wang Fang', 'deputy head', 24, 'zh',"
        " $2, true, 1)",
        cadre_id,
        clock.today() - timedelta(days=400),
    )
    motion = Motion(post_id=uuid7(), post_title="deputy county head", reason="a vacancy")
    await pool.execute(
        "INSERT INTO posts (post_id, org_code, org_path, kind, title, rank, created_on)"
        " VALUES ($1, 'county', 'prov.county', 'deputy', 'deputy county head', 'county deputy', $2)",
        motion.post_id,
        clock.today() - timedelta(days=800),
    )
    opening = commands.OpenAppointment(
        kind=ProcedureKind.APPOINTMENT, org_code="county", candidate_id=cadre_id, motion=motion
    )
    opened = await cmd.open(ctx(), opening)
    procedure_id = uuid_of(opened.stream_id)
    tally = ballot(30).model_copy(
        update={
            "meeting": ballot(30).meeting.model_copy(
                update={"tally": (TallyLine(candidate_name="Wang Fang", votes=30),)}
            )
        }
    )
    await cmd.recommend(ctx(), procedure_id, tally, None)
    await cmd.inspect(ctx(), procedure_id, INSPECTION, None)
    await cmd.decide(ctx(), procedure_id, decision(), None)
    await cmd.publish_notice(ctx(), procedure_id, commands.PublishNotice(), None)
    await cmd.raise_objection(ctx(), procedure_id, commands.RaiseObjection(summary="undeclared business"))
    objection_id = await pool.fetchval(
        "SELECT objection_id FROM procedure_objections WHERE procedure_id = $1", procedure_id
    )
    stopped = await cmd.conclude_objection(
        ctx(), procedure_id, objection_id, commands.ConcludeObjection(substantiated=True, finding="confirmed")
    )
    assert [e.event_type for e in stopped.events] == ["ObjectionConcluded", "ProcedureStopped"]
    row = await board(pool, procedure_id)
    assert (row["step"], row["stopped_at"], row["post_title"]) == ("stopped", "notice", "deputy county head")


async def test_another_countys_procedures_are_invisible_and_the_province_runs_a_countys(
    handlers: tuple[ProcedureCommands, db.Pool],
) -> None:
    cmd, _ = handlers
    opened = await cmd.open(ctx(PROVINCE), entry())
    procedure_id = uuid_of(opened.stream_id)
    with pytest.raises(NotFoundError):
        await cmd.recommend(ctx(OTHER), procedure_id, ballot(30), None)
    with pytest.raises(NotFoundError):
        await cmd.open(ctx(OTHER), entry())
    await cmd.recommend(ctx(COUNTY), procedure_id, ballot(30), None)


async def test_the_organizations_rules_and_calendar_apply_below_it(handlers: tuple[ProcedureCommands, db.Pool]) -> None:
    cmd, _ = handlers
    await cmd.set_rules(ctx(PROVINCE), "prov", commands.SetRules(rules=ProcedureRules(notice_working_days=7)))
    day = clock.today() + timedelta(days=3)
    await cmd.adjust_calendar(ctx(PROVINCE), "prov", commands.AdjustCalendar(day=day, working=False, reason="local"))
    assert (await cmd.rules_at("prov.county")).notice_working_days == 7
    assert not (await cmd.calendar_at("prov.county")).is_working_day(day)
    _, procedure_id = await to_notice(cmd, entry())
    procedure, _ = await cmd.load(ctx(), procedure_id)
    assert procedure.notice is not None
    assert procedure.notice.working_days == 7
    calendar = await cmd.calendar_at("prov.county")
    assert calendar.working_days_between(procedure.notice.starts_on, procedure.notice.ends_on) == 7


async def test_the_file_of_a_procedure_checks_out_against_the_chain(
    handlers: tuple[ProcedureCommands, db.Pool],
) -> None:
    cmd, _ = handlers
    stream, _ = await to_notice(cmd, entry())
    await cmd.open(ctx(), entry())  # the chain goes on after the procedure's last event
    envelopes, successors, head = await cmd.file(uuid_of(stream))
    assert [e.stream_version for e in envelopes] == [1, 2, 3, 4, 5]
    result = check(envelopes, successors, head)
    assert result.ok, result.problems
    assert result.events == 5
