"""`/api/<service>/...`: every service's API at the one address, with its OpenAPI document and docs page.

A plain reverse proxy: the caller's own `Authorization` header goes through (a service
token, or the provider's access token); the console's session cookie never does, so a
page cannot be made to call the APIs behind a person's back.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Final

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from runtime.guard import PAGE_CSP, SECURITY_HEADERS
from services.console.apis import SERVICES
from services.console.pages import ConsoleDep, ScreenError, SessionDep, signed_in, vendor_url

router = APIRouter(include_in_schema=False)

_FORWARDED_REQUEST = ("authorization", "content-type", "accept", "if-match", "x-occurred-at", "x-correlation-id")
_FORWARDED_RESPONSE = frozenset(
    {"content-type", "etag", "location", "content-disposition", "x-correlation-id", "retry-after", *SECURITY_HEADERS}
)
"""What a service's answer keeps through this door: its own security headers too (its CSP wins over a page's)."""


def _client(console: ConsoleDep, service: str) -> httpx.AsyncClient:
    if service not in SERVICES or service not in console.apis.clients:
        raise ScreenError(404, f"no service {service!r}")
    return console.apis.clients[service]


@router.get("/api")
async def index(console: ConsoleDep) -> dict[str, Any]:
    """The services behind this address, and where their documents are."""
    return {
        "services": {
            name: {
                "base": f"/api/{name}",
                "openapi": f"/api/{name}/openapi.json",
                "docs": f"/api/{name}/docs",
                "asyncapi": f"/api/{name}/asyncapi",
            }
            for name in SERVICES
            if name in console.apis.clients
        }
    }


async def _bearer(request: Request, console: ConsoleDep) -> str:
    """The caller's own `Authorization` (a program's), else the signed-in person's access token."""
    given = request.headers.get("authorization")
    if given:
        return given
    return f"Bearer {(await signed_in(request, console)).access_token}"


@router.get("/api/{service}/openapi.json")
async def openapi(service: str, request: Request, console: ConsoleDep) -> Response:
    """The service's OpenAPI document, its server set to this address (to signed-in callers: the services ask)."""
    client = _client(console, service)
    answer = await client.get("/openapi.json", headers={"Authorization": await _bearer(request, console)})
    document = answer.json()
    if answer.is_success:
        document["servers"] = [{"url": f"/api/{service}"}]
    return JSONResponse(document, status_code=answer.status_code, media_type=answer.headers.get("content-type"))


@router.get("/api/{service}/asyncapi")
async def asyncapi(service: str, request: Request, console: ConsoleDep) -> Response:
    """The service's AsyncAPI document: the topics it sends and reads, with every event's schema (signed-in callers)."""
    client = _client(console, service)
    answer = await client.get("/asyncapi", headers={"Authorization": await _bearer(request, console)})
    return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))


@router.get("/api/{service}/docs")
async def docs(service: str, console: ConsoleDep, session: SessionDep) -> HTMLResponse:
    """Swagger UI for the service, from files this address serves itself (to people signed in here)."""
    del session
    _client(console, service)
    base = vendor_url("swagger-ui-dist")
    page = get_swagger_ui_html(
        openapi_url=f"/api/{service}/openapi.json",
        title=f"{service}: API",
        swagger_js_url=f"{base}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
    # Swagger UI starts from one inline script: allowed by its hash, and nothing else inline.
    body = bytes(page.body).decode()
    inline = [m.group(1) for m in _INLINE_SCRIPT.finditer(body)]
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline)
    policy = PAGE_CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})


_INLINE_SCRIPT: Final = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@router.api_route("/api/{service}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def proxy(service: str, path: str, request: Request, console: ConsoleDep) -> Response:
    """Forward the request to the service and its answer back, streamed."""
    client = _client(console, service)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_REQUEST}
    outgoing = client.build_request(
        request.method, f"/{path}", params=request.query_params, headers=headers, content=await request.body()
    )
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as error:
        raise ScreenError(502, f"the {service} service does not answer") from error
    return StreamingResponse(
        answer.aiter_raw(),
        status_code=answer.status_code,
        headers={k: v for k, v in answer.headers.items() if k.lower() in _FORWARDED_RESPONSE},
        background=BackgroundTask(answer.aclose),
    )
