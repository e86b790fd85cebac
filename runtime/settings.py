"""Settings read from the environment, one class per service built on `ServiceSettings`."""

from __future__ import annotations

from types import ModuleType

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from contracts import topics
from runtime.clock import ClockSettings
from runtime.topology import Child, Topology

DEV_AUTH_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - documented dev default
DEV_CHECKPOINT_SEED = "0K/ZhtYTvTJBixwAyMODkddwmVAIw9zCUuV4U3204pk="  # sha256("cadre-pool development checkpoint key")
"""Development checkpoint key (public, documented): production sets CHECKPOINT_SIGNING_KEY."""


class ServiceSettings(ClockSettings):
    """What every service reads from its environment (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: str = Field(default="service", description="Name of this service")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL DSN of this service's own database",
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
        default=1.0,
        gt=0,
        description="How often the chain head is signed when a parent deployment receives this one's events"
        " (the parent releases only what a checkpoint signs)",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="How long SIGTERM may take: requests in flight, then background work's last round",
    )

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
