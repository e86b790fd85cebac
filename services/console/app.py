"""The console: the platform's one address. Pages for people, `/api/<service>/` for programs.

People sign in with OpenID Connect (authorization code with PKCE) against the provider
named by `OIDC_ISSUER`; every page reads and every form writes through the services'
HTTP APIs with the person's access token, so the console holds no data of its own and
adds no second path to it. The services stay independent processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from runtime import clock, logs
from runtime.errors import UnauthorizedError
from runtime.guard import PAGE_HEADERS, Guard
from services.console import frontdoor, i18n, screens
from services.console.apis import ApiError, Apis
from services.console.oidc import SignIn
from services.console.pages import (
    VENDOR,
    Console,
    ConsoleDep,
    ScreenError,
    SessionDep,
    SignInRequiredError,
    console_of,
    vendor_url,
)
from services.console.screens import links
from services.console.session import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Session,
)
from services.console.settings import ConsoleSettings

log = logs.get(__name__)

HERE = i18n.HERE


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
    uploads = dict.fromkeys(("/links/check", "/links/import", "/links/export"), links.BUNDLE_MAX_BYTES + 1024 * 1024)
    app.add_middleware(Guard, service="console", headers=PAGE_HEADERS, body_limits=uploads)

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

    app.include_router(frontdoor.router)
    for router in screens.routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for package, folder in VENDOR.items():
        directory = HERE / "node_modules" / package / folder
        app.mount(vendor_url(package), StaticFiles(directory=directory, check_dir=False), name=package)
    return app


def _max_age(session: Session) -> int:
    return max(int(session.ends - clock.now().timestamp()), 0)
