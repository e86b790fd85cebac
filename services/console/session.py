"""Sessions kept in a sealed cookie: encrypted and authenticated (AES-GCM), nothing stored server-side.

The cookie holds the provider's tokens and the actor the registry maps them to, and the
session's id, which the registry keeps open from sign-in to sign-out: every request asks it,
so a copy of the cookie opens nothing once the person signed out (ADR 0023). It is `Secure`,
`HttpOnly` and `SameSite=Lax` (Lax, not Strict: the provider's redirect back after
sign-in is a cross-site navigation). Every form also carries the session's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime import clock

SESSION_COOKIE = "cadre_session"
SIGNIN_COOKIE = "cadre_signin"
"""The state, nonce and PKCE verifier of a sign-in under way (ten minutes)."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass
class Session:
    """A signed-in person: who they act as, their tokens, and when the session ends."""

    user: str
    name: str
    role: str
    org_path: str
    org_code: str
    org_name: str
    access_token: str
    refresh_token: str
    access_expires: float
    """When the access token expires (seconds since the epoch)."""
    ends: float
    """When the session ends whatever happens (the console's own limit)."""
    leads: bool = False
    """Whether the person is their unit's responsible (main) leader: the leader's page is offered."""
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """The session's id: the registry keeps it open until sign-out (checked on every request)."""

    @property
    def may_write(self) -> bool:
        """Organizers change things; auditors and viewers only read."""
        return self.role == "organizer"

    @property
    def may_audit(self) -> bool:
        """Auditors and organizers may ask the audit service."""
        return self.role in {"auditor", "organizer"}


class Sealer:
    """Seals small JSON documents into cookie values and opens them again (AES-256-GCM)."""

    def __init__(self, key: str) -> None:
        self._aead = AESGCM(hashlib.sha256(b"cadre-console session|" + key.encode()).digest())

    def seal(self, purpose: str, document: dict[str, Any]) -> str:
        """An opaque cookie value for `document`, bound to `purpose` (the cookie's name)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, orjson.dumps(document), purpose.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The document sealed in `value`; None when it is absent, altered or sealed for another purpose."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            opened = orjson.loads(self._aead.decrypt(raw[:12], raw[12:], purpose.encode()))
        except (ValueError, InvalidTag, orjson.JSONDecodeError):
            return None
        return opened if isinstance(opened, dict) else None

    def session(self, value: str | None) -> Session | None:
        """The session in a cookie value, unless it ended."""
        document = self.open(SESSION_COOKIE, value)
        if document is None:
            return None
        try:
            session = Session(**document)
        except TypeError:
            return None
        return session if session.ends > clock.now().timestamp() else None

    def seal_session(self, session: Session) -> str:
        """The cookie value of `session`."""
        return self.seal(SESSION_COOKIE, asdict(session))


def csrf_ok(session: Session, given: str | None) -> bool:
    """Whether a request carries the session's CSRF token."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
