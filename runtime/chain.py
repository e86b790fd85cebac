"""The hash chain of a service's events, as pure checks: what makes a stored row a sound link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from pydantic import TypeAdapter

from contracts.envelope import GENESIS_HASH, chain_hash
from contracts.event import Event
from runtime.context import CommandContext

_DATETIME: Final = TypeAdapter(datetime)


def json_time(value: datetime) -> str:
    """The same text pydantic writes for this datetime, so hashes recompute from models too."""
    text: str = _DATETIME.dump_python(value.astimezone(UTC), mode="json")
    return text


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place where the hash chain does not hold."""

    position: int
    problem: str


def append_fields(
    *, source: str, deployment: str, stream_id: str, ctx: CommandContext, org_path: str, cadre_id: UUID | None
) -> dict[str, Any]:
    """The fields every event of one append shares, as JSON values: each link seals them."""
    return {
        "source": source,
        "deployment": deployment,
        "stream_id": stream_id,
        "cadre_id": str(cadre_id) if cadre_id else None,
        "org_path": org_path,
        "occurred_at": json_time(ctx.occurred),
        "actor": ctx.actor.model_dump(mode="json"),
        "correlation_id": str(ctx.correlation_id),
        "causation_id": str(ctx.causation_id) if ctx.causation_id else None,
    }


def link_fields(
    common: dict[str, Any],
    event: Event,
    *,
    recorded_at: str,
    event_id: UUID,
    stream_version: int,
    position: int,
    payload: object,
    prev_hash: str,
) -> dict[str, Any]:
    """The fields one event's link seals: its append's `common` ones (`append_fields`) and its own."""
    return {
        **common,
        "recorded_at": recorded_at,
        "event_id": str(event_id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "stream_version": stream_version,
        "position": position,
        "payload": payload,
        "prev_hash": prev_hash,
    }


class ChainWalk:
    """Walks stored rows in position order from `after`: where the first one is no sound next link."""

    def __init__(self, after: int = 0, prev_hash: str = GENESIS_HASH) -> None:
        self.expected = after + 1
        """The position the next row must have."""
        self.prev_hash = prev_hash
        """The hash the next row must name as the one before."""

    def step(self, row: Any) -> ChainBreak | None:
        """Take the next row: the break it makes (the walk stops there), or None and the walk moves on."""
        problem = row_problem(row, self.expected, self.prev_hash)
        if problem:
            return ChainBreak(position=self.expected, problem=problem)
        self.prev_hash = row["hash"]
        self.expected += 1
        return None


def row_problem(row: Any, expected_position: int, prev_hash: str) -> str | None:
    """Why a stored event row (position, stream_id, stream_version, event_id, body, hash) is no sound next link.

    None when it is at `expected_position`, its hash covers its body, it names `prev_hash` as the
    link before, and its indexed columns agree with its body.
    """
    if row["position"] != expected_position:
        return f"missing event: found position {row['position']}"
    fields = orjson.loads(row["body"])
    claimed = fields.pop("hash", None)
    if claimed != row["hash"]:
        return "hash column differs from the body"
    if chain_hash(fields) != claimed:
        return "body does not match its hash"
    if fields.get("prev_hash") != prev_hash:
        return "prev_hash does not name the event before"
    same = (
        fields.get("position") == row["position"]
        and fields.get("stream_id") == row["stream_id"]
        and fields.get("stream_version") == row["stream_version"]
        and fields.get("event_id") == str(row["event_id"])
    )
    return None if same else "indexed columns differ from the body"
