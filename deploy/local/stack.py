"""The whole platform on one machine: Kafka, PostgreSQL, every service, the demo organization.

Kafka and PostgreSQL are the project's own local ones (deploy.local.kafka,
deploy.local.postgres) unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL name
others. Each service runs as its own process with the same command its
container image runs (`python -m services.<name>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from deploy.local.ports import free_port
from runtime import clock
from runtime.kafka import ensure_topics, platform_topics
from runtime.settings import DEV_AUTH_SECRET, DEVELOPMENT

if TYPE_CHECKING:
    from services.registry.demo import DemoOrg

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("registry", "training", "assessment", "selection", "notify", "audit", "sync")
"""Every service, in the order they start (and their demos load)."""
CONSOLE_PORT = 8080
"""The console's port under `./dev up` unless CONSOLE_PORT says otherwise: the one address people use."""


def available_services() -> list[str]:
    """The services this checkout can run (those with a `__main__`)."""
    return [name for name in SERVICES if (REPO / "services" / name / "__main__.py").exists()]


def database_dsn(server_dsn: str, database: str) -> str:
    """The DSN of `database` on the server of `server_dsn`."""
    base, _, rest = server_dsn.partition("?")
    prefix = base.rsplit("/", 1)[0] if base.count("/") > 2 else base  # noqa: PLR2004 - scheme://host/db
    return f"{prefix}/{database}" + (f"?{rest}" if rest else "")


