"""docs/configuration.md, generated from the settings classes: every variable, its default, its meaning.

`python -m deploy.configuration` rewrites the file; `--check` fails when it is stale (the tests run it).
"""

from __future__ import annotations

import json
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from deploy.local.stack import SERVICES
from runtime.settings import ServiceSettings, settings_class

TARGET: Final = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

_HEADER: Final = """# Configuration

Every service reads its configuration from the environment only (pydantic-settings; names are
case-insensitive). This file is generated from the settings classes by
`python -m deploy.configuration`; a test fails when it is stale.

Secrets (`AUTH_SECRET`, `SESSION_KEY`, `WEBHOOK_SECRET`, `SMTP_PASSWORD`, the password inside `DATABASE_URL`)
have development defaults so that `./dev up` works out of the box; **set them in production**
(the Kubernetes manifests read them from the Secret `cadre-<service>`).
"""


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "*(development value)*"
    if value is None:
        return "*(none)*"
    if isinstance(value, dict):
        return "`" + json.dumps({str(k): v for k, v in value.items()}) + "`"
    if hasattr(value, "value"):  # enums
        value = value.value
    text = str(value)
    return f"`{text}`" if text else "*(empty)*"


def _table(fields: dict[str, FieldInfo]) -> list[str]:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name.upper()}` | {_default(field)} | {field.description or ''} |" for name, field in fields.items()]
    return rows


def settings_classes() -> dict[str, type[ServiceSettings]]:
    """Each service's settings class."""
    return {service: settings_class(import_module(f"services.{service}.app")) for service in SERVICES}


def render() -> str:
    """The whole document."""
    common = ServiceSettings.model_fields
    lines = [_HEADER, "## Every service", "", *_table(dict(common)), ""]
    for service, cls in settings_classes().items():
        own = {name: field for name, field in cls.model_fields.items() if name not in common}
        lines += [f"## {service}", ""]
        lines += [f"`SERVICE_NAME` defaults to `{service}`.", ""]
        lines += [*_table(own), ""] if own else ["No settings of its own.", ""]
    from services.console.settings import ConsoleSettings  # noqa: PLC0415 - the console is no event-sourced service

    lines += ["## console", "", "The platform's one address: it reads only these (no database, no Kafka).", ""]
    lines += [*_table(dict(ConsoleSettings.model_fields)), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """Write the file, or with `--check` report whether it is current."""
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python -m deploy.configuration")  # noqa: T201
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
