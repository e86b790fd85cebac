"""Who is asking: the one place every service learns the actor of a request.

Two kinds of bearer token are accepted:

- **Service tokens** (HS256, `AUTH_SECRET`) name the user, the org unit they act at and
  their role; scripts and services use them (`./dev token`).
- **Access tokens of the identity provider** (RS256, verified against the keys it
  publishes, issuer and audience checked) when `OIDC_ISSUER` is set. They only say who
  the person is (`sub`); where the person acts and with which role is the platform's
  decision: a grant (`AccessGranted` / `AccessRevoked` in the registry), which every
  service projects from `registry.events` into its own `access_grants` table.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from contracts.envelope import Actor, Role
from contracts.registry import AccessGranted, AccessRevoked
from runtime import clock, limits
from runtime.db import Conn, Pool, Scoped, in_scope, own_user, row_security
from runtime.errors import ForbiddenError, NotFoundError, UnauthorizedError
from runtime.projection import Recorded, Typed

ALGORITHM = "HS256"
ISSUER = "cadre-pool"
PROVIDER_ALGORITHMS: Final = ("RS256",)

_bearer = HTTPBearer(
    auto_error=False, description="A service token (`./dev token --help`) or the identity provider's access token"
)


class Permission(StrEnum):
    """What a token may allow beyond its role (claim `perm` of a service token)."""

    LATE_ENTRY = "late_entry"
    """Record what happened longer ago than the backdating window (with a reason; runtime.http)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a verified token names, and what it allows beyond its role."""

    actor: Actor
    permissions: frozenset[Permission] = frozenset()


def issue_token(
    secret: str, actor: Actor, *, ttl: timedelta = timedelta(hours=12), permissions: Sequence[Permission] = ()
) -> str:
    """Sign a token for `actor`, valid for `ttl` (with `permissions` beyond its role, if any)."""
    now = clock.now()
    claims: dict[str, Any] = {
        "sub": actor.user,
        "org": actor.org_path,
        "role": actor.role.value,
        "iss": ISSUER,
        "iat": now,
        "exp": now + ttl,
    }
    if permissions:
        claims["perm"] = sorted(p.value for p in permissions)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


DEFAULT_MAX_LIFETIME = 24 * 3600.0
"""The longest token lifetime (exp - iat) accepted unless the service says otherwise (MAX_TOKEN_LIFETIME_SECONDS)."""


def read_token(secret: str, token: str, *, max_lifetime: float = DEFAULT_MAX_LIFETIME) -> Actor:
    """The actor a token names; `UnauthorizedError` when it is not valid."""
    return verify_token(secret, token, max_lifetime=max_lifetime).actor


def verify_token(secret: str, token: str, *, max_lifetime: float = DEFAULT_MAX_LIFETIME) -> Caller:
    """The caller a service token names; `UnauthorizedError` when it is not valid.

    A client sends the same token with every request: a verified token is
    remembered until it expires (checking the signature took about 5% of a
    service's CPU under load).
    """
    now = clock.now().timestamp()
    known = _verified.get((secret, token))
    if known is not None and known[1] > now and known[2] <= max_lifetime:
        return known[0]
    try:
        # Times are checked against the platform's clock below, not PyJWT's reading of the system clock.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        _check_times(claims, now, max_lifetime)
        user, org = _text_claim(claims, "sub"), _text_claim(claims, "org")
        caller = Caller(
            actor=Actor(user=user, org_path=org, role=Role(claims["role"])),
            permissions=frozenset(Permission(p) for p in claims.get("perm", [])),
        )
    except (jwt.PyJWTError, KeyError, ValueError, TypeError, ValidationError) as error:
        msg = f"invalid actor token: {_printable(error)}"
        raise UnauthorizedError(msg) from error
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    lifetime = time_claim(claims, "exp") - time_claim(claims, "iat")
    _verified[(secret, token)] = (caller, time_claim(claims, "exp"), lifetime)
    return caller


def _text_claim(claims: dict[str, Any], name: str) -> str:
    """A claim that names someone or somewhere: a short text without control characters."""
    value = claims[name]
    if not isinstance(value, str) or not 0 < len(value) <= _CLAIM_MAX or _CONTROL.search(value):
        msg = f"claim {name!r} is not a printable name of at most {_CLAIM_MAX} characters"
        raise ValueError(msg)
    return value


def _printable(error: Exception) -> str:
    """An error's message as it may be shown: control characters a token smuggled in are dropped."""
    return _CONTROL.sub("", str(error))[:200]


_CLAIM_MAX = 128
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")


_ISSUER_SKEW_SECONDS = 30.0


def time_claim(claims: dict[str, Any], name: str) -> float:
    """A time claim (`exp`, `iat`, `nbf`, seconds): a finite JSON number, else `ValueError`.

    Every reading of a token's times goes through here: NaN compares false with everything
    (a NaN `exp` would never expire), and a string or a boolean is no time.
    """
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"claim {name!r} is not a finite number of seconds"
        raise ValueError(msg)
    return float(value)


def _check_times(claims: dict[str, Any], now: float, max_lifetime: float) -> None:
    """Expiry, not-before, issued-at and lifetime on the platform's clock (an issuer's clock may run a little ahead)."""
    expires = time_claim(claims, "exp")
    if expires <= now:
        msg = "Signature has expired"
        raise jwt.ExpiredSignatureError(msg)
    if "iat" in claims and expires - time_claim(claims, "iat") > max_lifetime:
        msg = f"the token lives longer than the {max_lifetime:.0f} s this service accepts"
        raise jwt.InvalidTokenError(msg)
    for claim in ("nbf", "iat"):
        if claim in claims and time_claim(claims, claim) > now + _ISSUER_SKEW_SECONDS:
            msg = f"The token is not yet valid ({claim})"
            raise jwt.ImmatureSignatureError(msg)


_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str], tuple[Caller, float, float]] = {}
"""(secret, token) → the caller, when the token expires, and its lifetime."""


