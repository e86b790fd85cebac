"""Signed bundles: the one format of every bundle the platform signs, and its offline verifier.

A bundle is a zip of JSON Lines files and a `manifest.json` that names every file with its
SHA-256 and line count and is signed (Ed25519) by the deployment that made it: the signature
covers the canonical JSON of the manifest without its `signature` field; `key_id` names the
key (16 hex digits of SHA-256 over its raw bytes). Two kinds:

- **audit exports** (`cadre-pool-audit-export/2`, services/audit): a subtree's events over a
  period, for an outside auditor; every event must lie in that subtree and period;
- **sync bundles** (`cadre-pool-sync-bundle/1`, services/sync/bundles.py): a deployment's
  events for a deployment linked to it where no network link exists, one file per chain
  `(deployment, source)` in position order; every chain must run without a break from the
  hash before its first event to its last hash, with the positions and count the manifest
  names.

Standalone on purpose: it imports nothing of the platform, so an outside auditor copies this
one file and needs only Python 3.11 and the `cryptography` package:

    python bundle.py export.zip --public-key <the deployment's public key, given out of band>

It checks the signature, every file's digest and line count, every event's own hash
(SHA-256 over its canonical JSON), and what the kind promises. Any edited, added, removed or
reordered byte fails one of these. Exit status 0: verified.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MANIFEST: Final = "manifest.json"
AUDIT_FORMAT: Final = "cadre-pool-audit-export/2"
SYNC_FORMAT: Final = "cadre-pool-sync-bundle/1"
GENESIS_HASH: Final = "0" * 64
"""The hash before the first event of every chain."""
MAX_PROBLEMS: Final = 20
"""Problems reported per check (the first ones): a bundle with a million bad lines says so in twenty."""


def _stdlib_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _codec() -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """The platform's own encoder (orjson, fast) where installed; else the standard library's json.

    Both write the same bytes for the values the platform records (keys sorted, no whitespace, UTF-8).
    """
    try:
        import orjson  # noqa: PLC0415 - optional: an auditor's machine may not have it
    except ImportError:  # pragma: no cover - the platform has orjson
        return json.loads, _stdlib_canonical

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)

    return orjson.loads, dumps


_loads, _dumps = _codec()


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the platform hashes and signs."""
    return _dumps(value)


def sha256(data: bytes) -> str:
    """SHA-256 of `data`, hex."""
    return hashlib.sha256(data).hexdigest()


