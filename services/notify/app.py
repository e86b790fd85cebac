"""Wiring of the notify service: its settings, its planner, its dispatcher, its app."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from pydantic import Field, SecretStr

from contracts import topics
from contracts.notify import Channel
from contracts.registry import Language
from runtime import clock, egress, logs
from runtime.projection import Projection
from runtime.service import Parts, Service, ServiceSpec, Subscription, build_app
from runtime.settings import DEV_WEBHOOK_SECRET, ServiceSettings
from services.notify import api, projection, rules
from services.notify.channels import EmailChannel, SmtpConfig, WebhookChannel
from services.notify.dispatcher import Dispatcher, DispatchPolicy

log = logs.get(__name__)


class NotifySettings(ServiceSettings):
    """Notify's environment: the rules' timing, the channels, and how hard to try."""

    service_name: str = "notify"
    channels: str = Field(default="email,inbox,webhook", description="Channels notifications go out on")
    disabled_rules: str = Field(default="", description="Comma-separated rules not to apply (see docs/notify.md)")
    default_language: Language = Field(default=Language.ZH, description="Language when the recipient has none")
    enrolment_reminder_lead: timedelta = Field(
        default=timedelta(days=3), description="How long before a programme starts its reminder goes out (ISO 8601)"
    )
    posting_end_reminder_lead: timedelta = Field(
        default=timedelta(days=14), description="How long before a posting's planned end its reminder goes out"
    )
    check_in_every_days: int = Field(default=90, ge=1, description="Days after a check-in that the next is overdue")
    smtp_host: str = Field(default="", description="SMTP server (empty: no email channel)")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port")
    smtp_sender: str = Field(default="Reserve cadre pool <cadre-pool@localhost>", description="From address")
    smtp_username: str | None = Field(default=None, description="SMTP login (none: no authentication)")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS")
    smtp_tls: bool = Field(default=False, description="Connect to SMTP over TLS (port 465)")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, description="SMTP connect and command timeout")
    webhook_secret: SecretStr = Field(
        default=SecretStr(DEV_WEBHOOK_SECRET), description="HMAC-SHA256 key that signs webhook bodies"
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="Webhook request timeout")
    webhook_allowed_networks: list[str] = Field(
        default=[],
        description="Networks (CIDR), addresses or host names webhooks may reach although not public (JSON list;"
        " tests and local development only: by default loopback, private, link-local and the like are refused)",
    )

    def webhook_allowlist(self) -> egress.Allowlist:
        """Where webhooks may go beyond public addresses."""
        return egress.Allowlist.parse(self.webhook_allowed_networks)

    dispatch_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the dispatcher looks for due work"
    )
    dispatch_batch_size: int = Field(default=100, ge=1, description="Deliveries claimed per round")
    dispatch_concurrency: int = Field(default=10, ge=1, description="Deliveries sent at the same time")
    dispatch_lease_seconds: float = Field(
        default=120.0, gt=0, description="How long a claimed delivery is reserved for the sender that claimed it"
    )
    max_attempts: int = Field(default=6, ge=1, description="Attempts before a failing delivery is a dead letter")
    retry_base_seconds: float = Field(default=30.0, gt=0, description="Wait after the first failure (then doubling)")
    retry_max_seconds: float = Field(default=3600.0, gt=0, description="Longest wait between attempts")

    def policy(self) -> rules.Policy:
        """The rules' configurable part."""
        return rules.Policy(
            enrolment_reminder_lead=self.enrolment_reminder_lead,
            posting_end_reminder_lead=self.posting_end_reminder_lead,
            check_in_every_days=self.check_in_every_days,
            timezone=clock.current().zone,
            disabled=frozenset(name.strip() for name in self.disabled_rules.split(",") if name.strip()),
        )

    def channel_list(self) -> list[Channel]:
        """The channels in use."""
        return [Channel(name.strip()) for name in self.channels.split(",") if name.strip()]

    def dispatch_policy(self) -> DispatchPolicy:
        """How the dispatcher tries."""
        return DispatchPolicy(
            batch_size=self.dispatch_batch_size,
            concurrency=self.dispatch_concurrency,
            lease_seconds=self.dispatch_lease_seconds,
            max_attempts=self.max_attempts,
            retry_base_seconds=self.retry_base_seconds,
            retry_max_seconds=self.retry_max_seconds,
            default_language=self.default_language,
        )


def _settings(service: Service) -> NotifySettings:
    settings = service.settings
    assert isinstance(settings, NotifySettings)
    return settings


def planner(service: Service) -> Projection:
    """The planner, configured from the service's settings."""
    settings = _settings(service)
    return projection.Planner(settings.policy(), settings.channel_list())


async def dispatch_forever(service: Service) -> None:
    """Deliver what is due, round after round, until the service stops (the round in progress finishes)."""
    settings = _settings(service)
    email = None
    if settings.smtp_host:
        email = EmailChannel(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_sender,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_tls,
                timeout=settings.smtp_timeout_seconds,
            )
        )
    webhook = WebhookChannel(
        settings.webhook_secret.get_secret_value(),
        timeout=settings.webhook_timeout_seconds,
        allow=settings.webhook_allowlist(),
    )
    dispatcher = Dispatcher(
        service.pool, service.store, email=email, webhook=webhook, policy=settings.dispatch_policy()
    )
    try:
        while True:
            try:
                handled = await dispatcher.dispatch_due()
            except Exception:  # the database may be away for a moment; try again next round
                log.exception("dispatch round failed")
                handled = 0
            if service.stopping.is_set() or (not handled and await service.pause(settings.dispatch_interval_seconds)):
                return
    finally:
        await webhook.close()


SPEC = ServiceSpec(
    name="notify",
    title="Reserve cadre notifications",
    description="Tells the right people what needs them: nominations, mentors, training, postings, evaluations, "
    "reminders, exits and retirements, procedures' notices and objections, by email, signed webhook and in-app "
    "inbox, each exactly once.",
    routers=[api.router],
    schema=projection.SCHEMA,
    inline=projection.NotifyProjection(),
    subscriptions=[
        Subscription(topics=[topics.REGISTRY, topics.TRAINING, topics.ASSESSMENT, topics.SELECTION], factory=planner)
    ],
    background=[dispatch_forever],
)


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Notify's ASGI app."""
    settings = settings or NotifySettings()
    return build_app(SPEC, settings, Parts().value(egress.Allowlist, settings.webhook_allowlist()))