class ProviderKeys:
    """The identity provider's signing keys, read from its JWKS (found through its discovery document).

    Fetched on first use and again when a token names a key id not seen yet (the
    provider rotated its keys), at most once every `refresh_seconds`.
    """

    def __init__(self, issuer: str, *, jwks_url: str = "", refresh_seconds: float = 30.0) -> None:
        self.issuer = issuer.rstrip("/")
        self._jwks_url = jwks_url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._refresh_seconds = refresh_seconds
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key `kid`; `UnauthorizedError` when the provider does not publish it."""
        if kid not in self._keys and time.monotonic() - self._fetched_at > self._refresh_seconds:
            async with self._lock:
                if kid not in self._keys:
                    await self._fetch()
        try:
            return self._keys[kid]
        except KeyError:
            msg = f"the identity provider publishes no key {kid!r}"
            raise UnauthorizedError(msg) from None

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                if not self._jwks_url:
                    discovery = await client.get(f"{self.issuer}/.well-known/openid-configuration")
                    discovery.raise_for_status()
                    self._jwks_url = str(discovery.json()["jwks_uri"])
                answer = await client.get(self._jwks_url)
                answer.raise_for_status()
                document = answer.json()
        except (httpx.HTTPError, ValueError, KeyError) as error:
            msg = f"the identity provider's keys cannot be read: {error!r}"
            raise UnauthorizedError(msg) from error
        keys = {}
        for entry in document.get("keys", []):
            if (
                entry.get("use", "sig") == "sig"
                and entry.get("kid")
                and entry.get("alg", "RS256") in PROVIDER_ALGORITHMS
            ):
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
        self._keys = keys

    async def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """The claims of a provider token: signature, expiry, issuer and audience checked."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            msg = f"invalid access token: {error}"
            raise UnauthorizedError(msg) from error
        if header.get("alg") not in PROVIDER_ALGORITHMS:
            msg = f"access tokens must be signed with {', '.join(PROVIDER_ALGORITHMS)}"
            raise UnauthorizedError(msg)
        key = await self.key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(PROVIDER_ALGORITHMS),
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss"]},
                leeway=5,
            )
            for name in ("exp", "iat", "nbf"):
                if name in claims:
                    time_claim(claims, name)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as error:  # int(inf): OverflowError
            msg = f"invalid access token: {_printable(error)}"
            raise UnauthorizedError(msg) from error
        return claims


