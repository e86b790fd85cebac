"""Trust on arrival's pure part (services.sync.arrival): parsing, following, signed checkpoints, who speaks for whom."""

from __future__ import annotations

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.audit import ChainCheckpointed, checkpoint_message
from contracts.envelope import GENESIS_HASH, canonical_json, chain_hash
from services.sync.arrival import (
    Arrival,
    Chain,
    Refusal,
    follows,
    parse,
    signed_checkpoint,
    speaks_for,
    take_checkpoint,
)


def _envelope(position: int, prev_hash: str) -> bytes:
    fields = {
        "deployment": "county",
        "source": "registry",
        "position": position,
        "event_id": "0190a0a0-0000-7000-8000-000000000001",
        "event_type": "CadreNominated",
        "prev_hash": prev_hash,
        "stream_id": "cadre-1",
        "recorded_at": "2026-01-01T00:00:00+00:00",
        "payload": {"full_name": "Chen Jie"},
    }
    return canonical_json({**fields, "hash": chain_hash(fields)})


def test_an_envelope_whose_hash_covers_it_arrives_and_a_tampered_one_is_refused() -> None:
    arrived = parse(_envelope(1, GENESIS_HASH))
    assert isinstance(arrived, Arrival)
    assert (arrived.deployment, arrived.source, arrived.position, arrived.key) == ("county", "registry", 1, "cadre-1")
    tampered = orjson.loads(_envelope(1, GENESIS_HASH))
    tampered["payload"]["full_name"] = "Li Na"
    refused = parse(orjson.dumps(tampered))
    assert isinstance(refused, Refusal)
    assert refused.reason == "body does not match its hash"
    assert isinstance(parse(b"not json"), Refusal)


def test_a_link_follows_only_the_verified_hash() -> None:
    chain = Chain("county", "registry")
    assert follows(chain, 1, GENESIS_HASH) is None
    assert follows(chain, 1, "f" * 64) == "position 1 does not follow the one before it (prev_hash differs)"


def test_a_checkpoint_counts_only_signed_by_its_deployment_over_the_chain_received() -> None:
    key = Ed25519PrivateKey.generate()
    chain = Chain("county", "registry", verified=3, verified_hash="c" * 64)
    signature = key.sign(checkpoint_message("registry", "county", 3, "c" * 64)).hex()
    checkpoint = ChainCheckpointed(position=3, hash="c" * 64, key_id="0123456789abcdef", signature=signature)
    body = orjson.dumps({"payload": checkpoint.model_dump(mode="json")}).decode()
    taken = signed_checkpoint(chain, 4, body, key.public_key())
    assert taken == checkpoint
    assert signed_checkpoint(chain, 4, body, Ed25519PrivateKey.generate().public_key()) == (
        "checkpoint at position 4 is not signed by county's key"
    )
    assert take_checkpoint(chain, 4, checkpoint, "d" * 64) is not None
    assert chain.signed == 0
    assert take_checkpoint(chain, 4, checkpoint, "c" * 64) is None
    assert chain.signed == 4  # it signs the event right before it: it is released with them


def test_a_link_speaks_for_itself_and_for_whom_it_vouched() -> None:
    trusted = {"county": ("k1", "settings"), "town": ("k2", "county"), "other": ("k3", "settings")}
    assert speaks_for("county", "county", trusted)
    assert speaks_for("county", "town", trusted)
    assert not speaks_for("county", "other", trusted)
