"""The console's provider client: the endpoints it calls itself, behind a discovery URL of another name."""

from __future__ import annotations

import httpx

from services.console.oidc import Provider

ISSUER = "http://127.0.0.1:8180/realms/cadre-pool"
INSIDE = "http://keycloak:8080/realms/cadre-pool"


async def test_endpoints_named_under_the_issuer_are_called_where_the_discovery_document_is() -> None:
    async with httpx.AsyncClient() as http:
        provider = Provider(ISSUER, "cadre-console", http, discovery=f"{INSIDE}/.well-known/openid-configuration")
        logout = "/protocol/openid-connect/logout"
        assert provider.backchannel(ISSUER + logout) == INSIDE + logout
        token = "/protocol/openid-connect/token"
        assert provider.backchannel(INSIDE + token) == INSIDE + token
        assert provider.backchannel(ISSUER + "-other/x") == ISSUER + "-other/x"  # another realm's address is left alone
        plain = Provider(ISSUER, "cadre-console", http)
        assert plain.backchannel(ISSUER + logout) == ISSUER + logout
