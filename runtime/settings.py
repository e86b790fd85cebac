"""Settings read from the environment, one class per service built on `ServiceSettings`.

Safe by default: outside explicit local development (`ENVIRONMENT=development`, which `./dev up`,
the local stack and the tests set), every process built on these settings refuses to start with a
missing secret or one of the development values this repository publishes (`SafeSettings`).
"""

from __future__ import annotations

import base64
import hashlib
from types import ModuleType
from typing import Final, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import topics
from runtime.clock import ClockSettings
from runtime.topology import Child, Topology

DEV_AUTH_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - documented dev default
DEV_CHECKPOINT_SEED = "0K/ZhtYTvTJBixwAyMODkddwmVAIw9zCUuV4U3204pk="  # sha256("cadre-pool development checkpoint key")
"""Development checkpoint key (public, documented): production sets CHECKPOINT_SIGNING_KEY."""
DEV_WEBHOOK_SECRET = "dev-only-webhook-secret-change-me"  # noqa: S105 - documented dev default
DEV_MASTER_KEY = "ZGV2ZWxvcG1lbnQgb25seTogcGVyc29uYWwgZGF0YSE="  # base64("development only: personal data!")
"""Development master key of the cadres' keys (public, documented): production sets PERSONAL_DATA_MASTER_KEY."""
DEV_SESSION_KEY = "dev-only-console-session-key-change-me-0123456789"

DEVELOPMENT = "development"
"""The one value of `ENVIRONMENT` that allows the development secrets; anything else is production."""

DEVELOPMENT_SECRETS: Final = frozenset(
    {DEV_AUTH_SECRET, DEV_CHECKPOINT_SEED, DEV_WEBHOOK_SECRET, DEV_MASTER_KEY, DEV_SESSION_KEY}
)
"""Every secret value this repository publishes (all of them here, in one place)."""

WELL_KNOWN_DATABASE_PASSWORDS = frozenset({"postgres", "cadre", "password", "test", "changeme", "secret"})
"""Database passwords that images, examples and tutorials use: refused outside development."""


def development_checkpoint_key(deployment: str) -> str:
    """The development signing key of a named deployment (an Ed25519 seed, base64): the local levels' keys.

    Derived from the name, so anyone can compute it: refused outside development like the others.
    """
    digest = hashlib.sha256(f"cadre-pool development key of deployment {deployment}".encode()).digest()
    return base64.b64encode(digest).decode()


class UnsafeSettingsError(ValueError):
    """A production process was given a missing or development secret."""


