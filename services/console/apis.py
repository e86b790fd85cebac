"""The services' HTTP APIs, called with the signed-in person's access token: the console's only path to data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

SERVICES = ("registry", "training", "assessment", "selection", "notify", "audit", "sync")


class ApiError(Exception):
    """A service refused (a 4xx problem) or failed."""

    def __init__(self, status: int, detail: str, problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = dict(problem or {})

    @property
    def violations(self) -> list[str]:
        """The rules a command broke, when the service named them."""
        found = self.problem.get("violations") or []
        errors = [
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in self.problem.get("errors", [])
        ]
        return [str(v) for v in found] + errors


class Apis:
    """One HTTP client per service; every call carries the caller's bearer token."""

    def __init__(self, clients: Mapping[str, httpx.AsyncClient]) -> None:
        self.clients = dict(clients)

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """The service's answer; `ApiError` for any 4xx or 5xx. `content`: a raw body instead of `json` (a file)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            answer = await self.clients[service].request(
                method, path, params=clean, json=json, content=content,
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
            )  # fmt: skip
        except httpx.HTTPError as error:
            raise ApiError(503, f"the {service} service does not answer ({error.__class__.__name__})") from error
        if answer.is_error:
            try:
                problem = answer.json()
            except ValueError:
                problem = {}
            detail = problem.get("detail") if isinstance(problem, dict) else None
            raise ApiError(
                answer.status_code, str(detail or answer.reason_phrase), problem if isinstance(problem, dict) else None
            )
        return answer

    async def get(self, service: str, path: str, token: str, **params: Any) -> Any:
        """GET a JSON answer."""
        return (await self.call(service, "GET", path, token, params=params)).json()

    async def send(
        self,
        service: str,
        method: str,
        path: str,
        token: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """A command (POST, PUT, PATCH, DELETE) with a JSON body; its JSON answer."""
        return (await self.call(service, method, path, token, json=body, headers=headers)).json()

    async def send_bytes(self, service: str, path: str, token: str, data: bytes) -> Any:
        """POST a file (a signed bundle: `application/zip`); its JSON answer."""
        answer = await self.call(
            service, "POST", path, token, content=data, headers={"Content-Type": "application/zip"}
        )
        return answer.json()
