"""The registry projection and the services' view of the registry: batches fold as one event at a time."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from contracts.envelope import Actor, Envelope, Role, uuid7
from contracts.event import Event
from contracts.personal import Sealed
from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Education,
    Gender,
    MentorAssigned,
    OrgLevel,
    OrgUnitRegistered,
    Person,
    PersonalDataRecorded,
    ProfileChanges,
    ResponsibleLeaderDesignated,
    RetirementReason,
)
from runtime import clock, db, registry_view, store
from runtime.context import CommandContext
from runtime.projection import Recorded
from runtime.registry_view import RegistryView
from services.registry.projection import SCHEMA, RegistryProjection
from tests.support import DatabaseFactory

ACTOR = Actor(user="t", org_path="qs", role=Role.ORGANIZER)


def cadre_history(cadre_id: UUID, n: int) -> list[Event]:
    events: list[Event] = [
        CadreNominated(
            cadre_id=cadre_id,
            org_code="bh",
            full_name=f"Cadre {n}",
            gender=Gender.FEMALE,
            birth_date=date(1990, 1, n + 1),
            education=Education.BACHELOR,
            current_position="Clerk",
            years_of_service=5,
            grassroots_months=12,
            reason="r",
            email=f"c{n}@example.org",
        ),
        CadreProfileUpdated(cadre_id=cadre_id, changes=ProfileChanges(current_position="Section chief")),
        MentorAssigned(cadre_id=cadre_id, mentor=Person(user_id="m1", name="First", email="m1@example.org")),
        CadreProfileUpdated(cadre_id=cadre_id, changes=ProfileChanges(years_of_service=6, email=None)),
        MentorAssigned(cadre_id=cadre_id, mentor=Person(user_id="m2", name="Second")),
        CadreProfileUpdated(cadre_id=cadre_id, changes=ProfileChanges(current_position="Deputy director")),
        PersonalDataRecorded(cadre_id=cadre_id, sealed=Sealed(key_id=cadre_id, nonce="A" * 16, ciphertext=f"c{n}")),
    ]
    if n % 2:
        events.append(CadreRetired(cadre_id=cadre_id, reason=RetirementReason.WITHDREW, effective_on=clock.today()))
    return events


async def recorded_history(pool: db.Pool) -> list[Recorded]:
    es = store.EventStore(pool, source="registry", deployment="t")
    ctx = CommandContext(actor=ACTOR, correlation_id=uuid7())
    units: list[Event] = [
        OrgUnitRegistered(code="qs", name="Q", level=OrgLevel.PROVINCIAL, parent_code=None, path="qs"),
        OrgUnitRegistered(code="bh", name="B", level=OrgLevel.MUNICIPAL, parent_code="qs", path="qs.bh"),
        ResponsibleLeaderDesignated(org_code="bh", leader=Person(user_id="l1", name="L1")),
        ResponsibleLeaderDesignated(org_code="bh", leader=Person(user_id="l2", name="L2")),
    ]
    await es.append("units", 0, units, ctx=ctx, org_path="qs")
    for n in range(4):
        cadre_id = uuid7()
        history = cadre_history(cadre_id, n)
        await es.append(f"cadre-{cadre_id}", 0, history, ctx=ctx, org_path="qs.bh", cadre_id=cadre_id)
    recorded = []
    for row in await pool.fetch("SELECT stream_id FROM events GROUP BY stream_id ORDER BY min(position)"):
        recorded += await es.read_stream(row["stream_id"])
    await es.close()
    return recorded


async def tables(pool: db.Pool) -> list[list[tuple[object, ...]]]:
    return [
        [tuple(r) for r in await pool.fetch("SELECT * FROM org_units ORDER BY code")],
        [tuple(r) for r in await pool.fetch("SELECT * FROM cadres ORDER BY cadre_id")],
        [tuple(r) for r in await pool.fetch("SELECT * FROM cadre_counts ORDER BY org_path")],
    ]


async def test_batches_fold_to_the_same_tables(database: DatabaseFactory) -> None:
    source = await db.create_pool(await database("history"), max_size=2)
    await db.apply_schema(source, store.SCHEMA)
    events = await recorded_history(source)
    await source.close()

    # As a consumer reads them: the envelope only, the payload never decoded into its model.
    as_consumed = [Recorded(Envelope.from_bytes(r.envelope.to_bytes())) for r in events]

    projection = RegistryProjection()
    results = []
    for name, batch_size, batch in (
        ("one", 1, events),
        ("three", 3, events),
        ("all", len(events), events),
        ("consumed", len(events), as_consumed),
    ):
        pool = await db.create_pool(await database(f"fold{name}"), max_size=2)
        await db.apply_schema(pool, SCHEMA)
        async with pool.acquire() as conn, conn.transaction():
            for start in range(0, len(batch), batch_size):
                await projection.apply(conn, batch[start : start + batch_size])
        results.append(await tables(pool))
        await pool.close()
    assert results[0] == results[1] == results[2] == results[3]
    cadres = results[0][1]
    paths = sorted({str(row[2]) for row in cadres})
    by_status = [
        (p, sum(r[15] == "in_pool" for r in cadres if r[2] == p), sum(r[15] == "retired" for r in cadres if r[2] == p))
        for p in paths
    ]
    assert results[0][2] == by_status  # the counts agree with the rows they count
    assert {row[8] for row in cadres} == {"Deputy director"}  # the last position wins
    assert all(row[17] == "m2" for row in cadres)  # the last mentor wins
    assert [row[6] for row in results[0][0] if row[0] == "bh"] == ["l2"]  # the last leader wins


async def test_the_view_of_the_registry_folds_batches_as_one_event_at_a_time(
    database: DatabaseFactory,
) -> None:
    source = await db.create_pool(await database("history"), max_size=2)
    await db.apply_schema(source, store.SCHEMA)
    events = await recorded_history(source)
    await source.close()
    as_consumed = [Recorded(Envelope.from_bytes(r.envelope.to_bytes())) for r in events]

    results = []
    for name, view, batch_size, batch in (
        ("one", RegistryView(), 1, events),
        ("three", RegistryView(), 3, events),
        ("all", RegistryView(), len(events), as_consumed),
        ("units", RegistryView(cadres=False), len(events), as_consumed),
    ):
        pool = await db.create_pool(await database(f"view{name}"), max_size=2)
        await db.apply_schema(pool, registry_view.SCHEMA)
        async with pool.acquire() as conn, conn.transaction():
            for start in range(0, len(batch), batch_size):
                await view.apply(conn, batch[start : start + batch_size])
        results.append(
            [
                [tuple(r) for r in await pool.fetch("SELECT * FROM units ORDER BY code")],
                [tuple(r) for r in await pool.fetch("SELECT * FROM pool_cadres ORDER BY cadre_id")],
            ]
        )
        await pool.close()
    assert results[0] == results[1] == results[2]
    assert results[3] == [results[0][0], []]  # units alone
    units, cadres = results[0]
    assert [(u[0], u[6]) for u in units] == [("bh", "l2"), ("qs", None)]  # the last leader wins
    assert len(cadres) == 4
    assert {c[4] for c in cadres} == {"Deputy director"}  # the last position wins
    assert {c[13] for c in cadres} == {"m2"}  # the last mentor wins
    assert sorted(c[10] for c in cadres) == [False, False, True, True]  # two retired
    assert {c[11] for c in cadres if not c[10]} == {"withdrew"}
    assert {(c[10], c[17]) for c in cadres} == {(True, 6), (False, 8)}  # the version of the last event it reads
