"""People sign in at a real Keycloak; the services map its access tokens to actors through the registry's grants."""

from __future__ import annotations

import httpx
import jwt

from contracts.envelope import Actor, Role
from deploy.local.signin import provider_tokens
from runtime.auth import issue_token
from services.registry import demo
from services.registry.app import RegistrySettings, create_app
from tests.support import SECRET, Launch, auth, eventually


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_provider_token_acts_as_its_grant_and_no_further(launch: Launch, keycloak: str) -> None:
    registry = await launch(create_app, RegistrySettings, "registry", oidc_issuer=keycloak)
    org = demo.plan(cadres=40)
    await demo.load(registry.client, demo.root_token(SECRET, org), org)
    county = next(p for p in demo.people(org) if p.user_id == "organizer.county")
    tokens = await provider_tokens(keycloak, county.user_id)
    headers = _bearer(tokens["access_token"])

    async def whoami() -> httpx.Response:
        return await registry.client.get("/access/me", headers=headers)

    me = (await eventually(whoami, until=lambda r: r.status_code == httpx.codes.OK)).json()
    assert me == {
        "user": "organizer.county",
        "name": county.name,
        "role": "organizer",
        "org_path": county.unit.path,
        "org_code": county.unit.code,
        "org_name": county.unit.name,
    }
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == county.subject
    assert "cadre-pool" in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])

    page = (await registry.client.get("/cadres", params={"status": "any", "limit": 500}, headers=headers)).json()
    inside = [c for c in org.cadres if c.unit.path.startswith(county.unit.path)]
    assert sorted(c["cadre_id"] for c in page["items"]) == sorted(str(c.cadre_id) for c in inside)
    elsewhere = next(c for c in org.cadres if not c.unit.path.startswith(county.unit.path))
    assert (await registry.client.get(f"/cadres/{elsewhere.cadre_id}", headers=headers)).status_code == 404

    # An organizer grants within its subtree only, and never the system role.
    outside = {"subject": "x-1", "name": "Someone", "org_code": org.root.code, "role": "viewer"}
    assert (await registry.client.put("/access/someone", json=outside, headers=headers)).status_code == 404
    system = {"subject": "x-2", "name": "Robot", "org_code": county.unit.code, "role": "system"}
    assert (await registry.client.put("/access/robot", json=system, headers=headers)).status_code == 422
    viewer = {"subject": "x-3", "name": "New Viewer", "org_code": county.unit.code, "role": "viewer"}
    granted = await registry.client.put("/access/new.viewer", json=viewer, headers=headers)
    assert granted.status_code == 200, granted.text
    grants = await eventually(
        lambda: registry.client.get("/access", headers=headers),
        until=lambda r: any(g["user_id"] == "new.viewer" for g in r.json()),
    )
    assert {g["org_path"] for g in grants.json()} <= {u.path for u in org.units if u.path.startswith(county.unit.path)}

    # Tampered, foreign or forged tokens are refused.
    head, body, signature = tokens["access_token"].split(".")
    assert (
        await registry.client.get("/access/me", headers=_bearer(f"{head}.{body}.{signature[::-1]}"))
    ).status_code == 401
    forged = jwt.encode(
        {"sub": county.subject, "iss": keycloak, "aud": "cadre-pool", "exp": 2**40, "iat": 1},
        "k" * 48,
        algorithm="HS384",
    )
    assert (await registry.client.get("/access/me", headers=_bearer(forged))).status_code == 401

    # Revoked: the person's valid token no longer acts (within the grants' few seconds of memory).
    revoked = await registry.client.delete("/access/organizer.county", headers=auth("demo.organizer", org.root.path))
    assert revoked.status_code == 200, revoked.text
    await eventually(whoami, until=lambda r: r.status_code == httpx.codes.FORBIDDEN, timeout=30)


async def test_without_a_provider_only_service_tokens_count(launch: Launch) -> None:
    registry = await launch(create_app, RegistrySettings, "registry")
    token = issue_token(SECRET, Actor(user="script", org_path="qs", role=Role.VIEWER))
    assert (await registry.client.get("/access/me", headers=_bearer(token))).json()["user"] == "script"
    rs256_shaped = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJ4In0.c2ln"
    answer = await registry.client.get("/access/me", headers=_bearer(rs256_shaped))
    assert answer.status_code == 401
    assert "OIDC_ISSUER" in answer.json()["detail"]
