"""What every page handler needs: the console (templates, provider, services, sealer), the signed-in session."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Annotated, Any

import httpx
import orjson
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from runtime import clock, logs
from runtime.errors import UnauthorizedError
from services.console import i18n
from services.console.apis import ApiError, Apis
from services.console.oidc import Provider
from services.console.session import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Sealer, Session, csrf_ok
from services.console.settings import ConsoleSettings

log = logs.get(__name__)

HERE = i18n.HERE


class SignInRequiredError(Exception):
    """No session (or it ended): the person signs in first."""


class ScreenError(Exception):
    """A page cannot be shown: 403, 404 or the service's own refusal."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Console:
    """What every page handler needs: settings, templates, the provider, the services, the sealer."""

    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient, apis: Apis) -> None:
        self.settings = settings
        self.http = http
        self.apis = apis
        self.provider = (
            Provider(settings.oidc_issuer, settings.oidc_client_id, http, discovery=settings.oidc_discovery_url)
            if settings.oidc_issuer
            else None
        )
        self.sealer = Sealer(settings.session_key.get_secret_value())
        self.templates: dict[str, Environment] = i18n.environments()
        for env in self.templates.values():
            env.globals["vendor"] = vendor_url

    def language(self, request: Request) -> str:
        """The language of this request."""
        return i18n.chosen(request.cookies.get(i18n.LANGUAGE_COOKIE), request.headers.get("accept-language"))

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page (or, for htmx, the fragment it asked for) in the person's language."""
        language = self.language(request)
        session: Session | None = getattr(request.state, "session", None)
        page = self.templates[language].get_template(template).render(
            request=request, session=session, csrf_field=CSRF_FIELD, path=request.url.path,
            query=request.url.query, linked="sync" in self.apis.clients, **context,
        )  # fmt: skip
        return HTMLResponse(page, status_code=status)

    def redirect_uri(self, request: Request) -> str:
        """Where the provider sends people back to."""
        base = self.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        return f"{base}/signin/callback"

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        """A Secure, HttpOnly, SameSite=Lax cookie."""
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, secure=self.settings.cookie_secure, samesite="lax", path="/"
        )

    async def actor_session(self, access_token: str, refresh_token: str, expires: float, ends: float) -> Session:
        """A session for these tokens, with the actor the registry's grants make of them."""
        me = await self.apis.get("registry", "/access/me", access_token)
        leads = False
        if me["role"] != "cadre":  # a cadre's own grant reads no unit (ADR 0028)
            with contextlib.suppress(ApiError):
                unit = await self.apis.get("registry", f"/org-units/{me['org_code']}", access_token)
                leads = (unit.get("leader") or {}).get("user_id") == me["user"]
        return Session(
            user=me["user"],
            name=me["name"],
            role=me["role"],
            org_path=me["org_path"],
            org_code=me["org_code"],
            org_name=me["org_name"],
            leads=leads,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires=expires,
            ends=ends,
        )


def console_of(request: Request) -> Console:
    """FastAPI dependency: the console."""
    running: Console = request.app.state.console
    return running


ConsoleDep = Annotated[Console, Depends(console_of)]


async def signed_in(request: Request, console: ConsoleDep) -> Session:
    """FastAPI dependency: the session of this request, its access token refreshed when it is about to expire.

    A POST must carry the session's CSRF token (form field or header), or it is refused.
    """
    session = console.sealer.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequiredError
    if session.access_expires - 30 < clock.now().timestamp():
        if console.provider is None:
            raise SignInRequiredError
        try:
            tokens = await console.provider.refresh(session.refresh_token)
            fresh = await console.actor_session(
                tokens.access_token, tokens.refresh_token, tokens.expires_at, session.ends
            )
        except (UnauthorizedError, ApiError, httpx.HTTPError) as error:
            log.info("session ended", user=session.user, reason=str(error))
            raise SignInRequiredError from error
        session = replace(fresh, csrf=session.csrf, sid=session.sid)
        request.state.renewed = session
    try:  # the registry keeps the session open until sign-out: a copied cookie ends with it
        await console.apis.call("registry", "GET", f"/sessions/{session.sid}", session.access_token)
    except ApiError as ended:
        if ended.status >= 500:  # noqa: PLR2004 - the registry does not answer: no page, but still signed in
            raise ScreenError(503, ended.detail) from ended
        log.info("session ended", user=session.user, reason=ended.detail)
        raise SignInRequiredError from ended
    if request.method not in {"GET", "HEAD"}:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            given = str((await request.form()).get(CSRF_FIELD) or "") or None
        if not csrf_ok(session, given):
            raise ScreenError(403, "the form is missing its CSRF token, or it belongs to another session")
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(signed_in)]


VENDOR = {"htmx.org": "dist", "echarts": "dist", "swagger-ui-dist": ""}
"""The npm packages the console serves (package.json pins them), and the folder of each it serves."""


def vendor_url(package: str) -> str:
    """Where the console serves a pinned npm package's files: the version is in the path, so they cache forever."""
    version = orjson.loads((HERE / "package.json").read_bytes())["dependencies"][package]
    return f"/vendor/{package}@{version}"
