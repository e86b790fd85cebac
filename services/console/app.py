"""The console: the platform's one address. Pages for people, `/api/<service>/` for programs.

People sign in with OpenID Connect (authorization code with PKCE) against the provider
named by `OIDC_ISSUER`; every page reads and every form writes through the services'
HTTP APIs with the person's access token, so the console holds no data of its own and
adds no second path to it. The services stay independent processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from starlette.middleware.gzip import GZipMiddleware

from runtime import clock, logs
from runtime.clock import ClockSettings
from runtime.errors import UnauthorizedError
from runtime.http import PAGE_HEADERS, Guard
from runtime.settings import DEV_SESSION_KEY, SafeSettings
from services.console import i18n
from services.console.apis import SERVICES, ApiError, Apis
from services.console.oidc import Provider, SignIn
from services.console.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Sealer,
    Session,
    csrf_ok,
)

log = logs.get(__name__)

HERE = i18n.HERE


class ConsoleSettings(ClockSettings, SafeSettings):
    """The console's environment (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    http_host: str = Field(default="127.0.0.1", description="Address the console listens on")
    http_port: int = Field(default=8080, description="Port of the platform's one address")
    public_url: str = Field(
        default="", description="The address people use, e.g. https://cadres.example.org (empty: as requested)"
    )
    registry_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of the registry service")
    training_url: str = Field(default="http://127.0.0.1:8002", description="Base URL of the training service")
    assessment_url: str = Field(default="http://127.0.0.1:8003", description="Base URL of the assessment service")
    notify_url: str = Field(default="http://127.0.0.1:8004", description="Base URL of the notify service")
    audit_url: str = Field(default="http://127.0.0.1:8005", description="Base URL of the audit service")
    selection_url: str = Field(default="http://127.0.0.1:8006", description="Base URL of the selection service")
    oidc_issuer: str = Field(default="", description="Issuer URL of the identity provider people sign in with")
    oidc_client_id: str = Field(default="cadre-console", description="The console's client id at the provider")
    oidc_discovery_url: str = Field(
        default="",
        description="Where the console reads the provider's discovery document, when not under the issuer URL"
        " (a container network)",
    )
    session_key: SecretStr = Field(
        default=SecretStr(DEV_SESSION_KEY), description="Key that seals session cookies (AES-GCM)"
    )
    session_hours: float = Field(default=10.0, gt=0, description="Longest a session lasts, whatever the provider says")
    cookie_secure: bool = Field(default=True, description="Mark cookies Secure (browsers accept them on loopback)")
    log_level: str = Field(default="INFO", description="Log level")
    log_json: bool = Field(default=True, description="JSON logs (false: console)")
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, description="How long SIGTERM may take")

    def service_urls(self) -> dict[str, str]:
        """Service name → base URL."""
        return {name: str(getattr(self, f"{name}_url")) for name in SERVICES}


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
            query=request.url.query, **context,
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
        return Session(
            user=me["user"],
            name=me["name"],
            role=me["role"],
            org_path=me["org_path"],
            org_code=me["org_code"],
            org_name=me["org_name"],
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


def create_app(  # noqa: C901, PLR0915 - the wiring of every route
    settings: ConsoleSettings | None = None, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> FastAPI:
    """The console's ASGI app; `transports` reach services in the same process instead (tests)."""
    settings = settings or ConsoleSettings()
    transports = transports or {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            clients = {
                name: await stack.enter_async_context(
                    httpx.AsyncClient(base_url=url, timeout=60, limits=limits, transport=transports.get(name))
                )
                for name, url in settings.service_urls().items()
            }
            app.state.console = Console(settings, http, Apis(clients))
            yield

    app = FastAPI(
        title="Reserve cadre console",
        description="The platform's front door: pages for people, /api/<service>/ for programs.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    # The runtime's rules of every request: size, control characters, headers, a 500 that keeps the connection.
    app.add_middleware(Guard, service="console", headers=PAGE_HEADERS)

    @app.middleware("http")
    async def renew_session(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        renewed: Session | None = getattr(request.state, "renewed", None)
        if renewed is not None:
            console = console_of(request)
            console.set_cookie(response, SESSION_COOKIE, console.sealer.seal_session(renewed), _max_age(renewed))
        if request.url.path.startswith("/vendor/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(SignInRequiredError)
    async def sign_in_first(request: Request, _: Exception) -> Response:
        target = "/signin?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(ScreenError)
    async def screen_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ScreenError)
        return console_of(request).render(request, "error.html", status=error.status, status_code=error.status,
                                          detail=error.detail)  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        status = error.status if error.status in {403, 404, 409, 422} else 502
        return console_of(request).render(request, "error.html", status=status, status_code=status,
                                          detail=error.detail)  # fmt: skip

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(console: ConsoleDep) -> Response:
        checks = {}
        for name, client in console.apis.clients.items():
            try:
                checks[name] = (await client.get("/health/live", timeout=2)).status_code == httpx.codes.OK
            except httpx.HTTPError:
                checks[name] = False
        ok = all(checks.values())
        return Response(
            content=f'{{"ready": {str(ok).lower()}}}', media_type="application/json", status_code=200 if ok else 503
        )

    @app.get("/signin", include_in_schema=False)
    async def signin(request: Request, console: ConsoleDep, next: str = "/") -> Response:  # noqa: A002 - the query's name
        if console.provider is None:
            raise ScreenError(503, "no identity provider is configured (OIDC_ISSUER)")
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        attempt = SignIn.begin(target)
        url = await console.provider.authorization_url(
            attempt, console.redirect_uri(request), console.language(request)
        )
        response = RedirectResponse(url, status_code=303)
        console.set_cookie(response, SIGNIN_COOKIE, console.sealer.seal(SIGNIN_COOKIE, attempt.__dict__), 600)
        return response

    @app.get("/signin/callback", include_in_schema=False)
    async def signin_callback(
        request: Request, console: ConsoleDep, state: str = "", code: str = "", error: str = ""
    ) -> Response:
        remembered = console.sealer.open(SIGNIN_COOKIE, request.cookies.get(SIGNIN_COOKIE))
        if console.provider is None or remembered is None or remembered.get("state") != state or not state:
            raise ScreenError(400, "this sign-in was not started here, or it took too long: please sign in again")
        if error or not code:
            raise ScreenError(401, f"the identity provider did not sign you in ({error or 'no code'})")
        attempt = SignIn(**remembered)
        try:
            tokens = await console.provider.exchange(code, attempt, console.redirect_uri(request))
        except UnauthorizedError as refused:
            raise ScreenError(401, refused.detail) from refused
        ends = clock.now().timestamp() + settings.session_hours * 3600
        try:
            session = await console.actor_session(tokens.access_token, tokens.refresh_token, tokens.expires_at, ends)
        except ApiError as refused:
            await console.provider.end_session(tokens.refresh_token)
            if refused.status == 403:  # noqa: PLR2004
                raise ScreenError(
                    403, "you have no access to this platform yet: an organizer of your unit grants it"
                ) from refused
            raise
        ends_at = datetime.fromtimestamp(ends, tz=UTC).isoformat()
        await console.apis.call(
            "registry", "POST", "/sessions", session.access_token, json={"session_id": session.sid, "ends_at": ends_at}
        )
        log.info("signed in", user=session.user, role=session.role, org_path=session.org_path)
        response = RedirectResponse(attempt.next, status_code=303)
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        console.set_cookie(response, SESSION_COOKIE, console.sealer.seal_session(session), _max_age(session))
        return response

    @app.post("/signout", include_in_schema=False)
    async def signout(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
        await console.apis.call("registry", "DELETE", f"/sessions/{session.sid}", session.access_token)
        if console.provider is not None:
            with contextlib.suppress(httpx.HTTPError):
                await console.provider.end_session(session.refresh_token)
        log.info("signed out", user=session.user)
        request.state.session = None
        response = console.render(request, "signed_out.html")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/language", include_in_schema=False)
    async def language(to: str, next: str = "/") -> Response:  # noqa: A002
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        if to in i18n.LANGUAGES:
            response.set_cookie(i18n.LANGUAGE_COOKIE, to, max_age=365 * 86400, samesite="lax",
                                secure=settings.cookie_secure, path="/")  # fmt: skip
        return response

    @app.post("/csrf-probe", include_in_schema=False)
    async def csrf_probe(session: SessionDep) -> dict[str, str]:
        """Answers only a form that carries its CSRF token (the check every form goes through)."""
        return {"ok": session.user}

    from services.console import frontdoor, screens  # noqa: PLC0415 - they import this module

    app.include_router(frontdoor.router)
    for router in screens.routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for package, folder in VENDOR.items():
        directory = HERE / "node_modules" / package / folder
        app.mount(vendor_url(package), StaticFiles(directory=directory, check_dir=False), name=package)
    return app


VENDOR = {"htmx.org": "dist", "echarts": "dist", "swagger-ui-dist": ""}
"""The npm packages the console serves (package.json pins them), and the folder of each it serves."""


def vendor_url(package: str) -> str:
    """Where the console serves a pinned npm package's files: the version is in the path, so they cache forever."""
    version = orjson.loads((HERE / "package.json").read_bytes())["dependencies"][package]
    return f"/vendor/{package}@{version}"


def _max_age(session: Session) -> int:
    return max(int(session.ends - clock.now().timestamp()), 0)