def public_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of a public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: 16 hex digits of SHA-256 over its raw bytes."""
    return sha256(public_bytes(key))[:16]


def load_public_key(b64: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 raw bytes."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))


class BundleError(Exception):
    """The bytes are not a bundle this verifier can read (not a zip, damaged, too large, no manifest)."""


@dataclass(frozen=True)
class Bundle:
    """A bundle read whole: its manifest and the bytes of every other file."""

    manifest: dict[str, Any]
    files: dict[str, bytes]

    def lines(self, name: str) -> list[bytes]:
        """The lines of one JSON Lines file (without their newlines)."""
        data = self.files.get(name, b"")
        if not data:
            return []
        lines = data.split(b"\n")
        return lines[:-1] if data.endswith(b"\n") else lines


def pack(manifest: Mapping[str, Any], files: Mapping[str, bytes], key: Ed25519PrivateKey) -> bytes:
    """The zip of `files` with `manifest` completed (every file's digest and lines, the key id) and signed."""
    described = {
        **manifest,
        "files": {name: {"sha256": sha256(data), "lines": data.count(b"\n")} for name, data in files.items()},
        "key_id": key_id(key.public_key()),
    }
    described.pop("signature", None)
    signed = {**described, "signature": key.sign(canonical(described)).hex()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(MANIFEST, canonical(signed))
    return buffer.getvalue()


def unpack(data: bytes, *, max_bytes: int | None = None) -> Bundle:
    """Read a bundle whole (raises `BundleError`); `max_bytes` bounds what its files may hold unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        msg = f"not a bundle (zip): {error}"
        raise BundleError(msg) from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            msg = "the zip names a file twice"
            raise BundleError(msg)
        if MANIFEST not in names:
            msg = f"the zip holds no {MANIFEST}"
            raise BundleError(msg)
        total = sum(info.file_size for info in infos)
        if max_bytes is not None and total > max_bytes:
            msg = f"the bundle holds {total:,} bytes unpacked, more than the {max_bytes:,} accepted"
            raise BundleError(msg)
        try:
            files = {info.filename: archive.read(info) for info in infos}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            msg = f"the zip is damaged: {error}"
            raise BundleError(msg) from None
    try:
        manifest = json.loads(files.pop(MANIFEST))
    except ValueError as error:
        msg = f"{MANIFEST} is not JSON: {error}"
        raise BundleError(msg) from None
    if not isinstance(manifest, dict):
        msg = f"{MANIFEST} is not a JSON object"
        raise BundleError(msg)
    return Bundle(manifest, files)


def signature_problem(manifest: Mapping[str, Any], key: Ed25519PublicKey) -> str | None:
    """Why the manifest is not signed by `key` (None: it is)."""
    expected = key_id(key)
    if manifest.get("key_id") != expected:
        return f"the manifest is signed with key {manifest.get('key_id')!r}, not with the expected key {expected}"
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    try:
        key.verify(bytes.fromhex(str(manifest.get("signature"))), canonical(unsigned))
    except (InvalidSignature, ValueError):
        return "the manifest's signature does not verify: the manifest was changed after it was signed"
    return None


Reader = Callable[[bytes], "Place | str"]
"""Reads one line of a sync bundle: the event's place in its chain if its hash covers it, else why not."""


def problems(bundle: Bundle, key: Ed25519PublicKey, *, read: Reader | None = None) -> list[str]:
    """Everything wrong with `bundle` as signed by `key` (empty: it verifies).

    `read` reads a sync bundle's lines (default `read_link`): the platform passes its own
    parser, so that each event is parsed once on the way in.
    """
    problem = signature_problem(bundle.manifest, key)
    if problem is not None:
        return [problem]
    found = file_problems(bundle)  # and then which events: the line an edit touched
    kind = bundle.manifest.get("format")
    if kind == AUDIT_FORMAT:
        return found + audit_problems(bundle)
    if kind == SYNC_FORMAT:
        return found + sync_problems(bundle, read=read or read_link)
    return [*found, f"unknown format {kind!r}"]


def file_problems(bundle: Bundle) -> list[str]:
    """Files the manifest does not describe exactly: a digest or line count that differs, a file added or missing."""
    described = bundle.manifest.get("files")
    if not isinstance(described, dict):
        return ["the manifest names no files"]
    found = [f"{name} is in the zip but not in the manifest" for name in sorted(set(bundle.files) - set(described))]
    for name, entry in sorted(described.items()):
        data = bundle.files.get(name)
        if data is None:
            found.append(f"{name} is named by the manifest but missing from the zip")
        elif not isinstance(entry, dict) or sha256(data) != entry.get("sha256"):
            found.append(f"{name} is not the file the manifest signed (SHA-256 differs)")
        elif data.count(b"\n") != entry.get("lines") or (data and not data.endswith(b"\n")):
            found.append(f"{name} has {len(bundle.lines(name))} lines, the manifest says {entry.get('lines')}")
    return found


class Place(Protocol):
    """What the chain checks read of one event (a `Link`, or the platform's own parsed arrival)."""

    @property
    def deployment(self) -> str:
        """The deployment whose chain it is."""

    @property
    def source(self) -> str:
        """The service whose chain it is."""

    @property
    def position(self) -> int:
        """Its place in the chain."""

    @property
    def prev_hash(self) -> str:
        """The hash of the event before it."""

    @property
    def hash(self) -> str:
        """Its own hash (checked against its content)."""


@dataclass(frozen=True, slots=True)
class Link:
    """An event's place in its chain, as this verifier reads it."""

    deployment: str
    source: str
    position: int
    prev_hash: str
    hash: str


def read_event(line: bytes) -> dict[str, Any] | str:
    """The fields of the event on one line (`hash` included) if its hash covers its content; else why not."""
    try:
        fields: dict[str, Any] = _loads(line)
        claimed = fields.pop("hash")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not an event"
    if not isinstance(claimed, str) or sha256(canonical(fields)) != claimed:
        return f"event {fields.get('event_id')} does not match its hash"
    fields["hash"] = claimed
    return fields


def read_link(line: bytes) -> Link | str:
    """The place in its chain of the event on one line, if its hash covers its content; else why not."""
    fields = read_event(line)
    if isinstance(fields, str):
        return fields
    try:
        return Link(
            str(fields["deployment"]),
            str(fields["source"]),
            int(fields["position"]),
            str(fields["prev_hash"]),
            fields["hash"],
        )
    except (KeyError, TypeError, ValueError):
        return "not an event"


def sync_problems(bundle: Bundle, *, read: Reader) -> list[str]:
    """A sync bundle's chains: each file continuous from its `prev_hash` to its `last_hash`, as counted."""
    chains = bundle.manifest.get("chains")
    if not isinstance(chains, list):
        return ["the manifest names no chains"]
    found: list[str] = []
    named: set[str] = set()
    for entry in chains:
        problem = _entry_problem(entry, named)
        if problem is not None:
            found.append(problem)
            continue
        found += chain_problems(entry, bundle.lines(entry["file"]), read=read)
    described = bundle.manifest.get("files")
    unnamed = sorted(set(described) - named) if isinstance(described, dict) else []
    found += [f"{name} belongs to no chain" for name in unnamed]
    return found


_ENTRY_FIELDS: Final = {
    "deployment": str,
    "source": str,
    "first": int,
    "last": int,
    "count": int,
    "prev_hash": str,
    "last_hash": str,
    "file": str,
}


def _entry_problem(entry: Any, named: set[str]) -> str | None:
    if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in _ENTRY_FIELDS.items()):
        return f"a chain entry is incomplete: {entry!r}"[:300]
    if entry["file"] in named:
        return f"two chains name the file {entry['file']}"
    named.add(entry["file"])
    return None


def chain_problems(entry: Mapping[str, Any], lines: list[bytes], *, read: Reader) -> list[str]:
    """One chain of a sync bundle: its events, in order, link `prev_hash` to `last_hash` over `first`..`last`."""
    name = f"{entry['deployment']}/{entry['source']}"
    found: list[str] = []
    first, last, count = entry["first"], entry["last"], entry["count"]
    if not 1 <= first <= last or count != last - first + 1 or len(lines) != count:
        found.append(f"chain {name}: positions {first}..{last} and count {count} do not match {len(lines)} events")
        return found
    before: str | None = entry["prev_hash"]
    for number, line in enumerate(lines, start=1):
        event = read(line)
        where = f"chain {name}, line {number}"
        if isinstance(event, str):
            found.append(f"{where}: {event}")
        elif (event.deployment, event.source) != (entry["deployment"], entry["source"]):
            found.append(f"{where}: an event of {event.deployment}/{event.source}")
        elif event.position != first + number - 1:
            found.append(f"{where}: position {event.position}, expected {first + number - 1}")
        elif before is not None and event.prev_hash != before:
            found.append(f"{where}: position {event.position} does not follow the event before it")
        if len(found) >= MAX_PROBLEMS:
            return found
        before = None if isinstance(event, str) else event.hash  # after an unreadable line: the next one's link
    if not found and before != entry["last_hash"]:
        found.append(f"chain {name}: the last event's hash is not the manifest's last_hash")
    return found


def audit_problems(bundle: Bundle) -> list[str]:
    """An audit export: every event matches its hash and lies in the exported subtree and period."""
    manifest = bundle.manifest
    lines = bundle.lines("events.jsonl")
    found = []
    if len(lines) != manifest.get("events"):
        found.append(f"events.jsonl has {len(lines)} events, the manifest says {manifest.get('events')}")
    for number, line in enumerate(lines, start=1):
        if len(found) >= MAX_PROBLEMS:
            break
        fields = read_event(line)
        if isinstance(fields, str):
            found.append(f"line {number}: {fields}")
            continue
        if not _in_subtree(str(fields.get("org_path")), str(manifest.get("subtree"))):
            found.append(f"line {number}: outside the exported subtree {manifest.get('subtree')}")
        period = _when(manifest.get("from")), _when(manifest.get("to"))
        if not period[0] <= _when(fields.get("recorded_at")) <= period[1]:
            found.append(f"line {number}: recorded outside the exported period")
    return found


def _in_subtree(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


def _when(text: object) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def verify(path: str, public_key_b64: str) -> list[str]:
    """The problems found in the bundle at `path` (empty: it verifies)."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - standalone: plain files, nothing more
            bundle = unpack(file.read())
    except BundleError as error:
        return [str(error)]
    return problems(bundle, load_public_key(public_key_b64))


def main(argv: list[str] | None = None) -> int:
    """Verify and print the verdict."""
    parser = argparse.ArgumentParser(description="Verify a signed bundle of the reserve cadre platform offline.")
    parser.add_argument("bundle", help="the bundle (.zip)")
    parser.add_argument("--public-key", required=True, help="the signer's Ed25519 public key, base64")
    args = parser.parse_args(argv)
    found = verify(args.bundle, args.public_key)
    for problem in found:
        print(f"FAILED: {problem}")  # noqa: T201
    if not found:
        print(f"verified: {args.bundle}")  # noqa: T201
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
