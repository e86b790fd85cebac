"""Signed checkpoints of a service's hash chain: what catches a rewrite of the whole chain.

The hash chain shows any changed, removed or reordered row, unless someone with write
access to the database recomputes every hash after the change (and the chain head). To
catch that, each service now and then signs the head of its chain with an Ed25519 key the
database never sees, and appends the signature as a `ChainCheckpointed` event, which the
relay publishes to the service's topic. A rewritten chain no longer has the signed hash at
the signed position; forging a new checkpoint needs the private key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.audit import ChainCheckpointed, checkpoint_message
from contracts.envelope import Actor, Role, uuid7
from runtime import logs
from runtime.bundle import key_id, load_public_key, public_bytes
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConcurrencyError
from runtime.store import EventStore

# The key helpers live with the signed bundles (runtime.bundle, standalone); named here as well.
__all__ = ["Checkpointer", "key_id", "load_public_key", "private_key", "public_key_b64", "sign", "verify"]

log = logs.get(__name__)

STREAM: Final = "chain-checkpoints"
ORG_PATH: Final = "system"
"""Checkpoints belong to no org unit: they are the platform's own record."""


def private_key(seed_b64: str) -> Ed25519PrivateKey:
    """The Ed25519 key from its 32-byte seed in base64."""
    seed = base64.b64decode(seed_b64, validate=True)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_b64(seed_b64: str) -> str:
    """The public key (base64 of the raw bytes) that verifies checkpoints signed with `seed_b64`."""
    return base64.b64encode(public_bytes(private_key(seed_b64).public_key())).decode()


def sign(key: Ed25519PrivateKey, source: str, deployment: str, position: int, head_hash: str) -> ChainCheckpointed:
    """A checkpoint of the chain head at `position`."""
    signature = key.sign(checkpoint_message(source, deployment, position, head_hash))
    return ChainCheckpointed(
        position=position, hash=head_hash, key_id=key_id(key.public_key()), signature=signature.hex()
    )


def verify(public: Ed25519PublicKey, source: str, deployment: str, checkpoint: ChainCheckpointed) -> bool:
    """Whether `checkpoint` was signed by the key of `public` for this service and deployment."""
    if checkpoint.key_id != key_id(public):
        return False
    try:
        public.verify(
            bytes.fromhex(checkpoint.signature),
            checkpoint_message(source, deployment, checkpoint.position, checkpoint.hash),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class Checkpointer:
    """Signs the chain head of one service's store whenever events were added since the last checkpoint."""

    pool: Pool
    store: EventStore
    key: Ed25519PrivateKey

    async def checkpoint(self) -> ChainCheckpointed | None:
        """Sign and append the current head; None when nothing but the last checkpoint came since.

        An event committed between reading the head and appending lands before the checkpoint,
        unsigned: the last checkpoint then signs less than everything before it, and the next
        round signs again (else that event would wait, unsigned, for the next one).
        """
        head = await self.pool.fetchrow("SELECT position, hash FROM chain_head WHERE id = 1")
        last = await self.pool.fetchrow(
            "SELECT position, stream_version, (body::jsonb -> 'payload' ->> 'position')::bigint AS signed"
            " FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1",
            STREAM,
        )
        if head is None or head["position"] == 0:
            return None
        if last is not None and head["position"] <= last["position"] and last["signed"] >= last["position"] - 1:
            return None
        version = last["stream_version"] if last is not None else 0
        event = sign(self.key, self.store.source, self.store.deployment, head["position"], head["hash"])
        ctx = CommandContext(
            actor=Actor(user=f"system:{self.store.source}", org_path=ORG_PATH, role=Role.SYSTEM),
            correlation_id=uuid7(),
        )
        try:
            await self.store.append(STREAM, version, [event], ctx=ctx, org_path=ORG_PATH)
        except ConcurrencyError:  # another replica signed meanwhile: its checkpoint serves as well
            return None
        return event
