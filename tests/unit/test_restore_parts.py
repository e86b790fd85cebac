"""The pure parts of a restore from the log (runtime.restore): copies compared, links checked, holes named."""

from __future__ import annotations

import io
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.envelope import GENESIS_HASH, Actor, Envelope, Role, uuid7
from runtime import bundle, checkpoint, restore
from runtime.context import CommandContext
from runtime.eventlog import InMemoryEventLog
from runtime.settings import DEV_CHECKPOINT_SEED

KEY = checkpoint.private_key(DEV_CHECKPOINT_SEED)
FILE = "chains/local.registry.jsonl"
SYSTEM = Actor(user="system:registry", org_path="system", role=Role.SYSTEM)


async def published(count: int) -> list[str]:
    """The bodies of `count` checkpoint events of one chain, as the relay would have published them."""
    log = InMemoryEventLog(source="registry", deployment="local")
    for n in range(count):
        event = checkpoint.sign(KEY, "registry", "local", n + 1, GENESIS_HASH)
        ctx = CommandContext(actor=SYSTEM, correlation_id=uuid7())
        await log.append("chain-checkpoints", n, [event], ctx=ctx, org_path="system")
    return [row["body"].decode() for row in log._rows]  # the rows as stored


def collect(bodies: list[str]) -> tuple[restore._Collected, restore.FromLog]:
    result = restore.FromLog(service="registry")
    collected = restore._Collected("registry", "local", result)  # the pure part under test
    for body in bodies:
        collected.add(body, "the topic")
    result.log_end = max(collected.by_position, default=0)
    return collected, result


def chain(collected: restore._Collected, result: restore.FromLog) -> list[int]:
    rows = restore._chain(collected, result, start=0, prev_hash=GENESIS_HASH)
    return [r.envelope.position for r in rows]


async def test_a_whole_log_chains_from_the_genesis_hash() -> None:
    bodies = await published(5)
    collected, result = collect([*bodies, bodies[2]])  # a record re-sent after a relay crash: the same bytes
    assert chain(collected, result) == [1, 2, 3, 4, 5]
    assert result.broken == []


async def test_a_hole_ends_the_chain_before_it() -> None:
    bodies = await published(5)
    collected, result = collect(bodies[:2] + bodies[3:])
    assert chain(collected, result) == [1, 2]


async def test_a_changed_record_is_a_broken_link_named_by_its_position() -> None:
    bodies = await published(4)
    collected, result = collect([*bodies[:2], bodies[2].replace('"signature":"', '"signature":"00'), bodies[3]])
    assert chain(collected, result) == [1, 2]
    assert result.broken == ["position 3: body does not match its hash"]


async def test_two_different_copies_of_a_position_are_refused() -> None:
    mine, other = await published(2), await published(2)  # two chains: other events at the same positions
    _, result = collect([*mine, other[1]])
    assert len(result.broken) == 1
    assert result.broken[0].startswith("position 2: the topic holds event")


async def test_events_of_another_service_or_deployment_are_skipped() -> None:
    bodies = await published(1)
    result = restore.FromLog(service="registry")
    elsewhere = restore._Collected("registry", "province", result)
    assert elsewhere.add(bodies[0], "the topic") is None
    assert result.foreign == 1


async def test_the_furthest_signed_position_counts_only_trusted_signatures() -> None:
    collected, _ = collect(await published(3))
    assert restore._signed_positions(collected, [KEY.public_key()]) == 3  # signs 1, 2, 3
    stranger = checkpoint.private_key("A" * 43 + "=").public_key()
    assert restore._signed_positions(collected, [stranger]) == 0


def test_a_copy_is_named_as_topic_at_cluster() -> None:
    assert restore.LogCopy.parse("qs.registry.events@kafka-1:9092") == restore.LogCopy(
        "kafka-1:9092", "qs.registry.events"
    )
    with pytest.raises(ValueError, match="TOPIC@HOST:PORT"):
        restore.LogCopy.parse("qs.registry.events")


def test_a_report_with_a_missing_position_is_no_success_and_names_it() -> None:
    result = restore.FromLog(service="registry", missing=[9], log_end=12)
    assert not result.ok
    lines = result.lines()
    assert lines[0].startswith("registry: NOT restored")
    assert "  missing: position 9 is on no copy of the log nor in the archive" in lines


def sync_bundle(bodies: list[str], key: Ed25519PrivateKey = KEY) -> bytes:
    """A sync bundle of one chain (registry of `local`), as the deployment exports it to its parent."""
    data = "".join(f"{body}\n" for body in bodies).encode()
    first, last = Envelope.from_bytes(bodies[0]), Envelope.from_bytes(bodies[-1])
    entry = {
        "deployment": "local",
        "source": "registry",
        "first": first.position,
        "last": last.position,
        "count": len(bodies),
        "prev_hash": first.prev_hash,
        "last_hash": last.hash,
        "file": FILE,
    }
    manifest = {"format": bundle.SYNC_FORMAT, "exporter": "local", "receiver": "up", "chains": [entry]}
    return bundle.pack(manifest, {FILE: data}, key)


def events(data: bytes, service: str = "registry") -> list[str] | str:
    return restore.BundleCopy(name="last.zip", data=data).events(
        [KEY.public_key()], deployment="local", service=service
    )


async def test_a_signed_bundle_gives_its_events_once_it_verifies() -> None:
    bodies = await published(4)
    assert events(sync_bundle(bodies)) == bodies
    assert events(sync_bundle(bodies), service="training") == []


async def test_a_bundle_signed_by_another_key_changed_or_damaged_gives_nothing() -> None:
    bodies = await published(3)
    foreign = events(sync_bundle(bodies, Ed25519PrivateKey.generate()))
    assert isinstance(foreign, str)
    assert "none of the trusted keys" in foreign
    signed = bundle.unpack(sync_bundle(bodies))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:  # one event dropped after the manifest was signed
        archive.writestr(FILE, signed.files[FILE].split(b"\n", 1)[1])
        archive.writestr(bundle.MANIFEST, bundle.canonical(signed.manifest))
    changed = events(out.getvalue())
    assert isinstance(changed, str)
    assert "SHA-256 differs" in changed
    assert "not a bundle" in str(events(sync_bundle(bodies)[:100]))
