"""The services' AsyncAPI documents, checked in under `contracts/asyncapi/` (ADR 0020).

    python -m services.asyncapi           # write contracts/asyncapi/<service>.json
    python -m services.asyncapi --check   # exit 1 when a checked-in file differs from the code

`runtime.asyncapi` builds a document from a spec; this module finds every service's spec.
"""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path

from runtime.asyncapi import document
from runtime.service import ServiceSpec

REPO = Path(__file__).resolve().parents[1]
DOCUMENT_DIR = REPO / "contracts" / "asyncapi"


def specs() -> list[ServiceSpec]:
    """Every service's spec (each `services/<name>/app.py` that defines a `SPEC`)."""
    found = []
    for path in sorted((REPO / "services").glob("*/app.py")):
        spec = getattr(import_module(f"services.{path.parent.name}.app"), "SPEC", None)
        if isinstance(spec, ServiceSpec):
            found.append(spec)
    return found


def generated() -> dict[str, str]:
    """File name → content of every service's document."""
    return {f"{spec.name}.json": json.dumps(document(spec), indent=2, ensure_ascii=False) + "\n" for spec in specs()}


def drift() -> list[str]:
    """Names of documents that are missing, stale or no longer generated."""
    expected = generated()
    present = {path.name: path.read_text() for path in DOCUMENT_DIR.glob("*.json")}
    return sorted(
        [n for n, body in expected.items() if present.get(n) != body] + [n for n in present if n not in expected]
    )


def main(argv: list[str]) -> int:
    """Write the documents, or check them with `--check`."""
    if "--check" in argv:
        names = drift()
        for name in names:
            sys.stderr.write(f"AsyncAPI drift: contracts/asyncapi/{name} (run python -m services.asyncapi)\n")
        return 1 if names else 0
    DOCUMENT_DIR.mkdir(exist_ok=True)
    expected = generated()
    for path in DOCUMENT_DIR.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, body in expected.items():
        (DOCUMENT_DIR / name).write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
