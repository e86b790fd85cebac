"""Keycloak, the local OpenID Connect provider people sign in with, without Docker.

Keycloak's server distribution comes from Maven Central through `mvn` once, unpacked
into a git-ignored cache (`.cache/keycloak/<version>/dist`). Each server gets its own
home directory (its database, its realm import) whose `lib`, `conf`, `themes` and
`providers` link to the cached distribution, so the one-time build step that
`start-dev` performs (about 40 s on 2 cores) is kept in the cache: later starts only
boot. A file lock makes a concurrent first start wait for that build.

The server runs `start-dev` on free loopback ports with a realm imported from a JSON
document (`demo_realm` makes the demo organization's), and `start` returns once the
realm's discovery document answers. `kc.sh` stays the parent of the JVM and forwards
SIGTERM to it: `stop` signals the process `kc.sh` runs as.

    python -m deploy.local.keycloak            # the demo realm in the foreground until Ctrl-C
    python -m deploy.local.keycloak fetch      # only fetch and unpack the distribution
    python -m deploy.local.keycloak realm --redirect http://localhost:8080/*   # the demo realm's JSON
    python -m deploy.local.keycloak realm --output DIR/cadre-pool-realm.json     # into a file (compose's realm job)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deploy.local import ManagedProcess, death_signal_prefix, fetch_only, jvm, serve, tail
from deploy.local.ports import accepts, free_ports

KEYCLOAK_VERSION = "26.7.3"
REALM = "cadre-pool"
"""The realm of the local provider."""
CONSOLE_CLIENT = "cadre-console"
"""The console's client: public, authorization code with PKCE (S256)."""
AUDIENCE = "cadre-pool"
"""The audience the provider puts in access tokens for the platform's APIs."""
DEV_ADMIN_PASSWORD = "admin-dev-only"  # noqa: S105 - the local provider's bootstrap admin, development only
DEMO_PASSWORD = "cadre-demo"  # noqa: S105 - the demo users' password, local development only
_DIRECTORIES = ("lib", "conf", "themes", "providers")


def ensure_distribution(version: str = KEYCLOAK_VERSION) -> Path:
    """The unpacked server distribution of Keycloak `version` (its `bin/kc.sh` and `lib/`), fetched on first use."""
    coordinates = f"org.keycloak:keycloak-quarkus-dist:{version}:zip"
    return jvm.ensure_distribution("keycloak", version, coordinates, top=f"keycloak-{version}")


def java_home() -> str | None:
    """`$JAVA_HOME` when it holds a `bin/java`; otherwise kc.sh finds `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    return home if home and (Path(home) / "bin" / "java").is_file() else None


@dataclass(frozen=True)
class RealmUser:
    """A person who can sign in to the local provider."""

    username: str
    subject: str
    """The provider's stable id of the user (the access token's `sub`)."""
    name: str
    password: str = DEMO_PASSWORD


def realm(
    users: Sequence[RealmUser],
    *,
    redirect_uris: Sequence[str] = ("http://127.0.0.1:8080/*", "http://localhost:8080/*"),
    name: str = REALM,
    clients: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A realm document: the console's public PKCE client, an audience for the APIs, and `users`.

    `clients` adds more consoles, client id → redirect URIs (one per level of `./dev up --levels`).

    Access tokens live five minutes (the console refreshes them); an SSO session ends
    after 30 idle minutes or 10 hours. Roles stay out of the provider: who acts where
    with which role is the platform's grant, kept in the registry.
    """
    return {
        "realm": name,
        "enabled": True,
        "sslRequired": "none",
        "loginWithEmailAllowed": False,
        "registrationAllowed": False,
        "resetPasswordAllowed": False,
        "editUsernameAllowed": False,
        "bruteForceProtected": True,
        "internationalizationEnabled": True,
        "supportedLocales": ["zh-CN", "en"],
        "defaultLocale": "zh-CN",
        "accessTokenLifespan": 300,
        "ssoSessionIdleTimeout": 1800,
        "ssoSessionMaxLifespan": 36000,
        "clients": [
            console_client(CONSOLE_CLIENT, redirect_uris),
            *(console_client(client_id, uris) for client_id, uris in (clients or {}).items()),
        ],
        "users": [
            {
                "id": user.subject,
                "username": user.username,
                "firstName": user.name,
                "lastName": "-",
                "email": f"{user.username}@qingshan.example.org",
                "emailVerified": True,
                "enabled": True,
                "credentials": [{"type": "password", "value": user.password, "temporary": False}],
            }
            for user in users
        ],
    }


