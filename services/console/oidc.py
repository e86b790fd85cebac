"""The console as an OpenID Connect relying party: authorization code with PKCE (S256).

Any provider named by its issuer URL works: the endpoints come from its discovery
document. The ID token is verified against the provider's published keys (issuer,
audience = the console's client id, nonce); the access token is the services' to verify.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from runtime import clock
from runtime.auth import ProviderKeys
from runtime.errors import UnauthorizedError


@dataclass(frozen=True)
class SignIn:
    """What the console remembers between sending a person to the provider and their return."""

    state: str
    nonce: str
    verifier: str
    next: str

    @classmethod
    def begin(cls, next_url: str) -> SignIn:
        """Fresh random values for one sign-in."""
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_url)

    @property
    def challenge(self) -> str:
        """The PKCE challenge (S256) of the verifier."""
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint answered."""

    access_token: str
    refresh_token: str
    id_token: str | None
    expires_at: float


class Provider:
    """The identity provider, as the console talks to it."""

    def __init__(self, issuer: str, client_id: str, http: httpx.AsyncClient, *, discovery: str = "") -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._http = http
        self._discovery = discovery or f"{self.issuer}/.well-known/openid-configuration"
        self._config: dict[str, Any] | None = None
        self.keys = ProviderKeys(self.issuer)

    def backchannel(self, url: str) -> str:
        """An endpoint the console calls itself, reached where the discovery document is read.

        Behind OIDC_DISCOVERY_URL (a container network) a provider may name its endpoints under
        the issuer, the address browsers use (Keycloak does so for sign-out): the console calls
        them under the discovery document's base instead.
        """
        inner = self._discovery.removesuffix("/.well-known/openid-configuration")
        if inner != self.issuer and url.startswith(f"{self.issuer}/"):
            return inner + url.removeprefix(self.issuer)
        return url

    async def config(self) -> dict[str, Any]:
        """The provider's discovery document (read once)."""
        if self._config is None:
            answer = await self._http.get(self._discovery)
            answer.raise_for_status()
            self._config = answer.json()
            self.keys = ProviderKeys(self.issuer, jwks_url=self.backchannel(str(self._config["jwks_uri"])))
        return self._config

    async def authorization_url(self, signin: SignIn, redirect_uri: str, language: str) -> str:
        """Where to send the person to sign in."""
        endpoint = (await self.config())["authorization_endpoint"]
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": signin.state,
            "nonce": signin.nonce,
            "code_challenge": signin.challenge,
            "code_challenge_method": "S256",
            "ui_locales": language,
        }
        return f"{endpoint}?{urlencode(query)}"

    async def _tokens(self, form: dict[str, str]) -> Tokens:
        endpoint = self.backchannel((await self.config())["token_endpoint"])
        answer = await self._http.post(endpoint, data={"client_id": self.client_id, **form})
        if answer.status_code != httpx.codes.OK:
            msg = f"the identity provider refused: {answer.status_code} {answer.text[:200]}"
            raise UnauthorizedError(msg)
        body = answer.json()
        return Tokens(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token", ""),
            id_token=body.get("id_token"),
            expires_at=clock.now().timestamp() + float(body.get("expires_in", 60)),
        )

    async def exchange(self, code: str, signin: SignIn, redirect_uri: str) -> Tokens:
        """Trade the authorization code (with the PKCE verifier) for tokens; check the ID token's nonce."""
        tokens = await self._tokens(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": signin.verifier,
            }
        )
        if tokens.id_token is None:
            msg = "the identity provider sent no ID token"
            raise UnauthorizedError(msg)
        await self.config()
        claims = await self.keys.verify(tokens.id_token, audience=self.client_id)
        if claims.get("nonce") != signin.nonce:
            msg = "the ID token answers another sign-in (nonce)"
            raise UnauthorizedError(msg)
        return tokens

    async def refresh(self, refresh_token: str) -> Tokens:
        """New tokens for a session whose access token is about to expire."""
        return await self._tokens({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def end_session(self, refresh_token: str) -> None:
        """End the person's session at the provider (its refresh token stops working)."""
        endpoint = (await self.config()).get("end_session_endpoint")
        if endpoint and refresh_token:
            await self._http.post(
                self.backchannel(endpoint), data={"client_id": self.client_id, "refresh_token": refresh_token}
            )
