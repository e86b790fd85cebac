"""The contract every `EventLog` keeps: one suite, run against the in-memory log and PostgreSQL's store.

A backend's test module subclasses `EventLogContract` and gives the `log` fixture (a fresh,
empty log); every assertion below then holds for it. The pattern is eventsourcing's recorder tests.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.envelope import GENESIS_HASH, uuid7
from contracts.registry import CadreNominated
from runtime.errors import ConcurrencyError
from runtime.eventlog import EventLog
from tests.support import command_context, nominated


def _nominated(cadre_id: uuid.UUID, name: str = "Chen Jie") -> CadreNominated:
    return nominated(cadre_id, full_name=name, org_code="qs")


async def _append(log: EventLog, stream: str, expected: int, count: int = 1) -> None:
    cadre_id = uuid7()
    events = [_nominated(cadre_id, f"Cadre {n}") for n in range(count)]
    await log.append(stream, expected, events, ctx=command_context(), org_path="cn.qs", cadre_id=cadre_id)


class EventLogContract:
    """The assertions; a subclass gives the `log` fixture."""

    async def test_an_append_is_read_back_in_order_with_its_versions(self, log: EventLog) -> None:
        cadre_id = uuid7()
        appended = await log.append(
            "cadre-x", 0, [_nominated(cadre_id), _nominated(cadre_id, "Li Na")], ctx=command_context(), org_path="cn.qs"
        )
        assert [e.stream_version for e in appended] == [1, 2]
        read = await log.read_stream("cadre-x")
        assert [r.envelope.event_id for r in read] == [e.event_id for e in appended]
        assert [r.event for r in read] == [_nominated(cadre_id), _nominated(cadre_id, "Li Na")]
        assert appended[0].source == log.source
        assert await log.read_stream("cadre-none") == []

    async def test_a_stale_expected_version_is_refused_and_writes_nothing(self, log: EventLog) -> None:
        await _append(log, "cadre-a", 0)
        with pytest.raises(ConcurrencyError):
            await _append(log, "cadre-a", 0)
        with pytest.raises(ConcurrencyError):
            await _append(log, "cadre-b", 3)
        assert len(await log.read_stream("cadre-a")) == 1
        assert await log.read_stream("cadre-b") == []
        assert await log.head() == 1
        await _append(log, "cadre-a", 1)
        assert await log.head() == 2

    async def test_concurrent_writers_on_one_stream_exactly_one_wins(self, log: EventLog) -> None:
        outcomes = await asyncio.gather(*(_append(log, "cadre-c", 0) for _ in range(5)), return_exceptions=True)
        assert sum(o is None for o in outcomes) == 1
        assert all(isinstance(o, ConcurrencyError) for o in outcomes if o is not None)
        assert len(await log.read_stream("cadre-c")) == 1

    async def test_positions_are_gapless_and_chained(self, log: EventLog) -> None:
        assert await log.head() == 0
        await _append(log, "cadre-1", 0, count=2)
        await _append(log, "cadre-2", 0)
        await _append(log, "cadre-1", 2)
        everything = await log.read_after(0)
        assert [e.position for e in everything] == [1, 2, 3, 4]
        assert everything[0].prev_hash == GENESIS_HASH
        assert [e.prev_hash for e in everything[1:]] == [e.hash for e in everything[:-1]]
        assert await log.head() == 4
        assert await log.verify_chain() is None
        assert await log.verify_chain(after=2) is None

    async def test_reading_from_a_position(self, log: EventLog) -> None:
        for n in range(5):
            await _append(log, f"cadre-{n}", 0)
        assert [e.position for e in await log.read_after(2)] == [3, 4, 5]
        assert [e.position for e in await log.read_after(1, limit=2)] == [2, 3]
        assert await log.read_after(5) == []

    async def test_a_dry_run_answers_and_records_nothing(self, log: EventLog) -> None:
        from dataclasses import replace  # noqa: PLC0415 - only here

        cadre_id = uuid7()
        ctx = replace(command_context(), dry_run=True)
        answered = await log.append("cadre-d", 0, [_nominated(cadre_id)], ctx=ctx, org_path="cn.qs")
        assert [e.stream_version for e in answered] == [1]
        assert await log.read_stream("cadre-d") == []
        assert await log.head() == 0
