"""Signing in to Keycloak from Python, as a browser would: its login form, its cookies, its redirects.

The tests of sign-in and of the console use it against the local Keycloak, and the
containers' check (deploy/containers/stack.py) against the containerised one.

Keycloak marks its login cookies `Secure` even on plain http to 127.0.0.1; a browser
sends them there (loopback counts as secure), Python's cookie jar does not. So this
client keeps cookies itself, per host, and sends them whatever their flags.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from deploy.local.keycloak import CONSOLE_CLIENT, DEMO_PASSWORD


class Browserish:
    """An httpx client that keeps every cookie (Secure or not) and follows no redirect by itself."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, base_url: str = "") -> None:
        self.jar: dict[str, dict[str, str]] = {}
        self._client = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)
        self._real = httpx.AsyncClient(timeout=30)
        self.base_url = base_url

    async def aclose(self) -> None:
        """Close both clients."""
        await self._client.aclose()
        await self._real.aclose()

    def _for(self, url: str) -> httpx.AsyncClient:
        return self._client if url.startswith((self.base_url, "/")) else self._real

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the jar's cookies for its host; the cookies it sets go into the jar."""
        full = url if "://" in url else self.base_url + url
        host = urlsplit(full).netloc
        cookies = "; ".join(f"{k}={v}" for k, v in self.jar.get(host, {}).items())
        headers = {**kwargs.pop("headers", {}), **({"Cookie": cookies} if cookies else {})}
        response = await self._for(full).request(method, full, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            parsed = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.jar.setdefault(host, {}).pop(name, None)
                else:
                    self.jar.setdefault(host, {})[name] = morsel.value
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET, with cookies."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST, with cookies."""
        return await self.request("POST", url, **kwargs)

    async def follow(self, response: httpx.Response, limit: int = 10) -> httpx.Response:
        """Follow redirects (GET), keeping cookies."""
        for _ in range(limit):
            if not response.is_redirect:
                return response
            response = await self.get(urljoin(str(response.url), response.headers["location"]))
        return response


async def submit_login(client: Browserish, login_page: httpx.Response, username: str, password: str) -> httpx.Response:
    """Fill in Keycloak's login form; the provider's answer (a redirect back, or the form again)."""
    match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', login_page.text)
    if not match:
        msg = f"no login form in: {login_page.text[:500]}"
        raise RuntimeError(msg)
    action = html.unescape(match.group(1))
    return await client.post(action, data={"username": username, "password": password, "credentialId": ""})


async def provider_tokens(issuer: str, username: str, password: str = DEMO_PASSWORD) -> dict[str, Any]:
    """The token endpoint's answer for a person signing in (authorization code with PKCE, no console)."""
    client = Browserish()
    try:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        redirect = "http://127.0.0.1:1/signin/callback"
        query = {
            "response_type": "code", "client_id": CONSOLE_CLIENT, "redirect_uri": redirect, "scope": "openid",
            "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
        }  # fmt: skip
        page = await client.get(f"{issuer}/protocol/openid-connect/auth?{urlencode(query)}")
        back = await submit_login(client, page, username, password)
        if not back.is_redirect:
            msg = f"the provider did not send the person back: {back.status_code} {back.text[:500]}"
            raise RuntimeError(msg)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        answer = await client.post(
            f"{issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "client_id": CONSOLE_CLIENT, "code_verifier": verifier,
            },
        )  # fmt: skip
        answer.raise_for_status()
        tokens: dict[str, Any] = answer.json()
        return tokens
    finally:
        await client.aclose()


async def console_sign_in(client: Browserish, username: str, password: str = DEMO_PASSWORD) -> httpx.Response:
    """Sign in to the console at `client` through the provider; the page the console shows afterwards."""
    started = await client.get("/signin?next=/pool")
    if started.status_code != httpx.codes.SEE_OTHER:
        msg = f"the console did not send the person to the provider: {started.status_code} {started.text[:300]}"
        raise RuntimeError(msg)
    page = await client.follow(started)
    back = await submit_login(client, page, username, password)
    return await client.follow(back)