def console_client(client_id: str, redirect_uris: Sequence[str]) -> dict[str, Any]:
    """A console's client: public, authorization code with PKCE (S256), its tokens naming the platform's audience."""
    return {
        "clientId": client_id,
        "name": "Reserve cadre console",
        "enabled": True,
        "publicClient": True,
        "standardFlowEnabled": True,
        "directAccessGrantsEnabled": False,
        "implicitFlowEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": False,
        "fullScopeAllowed": False,
        "redirectUris": list(redirect_uris),
        "webOrigins": ["+"],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": "+",
        },
        "protocolMappers": [
            {
                "name": "platform audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {
                    "included.custom.audience": AUDIENCE,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                },
            }
        ],
    }


def _build_key(version: str) -> str:
    """What identifies the cached build: the version and the build options `start-dev` implies."""
    return hashlib.sha256(f"{version}|start-dev|dev-file".encode()).hexdigest()[:16]


class LocalKeycloak(ManagedProcess):
    """One Keycloak server (`start-dev`) on loopback ports with one imported realm, owned by this object.

    Without `workdir`, a temporary directory holds its home and is removed by `stop`.
    """

    _what = "Keycloak"
    _leader_only = True

    def __init__(
        self,
        realm_document: dict[str, Any],
        workdir: Path | None = None,
        *,
        heap: str = "256m",
        admin_password: str = DEV_ADMIN_PASSWORD,
        version: str = KEYCLOAK_VERSION,
    ) -> None:
        self._realm = realm_document
        self._given = workdir.resolve() if workdir is not None else None
        self._workdir: Path | None = None
        self._heap = heap
        self._admin_password = admin_password
        self._version = version
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.management_port = 0
        self.started_in = 0.0
        """Seconds from launch to a ready realm (the last start)."""
        self.built = False
        """Whether the last start ran the one-time build step."""

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, once started."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        """The realm's issuer URL (what `iss` says in its tokens)."""
        return f"{self.url}/realms/{self._realm['realm']}"

    def start(self, timeout: float = 240.0) -> str:
        """Start the server; return the realm's issuer once its discovery document answers."""
        if self._process is not None:
            msg = f"Keycloak is already started on {self.url}"
            raise RuntimeError(msg)
        deadline = time.monotonic() + timeout
        dist = ensure_distribution(self._version)
        self._workdir = self._given or Path(tempfile.mkdtemp(prefix="cadre-keycloak-"))
        try:
            home = self._home(dist)
            with self._build_lock(dist) as must_build:
                self.built = must_build
                self.port, self.management_port = free_ports(2)
                launched = time.monotonic()
                self._launch(home)
                self._wait_ready(deadline, timeout)
                self.started_in = time.monotonic() - launched
                if must_build:
                    (dist.parent / f"built-{_build_key(self._version)}").write_text(f"{self.started_in:.1f} s\n")
        except BaseException:
            self.stop()
            raise
        return self.issuer

    @contextlib.contextmanager
    def _build_lock(self, dist: Path) -> Iterator[bool]:
        """Hold the build lock through a first start (it builds into the shared `lib/`); yield whether it builds."""
        marker = dist.parent / f"built-{_build_key(self._version)}"
        if marker.exists():
            yield False
            return
        with (dist.parent / ".build-lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield not marker.exists()

    def _home(self, dist: Path) -> Path:
        home = self.workdir / "home"
        shutil.rmtree(home, ignore_errors=True)
        (home / "bin").mkdir(parents=True)
        # kc.sh finds its home from its own resolved path: a copy, not a link, makes this directory the home.
        for script in ("kc.sh",):
            shutil.copy2(dist / "bin" / script, home / "bin" / script)
        for name in _DIRECTORIES:
            (home / name).symlink_to(dist / name, target_is_directory=True)
        imports = home / "data" / "import"
        imports.mkdir(parents=True)
        (imports / f"{self._realm['realm']}-realm.json").write_text(json.dumps(self._realm, ensure_ascii=False))
        return home

    def _launch(self, home: Path) -> None:
        env = dict(os.environ)
        env.update(
            {
                "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
                "KC_BOOTSTRAP_ADMIN_PASSWORD": self._admin_password,
                "JAVA_OPTS_KC_HEAP": f"-Xms64m -Xmx{self._heap}",
            }
        )
        env.pop("JAVA_OPTS", None)
        if java_home() is None:
            env.pop("JAVA_HOME", None)
        command = [
            *death_signal_prefix("TERM"),
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--http-host=127.0.0.1",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            "--import-realm",
            "--log-level=WARN,org.keycloak.quarkus.runtime.KeycloakMain:INFO",
        ]
        with (self.workdir / "keycloak.log").open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - our copy of kc.sh, fixed arguments
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=home, start_new_session=True,
            )  # fmt: skip

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        discovery = f"{self.issuer}/.well-known/openid-configuration"
        last = "nothing listens yet"
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                msg = f"Keycloak exited with code {code} while starting"
                raise self._failure(msg)
            if accepts(self.port):
                try:
                    answer = httpx.get(discovery, timeout=2)
                    if answer.status_code == httpx.codes.OK:
                        return
                    last = f"{answer.status_code} from {discovery}"
                except httpx.HTTPError as error:
                    last = repr(error)
            if time.monotonic() > deadline:
                msg = f"Keycloak did not become ready in {timeout:.0f} s ({last})"
                raise self._failure(msg)
            time.sleep(0.25)

    def _failure(self, message: str) -> RuntimeError:
        return RuntimeError(f"{message}; last lines of keycloak.log:\n{tail(self.workdir / 'keycloak.log')}")


