"""The chain's pure checks (runtime.chain) and a late entry's declaration (runtime.context), without a database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from contracts.audit import LateEntryDeclared
from contracts.envelope import GENESIS_HASH, Actor, Role, canonical_json, chain_hash, uuid7
from runtime import clock
from runtime.chain import row_problem
from runtime.context import CommandContext, LateEntry

ACTOR = Actor(user="u", org_path="cn", role=Role.ORGANIZER)


def _row(position: int, prev_hash: str) -> dict[str, Any]:
    fields = {
        "event_id": str(uuid7()),
        "occurred_at": "2026-01-01T00:00:00Z",
        "position": position,
        "prev_hash": prev_hash,
        "stream_id": "cadre-1",
        "stream_version": position,
    }
    digest = chain_hash(fields)
    body = canonical_json({**fields, "hash": digest}).decode()
    return {
        "position": position,
        "stream_id": "cadre-1",
        "stream_version": position,
        "event_id": fields["event_id"],
        "body": body,
        "hash": digest,
    }


def test_a_sound_chain_has_no_problem() -> None:
    first = _row(1, GENESIS_HASH)
    second = _row(2, first["hash"])
    assert row_problem(first, 1, GENESIS_HASH) is None
    assert row_problem(second, 2, first["hash"]) is None


def test_each_broken_link_is_named() -> None:
    first = _row(1, GENESIS_HASH)
    assert row_problem(first, 2, GENESIS_HASH) == "missing event: found position 1"
    assert row_problem(first, 1, "f" * 64) == "prev_hash does not name the event before"
    assert row_problem({**first, "hash": "0" * 64}, 1, GENESIS_HASH) == "hash column differs from the body"
    tampered = orjson.loads(first["body"])
    tampered["stream_id"] = "cadre-2"
    assert row_problem({**first, "body": orjson.dumps(tampered)}, 1, GENESIS_HASH) == "body does not match its hash"
    assert row_problem({**first, "stream_version": 7}, 1, GENESIS_HASH) == "indexed columns differ from the body"


def test_a_late_entry_declares_itself_and_the_declaration_happens_now() -> None:
    occurred = clock.now() - timedelta(days=90)
    late = LateEntry(reason="paper records", permission="late_entry", window_days=30)
    ctx = CommandContext(actor=ACTOR, correlation_id=uuid7(), occurred_at=occurred, late_entry=late)
    declared = ctx.late_declaration("cadre-1", 3, 4)
    assert declared is not None
    event, own = declared
    assert isinstance(event, LateEntryDeclared)
    assert (event.stream_id, event.first_version, event.last_version) == ("cadre-1", 3, 4)
    assert (event.occurred_at, event.reason, event.window_days) == (occurred, "paper records", 30)
    assert own.occurred_at is None
    assert own.late_entry is None
    assert own.correlation_id == ctx.correlation_id


def test_on_time_commands_declare_nothing() -> None:
    assert CommandContext(actor=ACTOR, correlation_id=uuid7()).late_declaration("cadre-1", 1, 1) is None