GRANTS_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS access_grants (
        user_id   text PRIMARY KEY,
        subject   text NOT NULL,
        name      text NOT NULL,
        org_code  text NOT NULL,
        org_path  text COLLATE "C" NOT NULL,
        role      text NOT NULL,
        version   int NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS access_grants_subject ON access_grants (subject)",
    "CREATE INDEX IF NOT EXISTS access_grants_subtree ON access_grants (org_path)",
    # An actor reads the grants of its subtree, and its own (runtime.db).
    *row_security("access_grants", f"({in_scope('org_path')} OR {own_user('user_id')})"),
)
"""Every service's table of grants (projected from `registry.events`)."""


class AccessGrants(Typed):
    """Projection: who may act where, with which role (`AccessGranted`, `AccessRevoked`)."""

    name = "access_grants"
    tables = ("access_grants",)
    """The table only this projection writes: it can be rebuilt (runtime.rebuild)."""

    events = (AccessGranted, AccessRevoked)

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Upsert each grant; a revocation removes it. A stale version never overwrites a newer one."""
        for recorded in events:
            event, env = recorded.event, recorded.envelope
            if isinstance(event, AccessGranted):
                await conn.execute(
                    "INSERT INTO access_grants (user_id, subject, name, org_code, org_path, role, version)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET"
                    " subject = excluded.subject, name = excluded.name, org_code = excluded.org_code,"
                    " org_path = excluded.org_path, role = excluded.role, version = excluded.version"
                    " WHERE access_grants.version < excluded.version",
                    event.user_id,
                    event.subject,
                    event.name,
                    event.org_code,
                    env.org_path,
                    event.role.value,
                    env.stream_version,
                )
            elif isinstance(event, AccessRevoked):
                await conn.execute(
                    "DELETE FROM access_grants WHERE user_id = $1 AND version < $2", event.user_id, env.stream_version
                )


@dataclass
class Authenticator:
    """Turns a bearer token into the actor: a service token, or a provider token through the grants."""

    secret: str
    provider: ProviderKeys | None = None
    audience: str = "cadre-pool"
    pool: Callable[[], Pool] | None = None
    """The service's database, where the grants are (a provider token needs it)."""
    grant_ttl_seconds: float = 5.0
    """How long a looked-up grant is remembered: a revocation takes effect within this (plus the topic's lag)."""
    max_lifetime: float = DEFAULT_MAX_LIFETIME
    """The longest token lifetime (exp - iat) accepted, of service and provider tokens alike."""
    _grants: dict[str, tuple[Actor | None, float]] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    async def actor(self, token: str) -> Actor:
        """The actor `token` stands for; 401 when it is not valid, 403 when its person has no grant."""
        return (await self.caller(token)).actor

    async def caller(self, token: str) -> Caller:
        """The caller `token` stands for (actor and permissions); 401 when it is not valid, 403 without a grant."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            msg = f"invalid bearer token: {_printable(error)}"
            raise UnauthorizedError(msg) from error
        if algorithm == ALGORITHM:
            return verify_token(self.secret, token, max_lifetime=self.max_lifetime)
        if self.provider is None:
            msg = "this service accepts only service tokens (OIDC_ISSUER is not set)"
            raise UnauthorizedError(msg)
        subject = await self._subject(token)
        return Caller(await self.granted(subject))

    async def _subject(self, token: str) -> str:
        now = time.time()  # the provider's tokens carry its (real) time, not the platform's clock
        known = self._tokens.get(token)
        if known is not None and known[1] > now:
            return known[0]
        assert self.provider is not None
        claims = await self.provider.verify(token, audience=self.audience)
        try:
            subject = _text_claim(claims, "sub")
            lifetime = time_claim(claims, "exp") - time_claim(claims, "iat")
        except (KeyError, ValueError, TypeError) as error:
            msg = f"invalid access token: {_printable(error)}"
            raise UnauthorizedError(msg) from error
        if lifetime > self.max_lifetime:
            msg = f"the access token lives longer than the {self.max_lifetime:.0f} s this service accepts"
            raise UnauthorizedError(msg)
        if len(self._tokens) >= _VERIFIED_MAX:
            self._tokens.clear()
        self._tokens[token] = (subject, time_claim(claims, "exp"))
        return subject

    async def granted(self, subject: str) -> Actor:
        """The actor the grant of `subject` makes; 403 when it has none."""
        now = time.monotonic()
        known = self._grants.get(subject)
        if known is None or now - known[1] > self.grant_ttl_seconds:
            if self.pool is None:
                msg = "no grants to look the person up in"
                raise ForbiddenError(msg)
            row = await self.pool().fetchrow(
                "SELECT user_id, org_path, role FROM access_grants WHERE subject = $1 ORDER BY version DESC LIMIT 1",
                subject,
            )
            actor = Actor(user=row["user_id"], org_path=row["org_path"], role=Role(row["role"])) if row else None
            if len(self._grants) >= _VERIFIED_MAX:
                self._grants.clear()
            self._grants[subject] = known = (actor, now)
        if known[0] is None:
            msg = "you have no access to this platform yet: an organizer of your unit grants it"
            raise ForbiddenError(msg)
        return known[0]


OWN_RECORD: Final = {"x-open-to-cadres": True}
"""`openapi_extra` of a route a cadre's own grant (role `cadre`) may call (ADR 0028).