def demo_users() -> list[RealmUser]:
    """The demo organization's people who sign in (their grants come from the registry's demo)."""
    from services.registry import demo  # noqa: PLC0415 - the demo organization is the registry's

    return [RealmUser(p.login, p.subject, p.name) for p in demo.people(demo.plan())]


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.local.keycloak [fetch] [--workdir DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.keycloak",
        description="Run the local OpenID Connect provider with the demo realm until SIGINT/SIGTERM, or only fetch it.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "fetch", "realm"], default="run")
    parser.add_argument(
        "--redirect", action="append", help="a redirect URI the console may use (realm; default: port 8080 on loopback)"
    )
    parser.add_argument(
        "--people",
        choices=["demo", "none"],
        default="demo",
        help="realm: with the demo organization's people (their password is the demo one), or none",
    )
    parser.add_argument("--output", type=Path, help="write the realm's JSON to this file (realm; default: stdout)")
    parser.add_argument("--workdir", type=Path, help="keep the server's home here (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for readiness (default: 240)")
    args = parser.parse_args(argv)
    if args.action == "realm":  # the demo realm's JSON, for a Keycloak run elsewhere (a container)
        document = realm(
            demo_users() if args.people == "demo" else [],
            redirect_uris=args.redirect or ["http://127.0.0.1:8080/*", "http://localhost:8080/*"],
        )
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8")
        return 0
    if args.action == "fetch":
        return fetch_only(ensure_distribution)
    server = LocalKeycloak(realm(demo_users()), args.workdir)
    return serve(server, lambda: f"OIDC_ISSUER={server.issuer}", args.timeout)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
