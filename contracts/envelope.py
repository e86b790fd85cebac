"""The envelope every event travels in, and the canonical bytes its hash covers.

An event is stored once, as the canonical JSON of its envelope (keys sorted, no
whitespace, UTF-8). The same bytes are the Kafka message value, so a consumer,
an auditor and the store all hash exactly what was written.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar
from uuid import UUID, SafeUUID

import msgspec
import orjson
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
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""A text of lines: no control character but tab and line breaks (what every text of a JSON body may hold)."""
NOT_BLANK_TEXT = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^{WHITE_SPACE}\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""A text of lines with something in it besides white space (what `strip_whitespace` and `min_length=1` keep)."""

OrgCode = Annotated[str, StringConstraints(pattern=ORG_CODE_PATTERN)]
"""An org unit's code: lower-case letters, digits and `_`, unique in the organization."""

OrgPath = Annotated[str, StringConstraints(pattern=ORG_PATH_PATTERN)]
"""Codes from the root down to a unit, joined by dots: `cn.qs.qs_bh`."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest in lower-case hex (an event's hash, a document's)."""

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
    CADRE = "cadre"
    """A reserve cadre for themselves: the actor's user is the cadre's id, its unit the cadre's unit.

    It reads its own record and reports its own self-study, nothing else: every route refuses it
    unless the route is open to it (`runtime.auth.OWN_RECORD`, ADR 0028).
    """
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

    def reaches(self, org_path: str) -> bool:
        """Whether the actor works in what `org_path` runs: its subtree, or a unit on the way up to the root.

        Programmes and assessment cycles of the units above take in the actor's cadres (the
        same rule as the tables' `runtime.db.in_scope_or_above`); what such a thing holds is
        read for the actor's own subtree only (`narrower`).
        """
        return self.covers(org_path) or in_subtree(self.org_path, org_path)

    def narrower(self, org_path: str) -> str:
        """The root of the part of `org_path`'s subtree this actor sees (for an `org_path` it `reaches`)."""
        return org_path if self.covers(org_path) else self.org_path


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
        """Parse an envelope from its JSON form (raises pydantic's `ValidationError`, a `ValueError`).

        Every envelope is read here (consumers, replays, stream loads), so the common case takes
        a fast path: msgspec checks the same types and patterns in C and the model is built from
        its result without a second validation. Anything the fast path does not accept whole
        goes through pydantic's validation, which then accepts it or says what is wrong.
        """
        try:
            wire = _WIRE.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return cls.model_validate_json(data)
        fields = msgspec.structs.asdict(wire)
        for name in ("occurred_at", "recorded_at"):
            at = fields[name]
            if at.tzinfo is not UTC:
                if at.tzinfo is None:
                    return cls.model_validate_json(data)  # pydantic names the error
                fields[name] = at.astimezone(UTC)
        fields["actor"] = _actor(wire.actor)
        return _trusted(cls, fields, _ENVELOPE_FIELDS)

    @classmethod
    def trusted(cls, **fields: Any) -> Envelope:
        """An envelope from values already of their fields' types (all of them), without validating them again.

        For the hot paths that built or checked every value themselves (the store's append,
        `from_bytes`); `model_construct` does the same at about ten times the cost.
        """
        return _trusted(cls, fields, _ENVELOPE_FIELDS)

    def computed_hash(self) -> str:
        """The hash this envelope should carry, given its contents and `prev_hash`."""
        fields = self.model_dump(mode="json")
        fields.pop("hash")
        return chain_hash(fields)


_M = TypeVar("_M", bound=BaseModel)
_new_object = object.__new__
_set_attribute = object.__setattr__


def _trusted(model: type[_M], fields: dict[str, Any], fields_set: set[str]) -> _M:
    # What pydantic's model_construct leaves behind for a model given every field and without
    # private attributes, without its loops over the fields. `fields_set` (all of the model's
    # fields) is shared: a frozen model never changes it, and model_copy copies it first.
    instance = _new_object(model)
    _set_attribute(instance, "__dict__", fields)
    _set_attribute(instance, "__pydantic_fields_set__", fields_set)
    _set_attribute(instance, "__pydantic_extra__", None)
    _set_attribute(instance, "__pydantic_private__", None)
    return instance


_ORG_PATH_EXACT = ORG_PATH_PATTERN.removesuffix("$") + r"\Z"
"""The org path pattern for Python's `re` (msgspec's), where `$` would also match before a final newline."""
_WireOrgPath = Annotated[str, msgspec.Meta(pattern=_ORG_PATH_EXACT)]


