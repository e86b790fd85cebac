"""The signed bundle format and its offline verifier (runtime/bundle.py), without any server."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime import bundle

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def chain(count: int, *, deployment: str = "county", source: str = "registry", first: int = 1) -> list[dict[str, Any]]:
    """Events of one chain, hash-linked from the genesis hash (or from a made-up hash before `first`)."""
    events = []
    before = bundle.GENESIS_HASH if first == 1 else "f" * 64
    for position in range(first, first + count):
        fields: dict[str, Any] = {
            "deployment": deployment,
            "source": source,
            "position": position,
            "prev_hash": before,
            "event_id": f"e{position}",
            "org_path": "cn.qs.bh",
            "recorded_at": "2020-01-01T00:00:00+00:00",
            "payload": {"name": "Li Wei", "n": position},
        }
        fields["hash"] = bundle.sha256(bundle.canonical(fields))
        before = fields["hash"]
        events.append(fields)
    return events


def lines(events: list[dict[str, Any]]) -> bytes:
    return b"".join(bundle.canonical(e) + b"\n" for e in events)


def sync_bundle(events: list[dict[str, Any]], *, key: Ed25519PrivateKey = KEY, **entry: Any) -> bytes:
    first = events[0]
    described = {
        "deployment": first["deployment"],
        "source": first["source"],
        "first": first["position"],
        "last": events[-1]["position"],
        "count": len(events),
        "prev_hash": first["prev_hash"],
        "last_hash": events[-1]["hash"],
        "file": "chains/county.registry.jsonl",
        **entry,
    }
    manifest = {"format": bundle.SYNC_FORMAT, "exporter": "county", "receiver": "city", "chains": [described]}
    return bundle.pack(manifest, {described["file"]: lines(events)}, key)


def found(data: bytes, key: Ed25519PrivateKey = KEY) -> list[str]:
    return bundle.problems(bundle.unpack(data), key.public_key())


def test_a_sync_bundle_verifies_and_the_verifier_names_the_signer() -> None:
    data = sync_bundle(chain(5))
    assert found(data) == []
    assert bundle.unpack(data).manifest["key_id"] == bundle.key_id(KEY.public_key())
    signer, expected = bundle.key_id(KEY.public_key()), bundle.key_id(OTHER.public_key())
    assert found(data, OTHER) == [f"the manifest is signed with key {signer!r}, not with the expected key {expected}"]


def test_an_exporter_that_signs_a_broken_chain_is_still_caught() -> None:
    """Digests prove the bytes are what was signed; the chain checks prove the signer sent a chain."""
    events = chain(5)
    swapped = [events[1], events[0], *events[2:]]
    assert "chain county/registry, line 1: position 2, expected 1" in found(
        sync_bundle(swapped, first=1, last=5, prev_hash=bundle.GENESIS_HASH, last_hash=events[-1]["hash"])
    )
    gap = [*events[:2], *events[3:]]
    assert found(sync_bundle(gap, first=1, last=5, count=5)) == [
        "chain county/registry: positions 1..5 and count 5 do not match 4 events"
    ]
    assert found(sync_bundle(events, last_hash="0" * 64)) == [
        "chain county/registry: the last event's hash is not the manifest's last_hash"
    ]
    assert found(sync_bundle(events, prev_hash="1" * 64)) == [
        "chain county/registry, line 1: position 1 does not follow the event before it"
    ]
    edited = [dict(e) for e in events]
    edited[2]["payload"] = {"name": "Li Wai", "n": 3}
    assert found(sync_bundle(edited)) == ["chain county/registry, line 3: event e3 does not match its hash"]
    assert found(sync_bundle(events, deployment="village")) == [
        f"chain village/registry, line {n}: an event of county/registry" for n in range(1, 6)
    ]


def rezip(data: bytes, files: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        kept = {name: archive.read(name) for name in archive.namelist()}
    kept.update(files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in kept.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_changed_file_or_manifest_fails_and_the_edited_line_is_named() -> None:
    events = chain(4)
    data = sync_bundle(events)
    name = "chains/county.registry.jsonl"
    edited = lines(events).replace(b"Li Wei", b"Li Wai", 1)
    assert found(rezip(data, {name: edited})) == [
        f"{name} is not the file the manifest signed (SHA-256 differs)",
        "chain county/registry, line 1: event e1 does not match its hash",
    ]
    assert found(rezip(data, {"extra.jsonl": b"{}\n"})) == ["extra.jsonl is in the zip but not in the manifest"]
    manifest = bundle.unpack(data).manifest
    manifest["receiver"] = "province"
    assert found(rezip(data, {bundle.MANIFEST: bundle.canonical(manifest)})) == [
        "the manifest's signature does not verify: the manifest was changed after it was signed"
    ]


def test_what_is_not_a_bundle_is_told_apart() -> None:
    with pytest.raises(bundle.BundleError, match="not a bundle"):
        bundle.unpack(b"plain bytes")
    no_manifest = io.BytesIO()
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr("a.jsonl", b"")
    with pytest.raises(bundle.BundleError, match=r"holds no manifest\.json"):
        bundle.unpack(no_manifest.getvalue())
    data = sync_bundle(chain(3))
    with pytest.raises(bundle.BundleError, match="more than the 100 accepted"):
        bundle.unpack(data, max_bytes=100)


def test_an_audit_export_keeps_to_its_subtree_and_period() -> None:
    events = chain(2)
    manifest = {
        "format": bundle.AUDIT_FORMAT,
        "subtree": "cn.qs.hx",
        "from": "2020-01-01T00:00:00+00:00",
        "to": "2020-01-02T00:00:00+00:00",
        "events": 2,
    }
    data = bundle.pack(manifest, {"events.jsonl": lines(events)}, KEY)
    assert found(data) == [
        "line 1: outside the exported subtree cn.qs.hx",
        "line 2: outside the exported subtree cn.qs.hx",
    ]


def test_the_command_line_verdict(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(sync_bundle(chain(2)))
    public = base64.b64encode(bundle.public_bytes(KEY.public_key())).decode()
    assert bundle.main([str(path), "--public-key", public]) == 0
    assert "verified" in capsys.readouterr().out
    other = base64.b64encode(bundle.public_bytes(OTHER.public_key())).decode()
    assert bundle.main([str(path), "--public-key", other]) == 1
    assert "FAILED: the manifest is signed with key" in capsys.readouterr().out
