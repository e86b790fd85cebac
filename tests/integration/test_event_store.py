"""The event store against real PostgreSQL: concurrency, hash chain, append-only rows, upcasting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta

import asyncpg
import orjson
import pytest

from contracts.envelope import canonical_json, chain_hash, uuid7
from contracts.registry import CadreNominated, CadreNominatedV1, CadreRetired, Education, Gender, RetirementReason
from runtime import clock, db, store
from runtime.context import CommandContext
from runtime.errors import ConcurrencyError
from runtime.eventlog import EventLog
from tests import support
from tests.eventlog_contract import EventLogContract
from tests.support import DatabaseFactory, command_context


def ctx() -> CommandContext:
    return command_context()


def nominated(cadre_id: uuid.UUID) -> CadreNominated:
    return support.nominated(cadre_id, full_name="Chen Jie", org_code="qs")


def retired(cadre_id: uuid.UUID) -> CadreRetired:
    return CadreRetired(cadre_id=cadre_id, reason=RetirementReason.WITHDREW, effective_on=clock.today())


@pytest.fixture
async def pool(database: DatabaseFactory) -> AsyncIterator[db.Pool]:
    created = await db.create_pool(await database("store"))
    await db.apply_schema(created, store.SCHEMA)
    yield created
    await created.close()


async def test_two_concurrent_writers_on_one_stream_exactly_one_wins(pool: db.Pool) -> None:
    # Two stores are two processes: they meet only at the database.
    first = store.EventStore(pool, source="registry", deployment="a")
    second = store.EventStore(pool, source="registry", deployment="b")
    cadre_id = uuid7()
    stream = f"cadre-{cadre_id}"
    await first.append(stream, 0, [nominated(cadre_id)], ctx=ctx(), org_path="cn.qs", cadre_id=cadre_id)

    results = await asyncio.gather(
        first.append(stream, 1, [retired(cadre_id)], ctx=ctx(), org_path="cn.qs", cadre_id=cadre_id),
        second.append(stream, 1, [retired(cadre_id)], ctx=ctx(), org_path="cn.qs", cadre_id=cadre_id),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, list)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(wins) == 1
    assert len(conflicts) == 1
    assert conflicts[0].expected == 1
    assert conflicts[0].actual == 2
    versions = await pool.fetch("SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY 1", stream)
    assert [row[0] for row in versions] == [1, 2]
    await first.close()
    await second.close()


async def test_concurrent_appends_inside_one_group_commit(pool: db.Pool) -> None:
    es = store.EventStore(pool, source="registry", deployment="a")
    ids = [uuid7() for _ in range(50)]
    # Fifty new streams, plus one stream asked for twice at version 0: the batch keeps each check.
    twice = ids[0]
    calls = [es.append(f"cadre-{i}", 0, [nominated(i)], ctx=ctx(), org_path="cn.qs", cadre_id=i) for i in ids] + [
        es.append(f"cadre-{twice}", 0, [nominated(twice)], ctx=ctx(), org_path="cn.qs", cadre_id=twice)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    assert sum(isinstance(r, list) for r in results) == 50
    positions = [row[0] for row in await pool.fetch("SELECT position FROM events ORDER BY position")]
    assert positions == list(range(1, 51))
    assert await es.verify_chain() is None
    await es.close()


async def test_a_changed_byte_is_found_by_the_chain_check(pool: db.Pool) -> None:
    es = store.EventStore(pool, source="registry", deployment="a")
    for _ in range(5):
        cadre_id = uuid7()
        await es.append(f"cadre-{cadre_id}", 0, [nominated(cadre_id)], ctx=ctx(), org_path="cn.qs", cadre_id=cadre_id)
    assert await es.verify_chain() is None

    # The service's role cannot change a row: the table refuses UPDATE, DELETE and TRUNCATE.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE events SET body = body WHERE position = 3")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM events WHERE position = 3")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("TRUNCATE events")

    # A superuser who turns the trigger off and edits one byte is still caught.
    async with pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE events SET body = replace(body, 'Chen Jie', 'Chen Jiu') WHERE position = 3")
        await conn.execute("RESET session_replication_role")
    broken = await es.verify_chain()
    assert broken is not None
    assert broken.position == 3
    assert "hash" in broken.problem
    await es.close()


async def test_read_back_upcasts_version_one_events(pool: db.Pool) -> None:
    """Schema evolution like a deploy: an event stored as v1 by an older build is read as v2."""
    cadre_id = uuid7()
    old = CadreNominatedV1(
        cadre_id=cadre_id,
        org_code="qs",
        full_name="Sun Li",
        gender=Gender.FEMALE,
        birth_year=1988,
        education=Education.MASTER,
        current_position="Deputy director",
        years_of_service=12,
        grassroots_months=24,
        reason="imported from the 2019 roster",
    )
    # Write the row the way the old build did: same envelope, payload in version 1.
    es = store.EventStore(pool, source="registry", deployment="a")
    await es.append(f"cadre-{cadre_id}", 0, [old], ctx=ctx(), org_path="cn.qs", cadre_id=cadre_id)
    body = orjson.loads(await pool.fetchval("SELECT body FROM events WHERE position = 1"))
    assert body["schema_version"] == 1
    assert body["payload"]["birth_year"] == 1988

    [recorded] = await es.read_stream(f"cadre-{cadre_id}")
    assert isinstance(recorded.event, CadreNominated)
    assert recorded.event.birth_date == date(1988, 1, 1)
    assert recorded.event.birth_date_precision == "year"
    assert recorded.envelope.schema_version == 1  # the record itself is never rewritten
    assert await es.verify_chain() is None
    await es.close()


def test_canonical_json_is_stable_across_key_order() -> None:
    one = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    two = {"a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert canonical_json(one) == canonical_json(two) == '{"a":{"x":"é","y":[1,2]},"b":1}'.encode()
    assert chain_hash(one) == chain_hash(two)


@pytest.mark.dates
async def test_events_are_recorded_on_the_platforms_clock_and_never_before_the_last(pool: db.Pool) -> None:
    es = store.EventStore(pool, source="registry", deployment="a")
    first_id, second_id = uuid7(), uuid7()
    before = clock.now()
    [first] = await es.append(
        f"cadre-{first_id}", 0, [nominated(first_id)], ctx=ctx(), org_path="cn.qs", cadre_id=first_id
    )
    assert before <= first.recorded_at <= clock.now()
    assert first.occurred_at <= first.recorded_at  # decided, then recorded

    # A writer whose clock runs an hour behind (another host) records no earlier than the chain's last event.
    test_clock = clock.current()
    clock.use(test_clock.at(clock.now() - timedelta(hours=1)))
    try:
        [second] = await es.append(
            f"cadre-{second_id}", 0, [nominated(second_id)], ctx=ctx(), org_path="cn.qs", cadre_id=second_id
        )
    finally:
        clock.use(test_clock)
    assert second.recorded_at == first.recorded_at
    assert second.occurred_at < first.occurred_at  # what happened when stays the writer's own account
    rows = await pool.fetch("SELECT recorded_at FROM events ORDER BY position")
    assert [row["recorded_at"] for row in rows] == [first.recorded_at, second.recorded_at]
    assert await es.verify_chain() is None
    await es.close()


class TestPostgresEventLog(EventLogContract):
    """The event log contract (tests/eventlog_contract.py) against PostgreSQL, as the in-memory log passes it."""

    @pytest.fixture
    async def log(self, pool: db.Pool) -> AsyncIterator[EventLog]:
        es = store.EventStore(pool, source="registry", deployment="a")
        yield es
        await es.close()
