"""The console's environment (see docs/configuration.md)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.clock import ClockSettings
from runtime.settings import DEV_SESSION_KEY, SafeSettings
from services.console.apis import SERVICES


class ConsoleSettings(ClockSettings, SafeSettings):
    """The console's environment (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    http_host: str = Field(default="127.0.0.1", description="Address the console listens on")
    http_port: int = Field(default=8080, description="Port of the platform's one address")
    public_url: str = Field(
        default="", description="The address people use, e.g. https://cadres.example.org (empty: as requested)"
    )
    registry_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of the registry service")
    training_url: str = Field(default="http://127.0.0.1:8002", description="Base URL of the training service")
    assessment_url: str = Field(default="http://127.0.0.1:8003", description="Base URL of the assessment service")
    notify_url: str = Field(default="http://127.0.0.1:8004", description="Base URL of the notify service")
    audit_url: str = Field(default="http://127.0.0.1:8005", description="Base URL of the audit service")
    selection_url: str = Field(default="http://127.0.0.1:8007", description="Base URL of the selection service")
    sync_url: str = Field(
        default="",
        description="Base URL of the sync service, at a deployment linked with other levels (empty: no links screen)",
    )
    oidc_issuer: str = Field(default="", description="Issuer URL of the identity provider people sign in with")
    oidc_client_id: str = Field(default="cadre-console", description="The console's client id at the provider")
    oidc_discovery_url: str = Field(
        default="",
        description="Where the console reads the provider's discovery document, when not under the issuer URL"
        " (a container network)",
    )
    session_key: SecretStr = Field(
        default=SecretStr(DEV_SESSION_KEY), description="Key that seals session cookies (AES-GCM)"
    )
    session_hours: float = Field(default=10.0, gt=0, description="Longest a session lasts, whatever the provider says")
    cookie_secure: bool = Field(default=True, description="Mark cookies Secure (browsers accept them on loopback)")
    log_level: str = Field(default="INFO", description="Log level")
    log_json: bool = Field(default=True, description="JSON logs (false: console)")
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, description="How long SIGTERM may take")

    def service_urls(self) -> dict[str, str]:
        """Service name → base URL, for each service configured (the sync service is optional)."""
        return {name: str(getattr(self, f"{name}_url")) for name in SERVICES if getattr(self, f"{name}_url")}
