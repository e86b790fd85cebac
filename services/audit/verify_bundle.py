"""Verify an audit export bundle offline: `python verify_bundle.py bundle.zip --public-key <base64>`.

Standalone on purpose: an outside auditor copies this one file and needs only Python 3.11
and the `cryptography` package; nothing of the platform. It checks that

1. the manifest is signed (Ed25519) by the key the auditor was given out of band;
2. `events.jsonl` is the file the manifest describes (SHA-256 and line count);
3. every event's own hash covers its content (SHA-256 over its canonical JSON), and each
   event lies in the exported subtree and period.

Any edited, added, removed or reordered byte fails one of these. Exit status 0: verified.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zipfile
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "cadre-pool-audit-export/1"


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the platform hashes and signs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def in_subtree(path: str, root: str) -> bool:
    """Whether org path `path` is `root` or below it."""
    return path == root or path.startswith(root + ".")


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def verify(bundle: str, public_key_b64: str) -> list[str]:
    """The problems found in `bundle` (empty: it verifies)."""
    with zipfile.ZipFile(bundle) as archive:
        manifest_bytes = archive.read("manifest.json")
        signature = archive.read("manifest.sig").decode().strip()
        events = archive.read("events.jsonl")
    manifest = json.loads(manifest_bytes)
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
    try:
        key.verify(bytes.fromhex(signature), canonical(manifest))
    except (InvalidSignature, ValueError):
        return ["the manifest's signature does not verify with the given public key"]
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"unknown format {manifest.get('format')!r}")
    if hashlib.sha256(events).hexdigest() != manifest["events_sha256"]:
        problems.append("events.jsonl is not the file the manifest signed (SHA-256 differs)")
    lines = events.decode().splitlines()
    if len(lines) != manifest["events"]:
        problems.append(f"events.jsonl has {len(lines)} events, the manifest says {manifest['events']}")
    for number, line in enumerate(lines, start=1):
        try:
            fields = json.loads(line)
            claimed = fields.pop("hash")
        except (ValueError, KeyError):
            problems.append(f"line {number}: not an event")
            continue
        if hashlib.sha256(canonical(fields)).hexdigest() != claimed:
            problems.append(f"line {number}: event {fields.get('event_id')} does not match its hash")
        if not in_subtree(fields.get("org_path", ""), manifest["subtree"]):
            problems.append(f"line {number}: outside the exported subtree {manifest['subtree']}")
        if not _when(manifest["from"]) <= _when(fields.get("recorded_at", "")) <= _when(manifest["to"]):
            problems.append(f"line {number}: recorded outside the exported period")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Verify and print the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the export (.zip)")
    parser.add_argument("--public-key", required=True, help="the exporter's Ed25519 public key, base64")
    args = parser.parse_args(argv)
    problems = verify(args.bundle, args.public_key)
    for problem in problems:
        print(f"FAILED: {problem}")  # noqa: T201
    if not problems:
        print(f"verified: {args.bundle}")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