class _WireActor(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    user: str
    org_path: _WireOrgPath
    role: Role


class _WireEnvelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The envelope's JSON form as msgspec reads it: the same fields, types and patterns as `Envelope`.

    Not tracked by the garbage collector (`gc=False`): it lives only while its fields are copied
    out and holds no cycles, and the collector's passes over young objects are a good part of a
    consumer's time.
    """

    event_id: UUID
    event_type: str
    schema_version: int
    source: str
    deployment: str
    stream_id: str
    stream_version: int
    position: int
    cadre_id: UUID | None
    org_path: _WireOrgPath
    occurred_at: datetime
    recorded_at: datetime
    actor: _WireActor
    correlation_id: UUID
    causation_id: UUID | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


_WIRE: Final = msgspec.json.Decoder(_WireEnvelope)
_ENVELOPE_FIELDS: Final = set(Envelope.model_fields)
_ACTOR_FIELDS: Final = set(Actor.model_fields)
_ACTORS: dict[tuple[str, str, Role], Actor] = {}
"""Actors read lately: a batch of events mostly names a few (actors are immutable, so shared)."""


def _actor(wire: _WireActor) -> Actor:
    key = (wire.user, wire.org_path, wire.role)
    actor = _ACTORS.get(key)
    if actor is None:
        if len(_ACTORS) >= 4096:  # noqa: PLR2004 - a bound, not a tuning knob
            _ACTORS.clear()
        actor = _ACTORS[key] = _trusted(
            Actor, {"user": wire.user, "org_path": wire.org_path, "role": wire.role}, _ACTOR_FIELDS
        )
    return actor


_UUID_FROM_INT = UUID.__new__
_COUNTER_MAX: Final = 0xFFF
_last_v7 = (0, 0)
"""The last (millisecond, counter) handed out by this process."""


def uuid7() -> UUID:
    """A new time-ordered UUID (version 7): event ids sort by creation time, also within one process."""
    return uuid7s(1)[0]


def uuid7s(count: int) -> list[UUID]:
    """`count` new version 7 UUIDs (RFC 9562), each greater than every one this process made before.

    48 bits of Unix time in milliseconds, a 12-bit counter (method 1 of the RFC: it starts at a
    random value below 2048 in each new millisecond and counts up within it, spilling into the
    next millisecond after 4096 ids), and 62 random bits. One read of the clock and of the random
    source for all `count`.
    """
    global _last_v7  # noqa: PLW0603 - one process-wide sequence, like the clock it reads
    millis, counter = _last_v7
    now = time.time_ns() // 1_000_000
    entropy = os.urandom(8 * count + 2)
    if now > millis:
        millis, counter = now, int.from_bytes(entropy[-2:]) & 0x7FF
    else:
        counter += 1
    ids = []
    for n in range(count):
        if counter > _COUNTER_MAX:
            millis, counter = millis + 1, 0
        value = (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7000 << 64 | counter << 64 | 0b10 << 62
        value |= int.from_bytes(entropy[8 * n : 8 * n + 8]) & 0x3FFF_FFFF_FFFF_FFFF
        uuid = _UUID_FROM_INT(UUID)
        _set_attribute(uuid, "int", value)
        _set_attribute(uuid, "is_safe", SafeUUID.unknown)
        ids.append(uuid)
        counter += 1
    _last_v7 = (millis, counter - 1)
    return ids


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: one byte string per value."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def seal(fields_without_hash: dict[str, Any]) -> tuple[str, bytes]:
    """The hash of an envelope's fields and the canonical JSON of the envelope with it, serialized once.

    The same as `chain_hash(fields)` and `canonical_json(fields | {"hash": ...})`: the hash's
    key sorts between `event_type` and `occurred_at`, and the text before `occurred_at` holds
    no unescaped quote that could be mistaken for its key (ids, names and the actor's fixed
    keys come first), so the hash is written in at that place.
    """
    unhashed = canonical_json(fields_without_hash)
    digest = hashlib.sha256(unhashed).hexdigest()
    at = unhashed.index(b',"occurred_at":')
    return digest, b"".join((unhashed[:at], b',"hash":"', digest.encode(), b'"', unhashed[at:]))


def chain_hash(fields_without_hash: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an envelope's fields (`prev_hash` included)."""
    return hashlib.sha256(canonical_json(fields_without_hash)).hexdigest()
