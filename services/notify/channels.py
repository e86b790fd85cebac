"""The channels that really deliver: email over SMTP, signed webhooks over HTTP.

(The third channel, the in-app inbox, needs no transport: recording `NotificationSent`
places the message in the recipient's inbox.)

Each channel raises `DeliveryError` with `permanent` set when trying again cannot help
(a 5xx SMTP reply, a 4xx HTTP answer other than 408/425/429) and unset for what may
pass (a refused connection, a 4xx SMTP reply, a timeout, an HTTP 5xx).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

import aiosmtplib
import httpx
import orjson

from runtime import clock, egress

SIGNATURE_HEADER: Final = "X-Cadre-Signature"
TIMESTAMP_HEADER: Final = "X-Cadre-Timestamp"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_SMTP_PERMANENT: Final = 500
_HTTP_RETRYABLE: Final = frozenset({408, 425, 429})


class DeliveryError(Exception):
    """A delivery attempt failed."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Message:
    """One notification, rendered for one recipient."""

    notification_id: UUID
    recipient_name: str
    subject: str
    body: str
    language: str


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to hand email over."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 10.0


class EmailChannel:
    """Sends each message as one email; its Message-ID is the notification id (receivers can de-duplicate)."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, message: Message, address: str) -> None:
        """Hand the message to the SMTP server; `DeliveryError` when it does not take it."""
        config = self._config
        email = EmailMessage()
        try:
            email["From"] = config.sender
            email["To"] = formataddr((message.recipient_name, address))
            email["Subject"] = message.subject
            email["Date"] = formatdate(clock.now().timestamp(), localtime=False)
            email["Message-ID"] = f"<{message.notification_id}@cadre-pool>"
            email["Content-Language"] = message.language
            email.set_content(message.body)
        except (ValueError, TypeError) as error:  # a line break in a header (a name recorded before it was refused)
            msg = f"the message cannot be written as an email: {error}"
            raise DeliveryError(msg, permanent=True) from error
        try:
            await aiosmtplib.send(
                email,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                start_tls=config.starttls,
                use_tls=config.use_tls,
                timeout=config.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            msg = f"recipient refused: {error}"
            raise DeliveryError(msg, permanent=min(codes) >= _SMTP_PERMANENT) from error
        except aiosmtplib.SMTPResponseException as error:
            msg = f"SMTP {error.code}: {error.message}"
            raise DeliveryError(msg, permanent=error.code >= _SMTP_PERMANENT) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            msg = f"SMTP unavailable: {error!r}"
            raise DeliveryError(msg, permanent=False) from error


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature of a webhook body: `v1=` and HMAC-SHA256 over `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0) -> bool:
    """What a webhook receiver checks: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(clock.now().timestamp() - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    """POSTs a signed JSON copy of each message, with the notification id as `Idempotency-Key`."""

    def __init__(self, secret: str, *, timeout: float = 10.0, allow: egress.Allowlist | None = None) -> None:
        self._secret = secret
        self._allow = allow or egress.Allowlist()
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def send(self, message: Message, url: str, extra: dict[str, Any]) -> None:
        """Deliver to `url`; `DeliveryError` unless it answers 2xx.

        The address is resolved and checked again now (runtime.egress), and the request goes to the
        address checked: a webhook never reaches this service's own networks (a permanent failure).
        """
        try:
            destination = await egress.check(url, self._allow)
        except egress.RefusedDestinationError as error:
            msg = f"webhook refused: {error}"
            raise DeliveryError(msg, permanent=True) from error
        body = orjson.dumps(
            {
                "notification_id": str(message.notification_id),
                "subject": message.subject,
                "body": message.body,
                "language": message.language,
                **extra,
            }
        )
        timestamp = str(int(clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            IDEMPOTENCY_HEADER: str(message.notification_id),
        }
        headers["Host"] = urlsplit(url).netloc
        extensions = {"sni_hostname": destination.host} if url.startswith("https:") else {}
        try:
            response = await self._client.post(
                destination.pinned(), content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as error:
            msg = f"webhook unreachable: {error!r}"
            raise DeliveryError(msg, permanent=False) from error
        if response.is_success:
            return
        retryable = response.status_code in _HTTP_RETRYABLE or response.is_server_error
        msg = f"webhook answered {response.status_code}"
        raise DeliveryError(msg, permanent=not retryable)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
