"""Safe by default: outside ENVIRONMENT=development no process starts with a missing or published secret."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runtime.settings import (
    DEV_AUTH_SECRET,
    DEV_CHECKPOINT_SEED,
    DEV_MASTER_KEY,
    DEV_SESSION_KEY,
    DEV_WEBHOOK_SECRET,
    SafeSettings,
    development_checkpoint_key,
)
from services.audit.app import AuditSettings
from services.console.settings import ConsoleSettings
from services.notify.app import NotifySettings
from services.registry.app import RegistrySettings

REPO = Path(__file__).resolve().parents[2]


def own() -> dict[str, Any]:
    """Secrets of an operator's own making, for every service."""
    return {
        "environment": "production",
        "auth_secret": secrets.token_hex(32),
        "checkpoint_signing_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "webhook_secret": secrets.token_hex(32),
        "personal_data_master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "database_url": "postgresql://cadre_service:5d8f0c2b9a@db:5432/cadre_registry",
    }


def refusal(settings_class: type[SafeSettings], **values: str) -> str:
    with pytest.raises(ValidationError) as refused:
        settings_class.model_validate({**own(), **values})
    return str(refused.value)


def test_production_settings_of_ones_own_are_accepted() -> None:
    assert not RegistrySettings.model_validate(own()).development
    NotifySettings.model_validate(own())
    ConsoleSettings(environment="production", session_key=secrets.token_hex(32))


@pytest.mark.parametrize(
    ("settings_class", "variable", "value"),
    [
        (AuditSettings, "auth_secret", DEV_AUTH_SECRET),
        (AuditSettings, "auth_secret", ""),
        (AuditSettings, "checkpoint_signing_key", DEV_CHECKPOINT_SEED),
        (AuditSettings, "checkpoint_signing_key", development_checkpoint_key("compose")),
        (NotifySettings, "webhook_secret", DEV_WEBHOOK_SECRET),
        (RegistrySettings, "personal_data_master_key", DEV_MASTER_KEY),
        (RegistrySettings, "database_url", "postgresql://cadre:postgres@db:5432/cadre_registry"),
        (RegistrySettings, "database_owner_url", "postgresql://postgres:cadre@db:5432/cadre_registry"),
    ],
)
def test_a_development_or_missing_secret_is_refused_by_name(
    settings_class: type[SafeSettings], variable: str, value: str
) -> None:
    overrides = {variable: value}
    if variable == "checkpoint_signing_key" and value != DEV_CHECKPOINT_SEED:
        overrides["deployment_id"] = "compose"
    assert variable.upper() in refusal(settings_class, **overrides)


def test_the_console_refuses_the_development_session_key() -> None:
    with pytest.raises(ValidationError, match="SESSION_KEY"):
        ConsoleSettings(environment="production", session_key=DEV_SESSION_KEY)
    with pytest.raises(ValidationError, match="SESSION_KEY"):
        ConsoleSettings(environment="production")  # the default is the development one


def test_development_allows_the_published_values() -> None:
    settings = RegistrySettings(environment="development")
    assert settings.development
    assert settings.auth_secret.get_secret_value() == DEV_AUTH_SECRET


def test_a_service_process_without_the_switch_exits_naming_the_variable() -> None:
    """As an operator would start it: no ENVIRONMENT, AUTH_SECRET left at the development value."""
    env = {k: v for k, v in os.environ.items() if k not in {"ENVIRONMENT", "AUTH_SECRET", "CHECKPOINT_SIGNING_KEY"}}
    env["PYTHONPATH"] = str(REPO)
    env["AUTH_SECRET"] = DEV_AUTH_SECRET
    done = subprocess.run(
        [sys.executable, "-m", "services.registry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 2, done.stderr  # runtime.serve.EXIT_BAD_SETTINGS
    assert "refusing to start" in done.stderr
    assert "AUTH_SECRET is a published development value" in done.stderr
    assert "CHECKPOINT_SIGNING_KEY" in done.stderr  # left unset: its default is the development key
    assert "PERSONAL_DATA_MASTER_KEY" in done.stderr