class SafeSettings(BaseSettings):
    """The switch between local development and everything else, and the check it guards.

    Every secret setting (`SecretStr`) and every database password in a DSN setting is checked
    once the settings are read: outside `ENVIRONMENT=development`, an empty value or a value this
    repository publishes stops the process before it serves anything, naming the variable.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    environment: str = Field(
        default="production",
        description="`development` allows the published development secrets (./dev up, the tests); anything"
        " else is production, where a missing or development secret stops the process at start",
    )

    @property
    def development(self) -> bool:
        """Whether this process runs in explicit local development."""
        return self.environment == DEVELOPMENT

    @model_validator(mode="after")
    def _no_development_secrets(self) -> Self:
        if self.development:
            return self
        problems = [problem for name in type(self).model_fields if (problem := self._unsafe(name))]
        if problems:
            raise UnsafeSettingsError("; ".join(problems))
        return self

    def _unsafe(self, name: str) -> str | None:
        value = getattr(self, name)
        variable = name.upper()
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if not secret:
                return f"{variable} is not set (ENVIRONMENT={self.environment!r}: only development runs without it)"
            if secret in self._published_secrets():
                return f"{variable} is a published development value: set a secret of your own"
        elif isinstance(value, str) and name.endswith("_url") and value.startswith("postgres"):
            password = urlsplit(value).password
            if password is not None and password in WELL_KNOWN_DATABASE_PASSWORDS:
                return f"{variable} uses a well-known database password: set a password of your own"
        return None

    def _published_secrets(self) -> frozenset[str]:
        deployment = getattr(self, "deployment_id", None)
        derived = {development_checkpoint_key(deployment)} if isinstance(deployment, str) else set()
        return DEVELOPMENT_SECRETS | derived


class ServiceSettings(ClockSettings, SafeSettings):
    """What every service reads from its environment (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: str = Field(default="service", description="Name of this service")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL DSN of this service's own database, as the role the service works as: one that"
        " owns nothing (row-level security applies to it; docs/security.md)",
    )
    database_owner_url: str = Field(
        default="",
        description="DSN of the same database as the role that owns its tables: the schema, its row-level security"
        " and the grants are applied with it at start (empty: DATABASE_URL's role applies them itself,"
        " development only)",
    )
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_namespace: str = Field(default="", description="Prefix of every topic name (tests, tenants)")
    topic_partitions: int = Field(default=3, ge=1, description="Partitions of topics this service creates")
    topic_replication_factor: int = Field(default=1, ge=1, description="Replicas of topics this service creates")
    topic_min_insync_replicas: int = Field(
        default=1, ge=1, description="min.insync.replicas of topics this service creates (acks=all waits for them)"
    )
    deployment_id: str = Field(
        default="local",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="This deployment's name (multi-level sync: the alias of its topics at the level above)",
    )
    deployment_root: str = Field(
        default="",
        description="Org path of the unit at this deployment's root (empty: the whole organization)",
    )
    parent_deployment: str = Field(default="", description="The deployment one level up, if any")
    parent_public_key: str = Field(
        default="", description="The parent's Ed25519 public key (base64): verifies what comes from above"
    )
    child_deployments: dict[str, Child] = Field(
        default_factory=dict,
        description='The deployments one level down (JSON): {"<name>": {"root": "<org path>", "public_key": "<b64>"}}',
    )
    auth_secret: SecretStr = Field(default=SecretStr(DEV_AUTH_SECRET), description="HS256 key of service tokens")
    oidc_issuer: str = Field(
        default="",
        description="Issuer URL of the identity provider whose access tokens are accepted (empty: service tokens only)",
    )
    oidc_audience: str = Field(default="cadre-pool", description="Audience the provider's access tokens must name")
    oidc_jwks_url: str = Field(default="", description="The provider's JWKS URL (empty: from its discovery document)")
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on")
    http_port: int = Field(default=8000, description="Port the HTTP API listens on")
    metrics_host: str = Field(default="127.0.0.1", description="Address the Prometheus metrics are served on")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the Prometheus metrics, apart from the API (0: not served)"
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond, before it is read)"
    )
    max_token_lifetime_seconds: int = Field(
        default=24 * 3600, ge=60, description="Longest lifetime (exp - iat) of a bearer token that is accepted"
    )
    rate_limit_writes_per_second: float = Field(
        default=50.0, gt=0, description="Commands one actor may send per second, sustained (429 beyond)"
    )
    rate_limit_writes_burst: int = Field(default=500, ge=1, description="Commands one actor may send at once")
    rate_limit_expensive_per_minute: float = Field(
        default=60.0, gt=0, description="Expensive reads (audit questions, file exports) one actor may make per minute"
    )
    rate_limit_expensive_burst: int = Field(default=20, ge=1, description="Expensive reads one actor may make at once")
    backdating_window_days: int = Field(
        default=30,
        ge=0,
        description="How far back X-Occurred-At may lie for any organizer; beyond it a command needs the"
        " `late_entry` permission and an X-Late-Entry-Reason, both recorded",
    )
    log_level: str = Field(default="INFO", description="Log level")
    log_json: bool = Field(default=True, description="JSON logs (false: console)")
    db_pool_size: int = Field(default=10, ge=2, description="Max connections in the DB pool")
    relay_batch_size: int = Field(default=2000, ge=1, description="Events per relay round")
    consumer_batch_size: int = Field(default=1000, ge=1, description="Messages per consumer batch")
    append_batch_size: int = Field(default=500, ge=1, description="Commands per group commit")
    checkpoint_signing_key: SecretStr = Field(
        default=SecretStr(DEV_CHECKPOINT_SEED),
        description="Ed25519 seed (32 bytes, base64) that signs chain checkpoints; keep it out of the database's reach",
    )
    checkpoint_interval_seconds: float = Field(
        default=300.0, gt=0, description="How often the chain head is signed (when events came since)"
    )
    sync_checkpoint_interval_seconds: float = Field(
        default=0.2,
        gt=0,
        description="How often the chain head is signed when a parent deployment receives this one's events"
        " (the parent releases only what a checkpoint signs), and the sync service's when child deployments"
        " receive its directives",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="How long SIGTERM may take: requests in flight, then background work's last round",
    )

    @property
    def owner_dsn(self) -> str:
        """The DSN the schema is applied with (the owner's, or DATABASE_URL's in development)."""
        return self.database_owner_url or self.database_url

    def topic(self, name: str) -> str:
        """The full name of a logical topic in this deployment's namespace."""
        return topics.namespaced(self.topic_namespace, name)

    @property
    def topology(self) -> Topology:
        """This deployment's place among the levels (who owns which part of the tree)."""
        return Topology(
            deployment=self.deployment_id,
            root=self.deployment_root,
            parent=self.parent_deployment,
            children=self.child_deployments,
        )

    @property
    def own_topic(self) -> str:
        """The topic this service publishes to."""
        return self.topic(topics.service_topic(self.service_name))


def settings_class(module: ModuleType) -> type[ServiceSettings]:
    """The settings class a service's `app` module defines (its subclass of `ServiceSettings`)."""
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings:
            return value
    msg = f"{module.__name__} defines no ServiceSettings subclass"
    raise LookupError(msg)