async def create_databases(server_dsn: str, names: list[str]) -> None:
    """Create the databases that do not exist yet."""
    conn = await asyncpg.connect(server_dsn)
    try:
        existing = {row[0] for row in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


SERVICE_ROLE = "cadre_service"
"""The login the local services work as: it owns nothing, row-level security binds it (the server's admin owns)."""


def as_service_role(dsn: str) -> str:
    """`dsn` with the service role as its user (and the same password, where the admin has one)."""
    parts = urlsplit(dsn)
    password = f":{parts.password}" if parts.password else ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{SERVICE_ROLE}{password}@{host}"))


async def create_service_role(server_dsn: str) -> None:
    """Create the services' login role on a development server (as its admin), unless it exists."""
    conn = await asyncpg.connect(server_dsn)
    try:
        password = urlsplit(server_dsn).password
        clause = " PASSWORD " + "'" + password.replace("'", "''") + "'" if password else ""
        with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", SERVICE_ROLE)
            if not exists:
                # BYPASSRLS: its system work is exempt; what it reads for an actor runs as cadre_actor (runtime.db).
                await conn.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN BYPASSRLS{clause}")
    finally:
        await conn.close()


def database_name(namespace: str, service: str) -> str:
    """The database of `service` in a stack whose topics are prefixed with `namespace` (`t1.` → `t1_cadre_registry`)."""
    prefix = namespace.rstrip(".").replace(".", "_").replace("-", "_")
    return f"{prefix}_cadre_{service}" if prefix else f"cadre_{service}"


@dataclass
class ServiceProcess:
    """One service running as a child process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str = ""
    """Where its Prometheus metrics are served (a port of their own), if anywhere."""

    def stop(self, timeout: float = 25.0) -> int:
        """SIGTERM, wait for the graceful shutdown, SIGKILL if it does not come."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Stack:
    """What is running, and where."""

    kafka_bootstrap: str
    postgres_dsn: str
    secret: str
    namespace: str
    mail: dict[str, str] = field(default_factory=dict)
    """Notify's SMTP settings (SMTP_HOST, SMTP_PORT) and, for the local sink, MAILDIR."""
    env: dict[str, str] = field(default_factory=dict)
    """Given to every service of the stack (a deployment's topology and key)."""
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    issuer: str = ""
    """The identity provider people sign in with (empty: service tokens only)."""
    console: ServiceProcess | None = None
    own: dict[str, dict[str, str]] = field(default_factory=dict)
    """Given to one service only, by name (a fault harness routes each one through its own proxy)."""

    def urls(self) -> dict[str, str]:
        """Service name → base URL."""
        return {name: svc.url for name, svc in self.services.items()}


def service_env(stack: Stack, name: str, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a service process gets."""
    env = dict(os.environ)
    env.update(
        {
            "ENVIRONMENT": DEVELOPMENT,  # the local stack is development: its published secrets are allowed
            "SERVICE_NAME": name,
            # The services work as a role that owns nothing; the server's admin applies their schemas.
            "DATABASE_URL": as_service_role(database_dsn(stack.postgres_dsn, database_name(stack.namespace, name))),
            "DATABASE_OWNER_URL": database_dsn(stack.postgres_dsn, database_name(stack.namespace, name)),
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "TOPIC_NAMESPACE": stack.namespace,
            "AUTH_SECRET": stack.secret,
            "OIDC_ISSUER": stack.issuer,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "PYTHONPATH": str(REPO),
            **clock.current().environment(),  # the same clock in every process of the stack
            **stack.env,
        }
    )
    env.update(extra or {})
    return env


def start_service(
    stack: Stack, name: str, logdir: Path, extra_env: Mapping[str, str] | None = None, port: int | None = None
) -> ServiceProcess:
    """Start `python -m services.<name>` (the container's entrypoint) as a child process."""
    port = port or free_port()
    metrics_port = free_port() if name != "console" else 0
    logdir.mkdir(parents=True, exist_ok=True)
    log_path = logdir / f"{name}.log"
    env = service_env(stack, name, port, {"METRICS_PORT": str(metrics_port), **(extra_env or {})})
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    running = ServiceProcess(
        name=name,
        url=f"http://127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "",
    )
    if name == "console":
        stack.console = running
    else:
        stack.services[name] = running
    return running


def wait_ready(service: ServiceProcess, timeout: float = 60.0) -> None:
    """Wait until the service answers `/health/ready` with 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            tail = service.log_path.read_text(errors="replace")[-3000:]
            msg = f"{service.name} exited with {service.process.returncode}:\n{tail}"
            raise RuntimeError(msg)
        try:
            response = httpx.get(f"{service.url}/health/ready", timeout=2)
            if response.status_code == httpx.codes.OK:
                return
            last = response.text
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    msg = f"{service.name} not ready after {timeout:.0f} s: {last}"
    raise RuntimeError(msg)


@contextlib.contextmanager
def infrastructure(
    workdir: Path, *, kafka: str | None = None, postgres: str | None = None
) -> Iterator[tuple[str, str]]:
    """Kafka bootstrap and PostgreSQL server DSN: as given, else from the environment, else started here."""
    with contextlib.ExitStack() as stack:
        kafka = kafka or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        postgres = postgres or os.environ.get("DATABASE_URL")
        if kafka is None:
            from deploy.local.kafka import LocalKafka  # noqa: PLC0415 - not needed with an external Kafka

            local_kafka = LocalKafka(workdir / "kafka")
            stack.callback(local_kafka.stop)
            kafka = local_kafka.start()
        if postgres is None:
            from deploy.local.postgres import LocalPostgres  # noqa: PLC0415

            # A temporary directory: the server's user (postgres, when we are root) must reach it,
            # which a checkout under a private home directory would not allow.
            # BACKUP_DIR: archive the WAL there (./dev backup, ./dev restore; docs/operations.md).
            backup_dir = os.environ.get("BACKUP_DIR")
            archive = None
            if backup_dir:
                from deploy.local.backup import prepare  # noqa: PLC0415

                archive = prepare(Path(backup_dir).resolve())
            local_pg = LocalPostgres(archive=archive)
            stack.callback(local_pg.stop)
            postgres = local_pg.start()
        yield kafka, postgres


@contextlib.contextmanager
def identity_provider(workdir: Path, console_port: int) -> Iterator[str]:
    """The issuer people sign in with: OIDC_ISSUER's, or a local Keycloak with the demo organization's people."""
    named = os.environ.get("OIDC_ISSUER")
    if named:
        yield named
        return
    from deploy.local import keycloak  # noqa: PLC0415 - not needed with another provider

    server = keycloak.LocalKeycloak(
        keycloak.realm(keycloak.demo_users(), redirect_uris=[f"http://127.0.0.1:{console_port}/*"]),
        workdir / "keycloak",
    )
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def mail_sink(workdir: Path) -> Iterator[dict[str, str]]:
    """Notify's SMTP server: the one SMTP_HOST names, or a local one that keeps every email in a maildir."""
    if os.environ.get("SMTP_HOST"):
        yield {}
        return
    port = free_port()
    maildir = workdir / "mail"
    for part in ("tmp", "new", "cur"):  # a maildir; the server does not make these in an existing folder
        (maildir / part).mkdir(parents=True, exist_ok=True)
    with (workdir / "mail.log").open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and a dependency's module
            [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox", "-l", f"127.0.0.1:{port}",
             str(maildir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                msg = f"the local SMTP server did not start (see {workdir / 'mail.log'})"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "MAILDIR": str(maildir)}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _own_env(stack: Stack, name: str) -> dict[str, str]:
    """What one service needs beyond the shared environment: notify its mail server, sync the others' URLs."""
    own = dict(stack.own.get(name, {}))
    if name == "notify":
        return {k: v for k, v in stack.mail.items() if k.startswith("SMTP_")} | own
    if name == "sync":  # started last: it applies directives through the others' APIs
        return {"SERVICE_URLS": json.dumps(stack.urls())} | own
    return own


def linked(env: Mapping[str, str]) -> bool:
    """Whether a deployment with this environment has a level above it or below it."""
    return bool(env.get("PARENT_DEPLOYMENT")) or json.loads(env.get("CHILD_DEPLOYMENTS") or "{}") != {}


def restart_service(stack: Stack, name: str) -> ServiceProcess:
    """Start service `name` again (same port, environment and log) once its process has ended.

    Returns at once; `wait_ready` waits for it.
    """
    previous = stack.services[name]
    if previous.process.poll() is None:
        msg = f"{name} is still running (pid {previous.process.pid})"
        raise RuntimeError(msg)
    port = int(previous.url.rsplit(":", 1)[1])
    return start_service(stack, name, previous.log_path.parent, _own_env(stack, name), port=port)


@contextlib.contextmanager
def run_stack(
    workdir: Path,
    *,
    services: list[str] | None = None,
    secret: str = DEV_AUTH_SECRET,
    namespace: str = "",
    kafka: str | None = None,
    postgres: str | None = None,
    env: Mapping[str, str] | None = None,
    console_port: int | None = None,
    own_env: Mapping[str, Mapping[str, str]] | None = None,
    issuer: str | None = None,
    console_env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """Bring the platform up; take it down (console first, then the services) when the block ends.

    `kafka` and `postgres` name servers to use (else the environment's, else started here);
    `env` is given to every service (a deployment's topology, its signing key). With
    `console_port`, people's front door too: the identity provider (a local Keycloak unless
    OIDC_ISSUER names one; `issuer` names a provider already running) and the console on that
    port, with `console_env` besides (its client id at the provider). `own_env` gives one service,
    by name, what only it gets (its own database or broker address, say).
    """
    names = services or available_services()
    with contextlib.ExitStack() as parts:
        bootstrap, server_dsn = parts.enter_context(infrastructure(workdir, kafka=kafka, postgres=postgres))
        mail = parts.enter_context(mail_sink(workdir))
        if issuer is None:
            issuer = parts.enter_context(identity_provider(workdir, console_port)) if console_port else ""
        stack = Stack(
            kafka_bootstrap=bootstrap,
            postgres_dsn=server_dsn,
            secret=secret,
            namespace=namespace,
            mail=mail,
            env=dict(env or {}),
            issuer=issuer,
            own={name: dict(values) for name, values in (own_env or {}).items()},
        )
        asyncio.run(create_databases(server_dsn, [database_name(namespace, name) for name in names]))
        asyncio.run(create_service_role(server_dsn))
        asyncio.run(ensure_topics(bootstrap, platform_topics(namespace)))
        try:
            for name in names:
                start_service(stack, name, workdir / "logs", _own_env(stack, name))
            for service in stack.services.values():
                wait_ready(service)
            if console_port:
                urls = {f"{name.upper()}_URL": service.url for name, service in stack.services.items()}
                if not linked(stack.env):  # the links screen only where there are links
                    urls.pop("SYNC_URL", None)
                front = {**urls, **(console_env or {})}
                wait_ready(start_service(stack, "console", workdir / "logs", front, port=console_port))
            yield stack
        finally:
            if stack.console is not None:
                stack.console.stop()
            for service in reversed(stack.services.values()):
                service.stop()


async def load_demo(
    stack: Stack, *, seed: int = 7, cadres: int = 300, part: Callable[[DemoOrg], DemoOrg] | None = None
) -> dict[str, tuple[int, int]]:
    """Load the demo organization (or `part` of it) through each running service's API, in service order."""
    return await load_demo_at(stack.urls(), stack.secret, seed=seed, cadres=cadres, part=part)


async def load_demo_at(
    urls: Mapping[str, str],
    secret: str,
    *,
    seed: int = 7,
    cadres: int = 300,
    part: Callable[[DemoOrg], DemoOrg] | None = None,
) -> dict[str, tuple[int, int]]:
    """Load the demo organization through the services at `urls` (name → base URL), in service order."""
    from services.registry import demo  # noqa: PLC0415 - the plan every service's demo builds on

    org = demo.plan(seed, cadres=cadres)
    if part is not None:
        org = part(org)
    token = demo.root_token(secret, org)
    results: dict[str, tuple[int, int]] = {}
    for name in sorted(urls, key=lambda n: SERVICES.index(n) if n in SERVICES else len(SERVICES)):
        module = (
            importlib.import_module(f"services.{name}.demo")
            if (REPO / "services" / name / "demo.py").exists()
            else None
        )
        if module is None:
            continue
        async with httpx.AsyncClient(base_url=urls[name], timeout=60) as client:
            results[name] = await module.load(client, token, org)
    return results