Every other route refuses such an actor (403): what a cadre may see is opened route by route,
and each open route answers only about the cadre themselves (`require_self_or_scope`).
"""


def open_to_cadres(request: Request) -> bool:
    """Whether the route of `request` is one a cadre's own grant may call."""
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    return bool(extra.get("x-open-to-cadres"))


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """FastAPI dependency: the actor of this request (its caller is kept in `request.state.caller`).

    A request that changes something (any method but GET and HEAD) counts against the actor's
    share of commands (runtime.limits): 429 beyond it. A cadre's own grant is refused (403)
    everywhere but on the routes open to it (`OWN_RECORD`).
    """
    if credentials is None:
        msg = "missing bearer token"
        raise UnauthorizedError(msg)
    authenticator: Authenticator = request.app.state.authenticator
    caller = await authenticator.caller(credentials.credentials)
    if caller.actor.role is Role.CADRE and not open_to_cadres(request):
        msg = "a cadre's own grant opens only their own record"
        raise ForbiddenError(msg)
    request.state.caller = caller
    if request.method not in {"GET", "HEAD"}:
        limits.charge(request, caller.actor, limits.WRITES)
    return caller.actor


def caller_of(request: Request) -> Caller:
    """The caller `current_actor` found for this request."""
    caller: Caller = request.state.caller
    return caller


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require_role(actor: Actor, *roles: Role) -> None:
    """Refuse (403) unless the actor has one of `roles`."""
    if actor.role not in roles:
        allowed = ", ".join(role.value for role in roles)
        msg = f"role {actor.role.value} may not do this (needs {allowed})"
        raise ForbiddenError(msg)


def require_scope(actor: Actor, org_path: str, what: str) -> None:
    """Refuse with 404 when `org_path` lies outside the actor's subtree (its existence stays hidden)."""
    if not actor.covers(org_path):
        msg = f"{what} not found"
        raise NotFoundError(msg)


def require_self_or_scope(actor: Actor, cadre_id: object, org_path: str, what: str) -> None:
    """A cadre reads only themselves (the actor's user is their id); anyone else its subtree. 404 otherwise."""
    if actor.role is Role.CADRE:
        if actor.user != str(cadre_id):
            msg = f"{what} not found"
            raise NotFoundError(msg)
        return
    require_scope(actor, org_path, what)


def can_write(actor: Actor) -> None:
    """Only organizers change the pool."""
    require_role(actor, Role.ORGANIZER)


async def subtree_root(pool: Pool | Scoped, actor: Actor, code: str | None, *, table: str = "units") -> str:
    """The org path of unit `code` (default: the actor's own unit), refused (404) outside the actor's subtree."""
    return actor.org_path if code is None else await unit_path(pool, code, actor, table=table)


async def unit_path(pool: Pool | Scoped, code: str, actor: Actor | None = None, *, table: str = "units") -> str:
    """The path of org unit `code`: 404 when there is none (and, given the `actor`, when outside its subtree)."""
    path = await pool.fetchval(f"SELECT path FROM {table} WHERE code = $1", code)  # noqa: S608 - a table name of ours
    if path is None:
        msg = f"org unit {code} not found"
        raise NotFoundError(msg)
    if actor is not None:
        require_scope(actor, str(path), f"org unit {code}")
    return str(path)
