"""Trust on arrival, the pure part: what an arrived envelope is, and whether it follows its chain.

No SQL here: `services.sync.ingest` reads and writes the tables and asks these functions
(what `parse` makes of the bytes, whether a link `follows`, whether a checkpoint is
`signed_checkpoint` by its deployment and can be taken, whom a link `speaks_for`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.audit import ChainCheckpointed, checkpoint_message
from contracts.envelope import GENESIS_HASH, chain_hash

CHECKPOINT: Final = ChainCheckpointed.event_type

Trust = dict[str, tuple[str, str]]
"""Deployment → (its public key, who vouched for it: `settings` or a deployment)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One event as it arrived, with its place in its deployment's chain."""

    deployment: str
    source: str
    position: int
    event_id: str
    event_type: str
    prev_hash: str
    hash: str
    key: str
    body: str
    recorded_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event (or bytes) refused, and why."""

    reason: str
    deployment: str | None = None
    source: str | None = None
    position: int | None = None
    event_id: str | None = None


def parse(data: bytes | str) -> Arrival | Refusal:
    """The arrival an envelope's bytes describe, if its hash covers its body."""
    try:
        fields = orjson.loads(data)
        claimed = fields.pop("hash")
        place = (str(fields["deployment"]), str(fields["source"]), int(fields["position"]))
        event_id = str(fields["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        return Refusal(f"not an envelope: {error}")
    if chain_hash(fields) != claimed:
        return Refusal("body does not match its hash", *place, event_id)
    try:
        recorded_at = datetime.fromisoformat(str(fields["recorded_at"]))
        arrival = Arrival(
            deployment=place[0],
            source=place[1],
            position=place[2],
            event_id=event_id,
            event_type=str(fields["event_type"]),
            prev_hash=str(fields["prev_hash"]),
            hash=str(claimed),
            key=str(fields.get("cadre_id") or fields["stream_id"]),
            body=data.decode() if isinstance(data, bytes) else data,
            recorded_at=recorded_at,
            payload=dict(fields["payload"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        return Refusal(f"incomplete envelope: {error}", *place, event_id)
    return arrival


def public_key(b64: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw bytes."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))


@dataclass(slots=True)
class Chain:
    """One foreign chain `(deployment, source)` as far as it is verified, signed and released here."""

    deployment: str
    source: str
    verified: int = 0
    verified_hash: str = GENESIS_HASH
    signed: int = 0
    released: int = 0
    broken: str | None = None
    hashes: dict[int, str] = field(default_factory=dict)
    """Hashes met on this pass (to check a checkpoint against)."""


def speaks_for(link: str, deployment: str, trusted: Trust) -> bool:
    """Whether events of `deployment` may come over the link from `link`: its own, or of one it vouched for."""
    seen: set[str] = set()
    current: str | None = deployment
    while current is not None and current not in seen:
        if current == link:
            return True
        seen.add(current)
        voucher = trusted.get(current, ("", "settings"))[1]
        current = None if voucher == "settings" else voucher
    return False


def follows(chain: Chain, position: int, prev_hash: str) -> str | None:
    """Why the event at `position` naming `prev_hash` cannot follow the verified chain (None: it can)."""
    if prev_hash != chain.verified_hash:
        return f"position {position} does not follow the one before it (prev_hash differs)"
    return None


def signed_checkpoint(chain: Chain, position: int, body: str, key: Ed25519PublicKey) -> ChainCheckpointed | str:
    """The checkpoint at `position` if `key` (its deployment's) signed it; else why not."""
    try:
        checkpoint = ChainCheckpointed.model_validate(orjson.loads(body)["payload"])
        key.verify(
            bytes.fromhex(checkpoint.signature),
            checkpoint_message(chain.source, chain.deployment, checkpoint.position, checkpoint.hash),
        )
    except (InvalidSignature, ValueError):
        return f"checkpoint at position {position} is not signed by {chain.deployment}'s key"
    return checkpoint


def take_checkpoint(chain: Chain, position: int, checkpoint: ChainCheckpointed, signed_hash: str | None) -> str | None:
    """Move `chain.signed` to what a signed checkpoint covers; why it cannot be taken otherwise.

    `signed_hash` is the hash the chain has at the position the checkpoint signs.
    """
    if checkpoint.position > chain.verified:
        return f"checkpoint at position {position} signs events not received"
    if signed_hash != checkpoint.hash:
        return f"checkpoint at position {position} signs a chain other than the one received: it was rewritten"
    # A checkpoint that signs the event right before it vouches for itself as well (its signature is its
    # content): release it with what it signs, so the level above receives it, and a chain that goes quiet
    # after a checkpoint is released to its end, at every hop.
    covered = position if checkpoint.position == position - 1 else checkpoint.position
    chain.signed = max(chain.signed, covered)
    return None
