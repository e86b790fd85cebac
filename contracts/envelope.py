"""The envelope every event travels in, and the canonical bytes its hash covers.

An event is stored once, as the canonical JSON of its envelope (keys sorted, no
whitespace, UTF-8). The same bytes are the Kafka message value, so a consumer,
an auditor and the store all hash exactly what was written.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import orjson
import uuid6
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first event of every service's chain."""

ORG_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
ORG_PATH_PATTERN = r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31})*$"

ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
"""A text on one line: no control character, no line break (names end up in mail headers, ids in keys)."""
WHITE_SPACE = r"\x09-\x0d\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Unicode's White_Space, what `strip_whitespace` strips, for a pattern's character class.

Spelled out because `\\s` differs between the validator's regular expressions (Unicode) and JSON
Schema's (ECMA 262, no U+0085) that clients and the fuzzer generate from; so does `\\d` (use 0-9)."""
NOT_BLANK_LINE = rf"^[^\x00-\x1f\x7f]*[^{WHITE_SPACE}\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
"""A text on one line with something in it besides white space (what `strip_whitespace` and `min_length=1` keep)."""

OrgCode = Annotated[str, StringConstraints(pattern=ORG_CODE_PATTERN)]
"""An org unit's code: lower-case letters, digits and `_`, unique in the organization."""

OrgPath = Annotated[str, StringConstraints(pattern=ORG_PATH_PATTERN)]
"""Codes from the root down to a unit, joined by dots: `cn.qs.qs_bh`."""

_ORG_PATH_RE = re.compile(ORG_PATH_PATTERN)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        msg = "timestamps must carry a time zone"
        raise ValueError(msg)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class Role(StrEnum):
    """What an actor may do inside its org subtree."""

    ORGANIZER = "organizer"
    """Staff of an organization department: reads and changes its subtree."""
    AUDITOR = "auditor"
    """Reads its subtree, including history; changes nothing."""
    VIEWER = "viewer"
    """Reads the current state of its subtree."""
    SYSTEM = "system"
    """A service acting on its own, in reaction to another event."""


class Actor(BaseModel):
    """Who did something, acting at which org unit, in which role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str
    org_path: OrgPath
    role: Role

    def covers(self, org_path: str) -> bool:
        """Whether `org_path` lies in this actor's subtree (its own unit included)."""
        return in_subtree(org_path, self.org_path)


def in_subtree(org_path: str, root_path: str) -> bool:
    """Whether `org_path` is `root_path` or lies below it."""
    return org_path == root_path or org_path.startswith(root_path + ".")


def is_org_path(value: str) -> bool:
    """Whether `value` is a well-formed org path."""
    return _ORG_PATH_RE.fullmatch(value) is not None


class Envelope(BaseModel):
    """One recorded event: what happened (`payload`) and everything needed to trust it.

    `position` orders all events of one service; `stream_version` orders the events
    of one stream (one cadre, one org unit, ...). `prev_hash` and `hash` chain every
    event to the one before it in the same service.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    event_type: str
    schema_version: int
    source: str
    deployment: str
    stream_id: str
    stream_version: int
    position: int
    cadre_id: UUID | None
    org_path: OrgPath
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def key(self) -> bytes:
        """The Kafka message key: the cadre id, so each cadre's events stay in order."""
        return str(self.cadre_id).encode() if self.cadre_id else self.stream_id.encode()

    def to_bytes(self) -> bytes:
        """The canonical JSON of the whole envelope, as stored and published."""
        return canonical_json(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Envelope:
        """Parse an envelope from its JSON form."""
        return cls.model_validate_json(data)

    def computed_hash(self) -> str:
        """The hash this envelope should carry, given its contents and `prev_hash`."""
        fields = self.model_dump(mode="json")
        fields.pop("hash")
        return chain_hash(fields)


def uuid7() -> UUID:
    """A new time-ordered UUID (version 7): event ids sort by creation time."""
    value: UUID = uuid6.uuid7()
    return value


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: one byte string per value."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def chain_hash(fields_without_hash: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an envelope's fields (`prev_hash` included)."""
    return hashlib.sha256(canonical_json(fields_without_hash)).hexdigest()
