"""The hash chain of a service's events, as pure checks: what makes a stored row a sound link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import TypeAdapter

from contracts.envelope import chain_hash

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
