"""Actor tokens: a signed JWT naming the user, the org unit they act at, and their role."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from contracts.envelope import Actor, Role
from runtime import clock
from runtime.db import Pool
from runtime.errors import ForbiddenError, NotFoundError, UnauthorizedError

ALGORITHM = "HS256"
ISSUER = "cadre-pool"

_bearer = HTTPBearer(auto_error=False, description="Actor token (`./dev token --help`)")


def issue_token(secret: str, actor: Actor, *, ttl: timedelta = timedelta(hours=12)) -> str:
    """Sign a token for `actor`, valid for `ttl`."""
    now = clock.now()
    claims = {
        "sub": actor.user,
        "org": actor.org_path,
        "role": actor.role.value,
        "iss": ISSUER,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str, token: str) -> Actor:
    """The actor a token names; `UnauthorizedError` when it is not valid.

    A client sends the same token with every request: a verified token is
    remembered until it expires (checking the signature took about 5% of a
    service's CPU under load).
    """
    now = clock.now().timestamp()
    known = _verified.get((secret, token))
    if known is not None and known[1] > now:
        return known[0]
    try:
        # Times are checked against the platform's clock below, not PyJWT's reading of the system clock.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        _check_times(claims, now)
        actor = Actor(user=claims["sub"], org_path=claims["org"], role=Role(claims["role"]))
    except (jwt.PyJWTError, KeyError, ValueError, ValidationError) as error:
        msg = f"invalid actor token: {error}"
        raise UnauthorizedError(msg) from error
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[(secret, token)] = (actor, float(claims["exp"]))
    return actor


_ISSUER_SKEW_SECONDS = 30.0


def _check_times(claims: dict[str, object], now: float) -> None:
    """Expiry, not-before and issued-at on the platform's clock (an issuer's clock may run a little ahead)."""
    expires = float(str(claims["exp"]))
    if expires <= now:
        msg = "Signature has expired"
        raise jwt.ExpiredSignatureError(msg)
    for claim in ("nbf", "iat"):
        if claim in claims and float(str(claims[claim])) > now + _ISSUER_SKEW_SECONDS:
            msg = f"The token is not yet valid ({claim})"
            raise jwt.ImmatureSignatureError(msg)


_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str], tuple[Actor, float]] = {}


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """FastAPI dependency: the actor of this request."""
    if credentials is None:
        msg = "missing bearer token"
        raise UnauthorizedError(msg)
    secret: str = request.app.state.auth_secret
    return read_token(secret, credentials.credentials)


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


def can_write(actor: Actor) -> None:
    """Only organizers change the pool."""
    require_role(actor, Role.ORGANIZER)


async def subtree_root(pool: Pool, actor: Actor, code: str | None, *, table: str = "units") -> str:
    """The org path of unit `code` (default: the actor's own unit), refused (404) outside the actor's subtree."""
    if code is None:
        return actor.org_path
    path = await pool.fetchval(f"SELECT path FROM {table} WHERE code = $1", code)  # noqa: S608 - a table name of ours
    if path is None:
        msg = f"org unit {code} not found"
        raise NotFoundError(msg)
    require_scope(actor, path, f"org unit {code}")
    return str(path)
