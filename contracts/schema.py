"""Generate the JSON Schema files in `contracts/schemas/` from the models.

    python -m contracts.schema           # write them
    python -m contracts.schema --check   # exit 1 when a checked-in file differs

The checked-in files are what other languages and other deployments read; a test
fails when they drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contracts.catalog import CURRENT, HISTORIC
from contracts.envelope import Envelope

SCHEMA_DIR = Path(__file__).parent / "schemas"


def generated() -> dict[str, str]:
    """File name → content of every schema file."""
    files: dict[str, Any] = {"Envelope.json": Envelope.model_json_schema()}
    for model in (*CURRENT, *HISTORIC):
        schema = model.model_json_schema()
        schema["title"] = model.event_type
        schema["x-event-type"] = model.event_type
        schema["x-schema-version"] = model.schema_version
        schema["x-topic"] = model.topic
        files[f"{model.event_type}.v{model.schema_version}.json"] = schema
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def drift() -> list[str]:
    """Names of schema files that are missing, stale or no longer generated."""
    expected = generated()
    present = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    stale = [name for name, body in expected.items() if present.get(name) != body]
    extra = [name for name in present if name not in expected]
    return sorted(stale + extra)


def write() -> None:
    """Rewrite the schema directory from the models."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    expected = generated()
    for path in SCHEMA_DIR.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, body in expected.items():
        (SCHEMA_DIR / name).write_text(body)


def main(argv: list[str]) -> int:
    """Entry point: write, or check with `--check`."""
    if "--check" in argv:
        names = drift()
        for name in names:
            sys.stderr.write(f"schema drift: contracts/schemas/{name}\n")
        return 1 if names else 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
