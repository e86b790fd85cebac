"""The whole platform in containers, tried end to end (`./dev containers`, and tests/integration/test_containers.py).

One run: build every image from deploy/docker/Dockerfile, `docker compose up --wait` the
compose file (with the stand-ins where the official images are absent), load the demo
through the `demo` profile, then prove it works through the containers only: every
container healthy, the services and the console running as uid 10001 on a read-only root; a
demo person signs in through the containerised Keycloak to the console and sees the pool of
their county, and only that; a nomination reaches
training's and audit's projections and the leader's email reaches the mail catcher;
`verify` finds every service's record intact; registry and audit killed (SIGKILL) right
after a burst of nominations and started again, after which every nomination is in
training and audit exactly once and mailed exactly once. Then everything is taken down,
volumes included. Secrets are generated for the run (an env file under `.cache/`,
removed at the end), never the development defaults.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import httpx

from contracts.envelope import Actor, Role
from deploy.containers import images
from deploy.containers.engine import Engine, compose_binary, engine, mailpit_binary
from deploy.local.kafka import ensure_jars, new_cluster_id
from deploy.local.keycloak import KEYCLOAK_VERSION, ensure_distribution
from deploy.local.ports import free_ports
from deploy.local.signin import Browserish, console_sign_in
from deploy.local.stack import SERVICES
from deploy.paths import RUN_FILES
from deploy.validate import COMPOSE_FILE
from runtime import checkpoint, clock
from runtime.auth import issue_token

if TYPE_CHECKING:
    from services.registry.demo import DemoOrg

STANDINS_FILE: Final = COMPOSE_FILE.with_name("standins.yaml")
PROJECT: Final = "cadre-pool-check"
OFFICIAL_IMAGES: Final = ("python:3.11.14-slim-bookworm", "apache/kafka:4.3.1", "postgres:15.15-bookworm",
                          "axllent/mailpit:v1.27.11", f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}")  # fmt: skip
"""Used (without any pull) when all are already in the engine; otherwise the stand-ins are built."""
BURST: Final = 20
"""Nominations sent just before registry and audit are killed."""
SERVICE_UID: Final = "10001"
HARDENED: Final = (*SERVICES, "console")
"""The containers of the project's own image: uid 10001, read-only root."""
ONE_SHOT: Final = ("topics", "realm")
"""Jobs that run once at `up` and exit 0."""
SIGNS_IN: Final = "organizer.county"
"""The demo person who signs in to the console through Keycloak."""
T = TypeVar("T")


@dataclass
class Report:
    """What a run measured and found (figures for docs/operations.md)."""

    versions: dict[str, str] = field(default_factory=dict)
    images: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as text."""
        out = [f"versions: {', '.join(f'{k} {v}' for k, v in self.versions.items())}; images: {self.images}"]
        out += [f"{step}: {seconds:.1f} s" for step, seconds in self.seconds.items()]
        out += [f"image {name}: {size / 1e6:.0f} MB" for name, size in sorted(self.image_sizes.items())]
        out += [f"memory {name}: {size / 2**20:.0f} MiB" for name, size in sorted(self.memory.items())]
        out.append(f"memory in all: {sum(self.memory.values()) / 2**20:.0f} MiB")
        out += [f"ok: {check}" for check in self.checks]
        return out


class Timer:
    """Seconds per step, into a report."""

    def __init__(self, report: Report) -> None:
        self.report = report

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        """Time the block as `step`."""
        started = time.monotonic()
        self.report.seconds[step] = 0.0  # in the report in the order the steps began
        yield
        self.report.seconds[step] = time.monotonic() - started


@dataclass
class Compose:
    """`docker compose` for this run's project, files and env file, against one engine."""

    engine: Engine
    files: list[Path]
    env_file: Path
    overridden: frozenset[str]

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a compose command; its result."""
        command = [str(compose_binary()), "--project-name", PROJECT, "--env-file", str(self.env_file)]
        for file in self.files:
            command += ["-f", str(file)]
        # The caller's variables would win over the env file's: leave out the ones the run sets.
        env = {k: v for k, v in self.engine.env().items() if k not in self.overridden}
        return subprocess.run(  # noqa: S603 - our compose binary and arguments
            [*command, *args], capture_output=True, text=True, check=False, env=env, timeout=timeout
        )

    def check(self, *args: str, timeout: float = 900) -> str:
        """Run a compose command; its output, or a RuntimeError with the output and the stack's logs."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-40:])
            msg = f"docker compose {' '.join(args[:4])} failed ({done.returncode}):\n{output}\n{self.logs()}"
            raise RuntimeError(msg)
        return done.stdout

    def logs(self, lines: int = 30) -> str:
        """The last lines of every container's log."""
        done = self.run("--profile", "demo", "logs", "--no-color", "--tail", str(lines), timeout=60)
        return f"--- container logs (last {lines} lines each) ---\n{done.stdout}{done.stderr}"

    def containers(self) -> list[dict[str, Any]]:
        """`compose ps --all` as dicts (one JSON object per line)."""
        out = self.check("ps", "--all", "--format", "json", timeout=60)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def choose_images(engine: Engine, wanted: str) -> str:
    """`official` when asked, or when every official image is already there; else `standins`."""
    if wanted != "auto":
        return wanted
    present = all(engine.docker("image", "inspect", image).returncode == 0 for image in OFFICIAL_IMAGES)
    return "official" if present else "standins"


def run(images_wanted: str = "auto", *, keep: bool = False) -> Report:
    """Build, bring up, try and take down the platform in containers; the report, or a RuntimeError."""
    report = Report()
    timer = Timer(report)
    with contextlib.ExitStack() as stack:
        with timer("engine start"):
            docker = stack.enter_context(engine())
        report.versions = docker.versions()
        report.images = choose_images(docker, images_wanted)
        with timer("prepared: Go builds beside downloads and stand-in images"):
            _prepare(docker, report, standins=report.images == "standins")
        report.versions["compose"] = _compose_version()
        compose = stack.enter_context(_project(docker, report, keep=keep))
        _exercise(compose, docker, report, timer)
    return report


def _prepare(docker: Engine, report: Report, *, standins: bool) -> None:
    """Make what the builds need in two lanes side by side: Go builds on the CPU, downloads and apt on the network."""

    def timed(name: str, task: Callable[[], object]) -> None:
        started = time.monotonic()
        task()
        report.seconds[f"  {name}"] = time.monotonic() - started

    def go_builds() -> None:
        timed("compose binary (Go build)", compose_binary)
        if standins:
            timed("mailpit binary (Go build)", mailpit_binary)

    def downloads() -> None:
        timed("wheels", images.wheels)
        if standins:
            timed("kafka jars", ensure_jars)
            timed("keycloak distribution", ensure_distribution)
            timed("debootstrap root", images.debian_rootfs)
            timed(
                "python, kafka, postgres stand-ins",
                lambda: images.build_standins(docker, ["python", "kafka", "postgres"]),
            )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(go_builds), pool.submit(downloads)]:
            future.result()
    if standins:
        timed("mailpit stand-in", lambda: images.build_standins(docker, ["mailpit"]))
        timed("keycloak stand-in", lambda: images.build_standins(docker, ["keycloak"]))


def _compose_version() -> str:
    done = subprocess.run(  # noqa: S603 - our compose binary
        [str(compose_binary()), "version", "--short"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@contextlib.contextmanager
def _project(docker: Engine, report: Report, *, keep: bool) -> Iterator[Compose]:
    """The compose project with this run's secrets and ports; down with its volumes at the end."""
    folder = RUN_FILES / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    env_file = folder / f"{PROJECT}.env"
    values = _generated_settings()
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    files = [COMPOSE_FILE, *([STANDINS_FILE] if report.images == "standins" else [])]
    compose = Compose(docker, files, env_file, frozenset(values))
    # What a run that was killed left (its containers, and volumes holding another run's secrets and
    # Kafka cluster id) goes first: the engine's data root is the machine's, shared by every clone.
    compose.run("--profile", "demo", "down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)
    try:
        yield compose
    finally:
        if not keep:
            compose.run("--profile", "demo", "down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)
            env_file.unlink(missing_ok=True)


def _generated_settings() -> dict[str, str]:
    ports = free_ports(len(SERVICES) + 3)
    values = {
        "AUTH_SECRET": secrets.token_hex(32),
        "CHECKPOINT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "WEBHOOK_SECRET": secrets.token_hex(32),
        "PERSONAL_DATA_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "SERVICE_DB_PASSWORD": secrets.token_hex(16),
        "SESSION_KEY": secrets.token_hex(32),
        "KEYCLOAK_ADMIN_PASSWORD": secrets.token_hex(16),
        "REALM_PEOPLE": "demo",  # the demo organization's people sign in (the check loads the demo)
        "KAFKA_CLUSTER_ID": new_cluster_id(),
        "DEPLOYMENT_ID": "compose_check",
        "CHECKPOINT_INTERVAL_SECONDS": "5",  # so that verify checks signed checkpoints too
        "MAIL_UI_PORT": str(ports[-1]),
        "CONSOLE_PORT": str(ports[-2]),
        "KEYCLOAK_PORT": str(ports[-3]),
        **clock.current().environment(),  # the stack runs on the caller's clock (a test's instant)
    }
    values.update({f"{name.upper()}_PORT": str(port) for name, port in zip(SERVICES, ports, strict=False)})
    return values


def _settings(compose: Compose) -> dict[str, str]:
    return dict(line.split("=", 1) for line in compose.env_file.read_text().splitlines() if "=" in line)


def _exercise(compose: Compose, docker: Engine, report: Report, timer: Timer) -> None:
    with timer("build every image"):
        compose.check("--profile", "demo", "build")
    with timer("compose up until all healthy"):
        compose.check("up", "--detach", "--wait", "--wait-timeout", "300")
    report.checks.append(_all_healthy(compose))
    report.checks.append(_hardened(compose, docker))
    with timer("demo loaded through the containers"):
        compose.check("--profile", "demo", "run", "--rm", "demo")
    settings = _settings(compose)
    api = Api(settings)
    with timer("a demo person signs in to the console through Keycloak"):
        report.checks.append(_signed_in(settings, api.org))
    report.checks.append(api.nomination_travels())
    report.checks.append(_verified(compose, settings, signed=False))
    report.checks.append(_kill_and_restart(compose, api))
    time.sleep(6)  # one checkpoint interval: every service has signed its chain head since the last events
    report.checks.append(_verified(compose, settings, signed=True))
    report.checks.append(_all_healthy(compose))
    report.memory = _memory(compose, docker)
    names = [f"{PROJECT}-{name}" for name in (*HARDENED, "topics", "realm", "demo")]
    report.image_sizes = images.image_sizes(docker, names)
    if report.images == "standins":
        report.image_sizes |= images.image_sizes(docker, [*images.STANDINS.values(), images.DEBIAN_IMAGE])


def _all_healthy(compose: Compose, within: float = 120.0) -> str:
    """Every container healthy (the one-shot jobs exited 0), waiting up to `within` seconds for it.

    A health probe runs every 5 s and counts as failed after 3: on a busy machine a service that is
    well can read "unhealthy" for a few probes, so the state is watched for a while, not read once.
    """
    deadline = time.monotonic() + within
    while True:
        problems = []
        for container in compose.containers():
            name, state, health = container["Service"], container["State"], container.get("Health", "")
            if name in ONE_SHOT:
                if state != "exited" or container.get("ExitCode") != 0:
                    problems.append(f"{name}: {state}, exit code {container.get('ExitCode')}")
            elif state != "running" or health != "healthy":
                problems.append(f"{name}: {state} {health}".strip())
        if not problems:
            return f"every container healthy (the one-shot jobs {', '.join(ONE_SHOT)} exited 0)"
        if time.monotonic() > deadline:
            msg = f"not healthy: {'; '.join(problems)}\n{compose.logs()}"
            raise RuntimeError(msg)
        time.sleep(2)


def _hardened(compose: Compose, docker: Engine) -> str:
    for name in HARDENED:
        found = json.loads(docker.check("inspect", f"{PROJECT}-{name}-1"))[0]
        user, read_only = found["Config"]["User"], found["HostConfig"]["ReadonlyRootfs"]
        if not user.startswith(f"{SERVICE_UID}:") or read_only is not True:
            msg = f"{name} runs as {user!r}, read-only root: {read_only}"
            raise RuntimeError(msg)
        probe = "id -u; touch /app/written 2>&1 || true; touch /tmp/written && echo tmp-writable"
        said = compose.check("exec", "-T", name, "sh", "-c", probe, timeout=60)
        if said.split()[0] != SERVICE_UID or "Read-only file system" not in said or "tmp-writable" not in said:
            msg = f"{name}: expected uid {SERVICE_UID}, a read-only /app and a writable /tmp: {said!r}"
            raise RuntimeError(msg)
    return f"every service and the console run as uid {SERVICE_UID} on a read-only root (only /tmp writable)"


def _signed_in(settings: dict[str, str], org: DemoOrg) -> str:
    """A demo person signs in through Keycloak's loopback port to the console's, and sees their county's pool."""
    from services.registry import demo  # noqa: PLC0415 - as in Api

    person = next(p for p in demo.people(org) if p.user_id == SIGNS_IN)
    page, asked_again = asyncio.run(_sign_in_and_out(f"http://127.0.0.1:{settings['CONSOLE_PORT']}", SIGNS_IN))
    if page.status_code != httpx.codes.OK or not str(page.url).endswith("/pool"):
        msg = f"{SIGNS_IN} did not reach the pool: {page.status_code} {page.url}\n{page.text[:500]}"
        raise RuntimeError(msg)
    shown = [c for c in org.cadres if str(c.cadre_id) in page.text]
    outside = [c for c in shown if not c.unit.path.startswith(person.unit.path)]
    if not shown or outside:
        msg = f"{SIGNS_IN}'s pool shows {len(shown)} demo cadres, {len(outside)} outside {person.unit.path}"
        raise RuntimeError(msg)
    if not asked_again:
        msg = f"after signing out, Keycloak did not ask {SIGNS_IN} for the password again (its session lived on)"
        raise RuntimeError(msg)
    return (
        f"{SIGNS_IN} signed in through the containerised Keycloak to the console and saw {len(shown)} cadres "
        f"of the pool, none outside {person.unit.path}; signed out, Keycloak asked for the password again"
    )


async def _sign_in_and_out(console: str, username: str) -> tuple[httpx.Response, bool]:
    """The pool page after signing in; then sign out, and whether the provider asks for the password again."""
    client = Browserish(base_url=console)
    try:
        ready = await client.get("/health/ready")
        if ready.status_code != httpx.codes.OK:
            msg = f"the console is not ready: {ready.status_code} {ready.text}"
            raise RuntimeError(msg)
        page = await console_sign_in(client, username)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if page.status_code != httpx.codes.OK or csrf is None:
            return page, False
        await client.post("/signout", data={"csrf_token": csrf.group(1)})
        again = await client.follow(await client.get("/signin?next=/pool"))
        return page, 'id="kc-form-login"' in again.text
    finally:
        await client.aclose()


def _verified(compose: Compose, settings: dict[str, str], *, signed: bool) -> str:
    seed = settings["CHECKPOINT_SIGNING_KEY"]
    password = settings["POSTGRES_PASSWORD"]
    key = checkpoint.public_key_b64(seed)
    args = ["run", "--rm", "--no-deps", "--env", "COLUMNS=400", "--entrypoint", "python", "topics",
            "-m", "deploy.local", "verify", "--bootstrap", "kafka:9092", "--public-key", key]  # fmt: skip
    for name in SERVICES:
        args += ["--service", f"{name}=postgresql://cadre:{password}@postgres:5432/cadre_{name}"]
    said = compose.check(*args, timeout=300)
    intact = re.findall(r"^(\w+): intact", said, flags=re.MULTILINE)
    if sorted(intact) != sorted(SERVICES):
        msg = f"verify did not find every record intact:\n{said}"
        raise RuntimeError(msg)
    # A service signs its chain head when events came since: one with none has nothing to sign.
    counts = re.findall(r"^(\w+): intact: (\d+) events, .* (\d+) signed checkpoints", said, flags=re.MULTILINE)
    unsigned = [name for name, events, checkpoints in counts if int(events) > 0 and int(checkpoints) == 0]
    if signed and unsigned:
        msg = f"no signed checkpoint verified for {', '.join(unsigned)}:\n{said}"
        raise RuntimeError(msg)
    return f"verify: every service's record intact ({'; '.join(line for line in said.splitlines() if line)})"


def _kill_and_restart(compose: Compose, api: Api) -> str:
    names = [f"Burst {uuid.uuid4().hex[:8]} {i:02d}" for i in range(BURST)]
    cadres = [api.nominate(name) for name in names]
    compose.check("kill", "--signal", "SIGKILL", "registry", "audit", timeout=60)
    compose.check("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "180", "registry", "audit", timeout=300)
    for cadre, name in zip(cadres, names, strict=True):
        api.in_training(cadre)
        api.in_audit_once(cadre)
        api.mailed_once(name)
    # Once more, after every effect arrived: a late second delivery would show now.
    for cadre, name in zip(cadres, names, strict=True):
        api.in_audit_once(cadre)
        api.mailed_once(name)
    return (
        f"registry and audit killed (SIGKILL) right after {BURST} nominations and started again: "
        f"each nomination in training, in audit once, and mailed once"
    )


def _memory(compose: Compose, docker: Engine) -> dict[str, int]:
    ids = [c["ID"] for c in compose.containers() if c["State"] == "running"]
    out = docker.check("stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *ids, timeout=120)
    memory = {}
    for line in out.splitlines():
        name, usage = line.split("\t")
        memory[name.removeprefix(f"{PROJECT}-").removesuffix("-1")] = _bytes(usage.split("/")[0].strip())
    return memory


def _bytes(text: str) -> int:
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 10**3, "MB": 10**6, "GB": 10**9}
    number, unit = re.match(r"([\d.]+)\s*([A-Za-z]+)", text).groups()  # type: ignore[union-attr]
    return int(float(number) * units[unit])


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 90.0) -> T:
    """Poll `probe` until it returns something other than None; RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            msg = f"{what}: not seen within {timeout:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.5)


class Api:
    """The services' and the mail catcher's HTTP APIs, through the ports the stack published on loopback."""

    def __init__(self, settings: dict[str, str]) -> None:
        from services.registry import demo  # noqa: PLC0415 - the plan the demo container loaded

        self.org = demo.plan()
        self.urls = {name: f"http://127.0.0.1:{settings[f'{name.upper()}_PORT']}" for name in SERVICES}
        self.mail = f"http://127.0.0.1:{settings['MAIL_UI_PORT']}"
        token = issue_token(
            settings["AUTH_SECRET"], Actor(user="check.organizer", org_path=self.org.root.path, role=Role.ORGANIZER)
        )
        self.auth = {"Authorization": f"Bearer {token}"}
        self.client = httpx.Client(timeout=30)
        self.unit = next(unit for unit in self.org.units if unit.parent is not None)

    def nominate(self, full_name: str) -> str:
        """Nominate a cadre of 30 in a demo unit; the cadre id."""
        today = clock.today()
        body = {
            "org_code": self.unit.code,
            "full_name": full_name,
            "gender": "female",
            "birth_date": today.replace(year=today.year - 30, day=min(today.day, 28)).isoformat(),
            "education": "master",
            "current_position": "Deputy head of the county's transport bureau",
            "years_of_service": 8,
            "grassroots_months": 30,
            "reason": "Tried through the containers",
        }
        response = self.client.post(f"{self.urls['registry']}/cadres", json=body, headers=self.auth)
        if response.status_code != httpx.codes.CREATED:
            msg = f"nomination refused: {response.status_code} {response.text}"
            raise RuntimeError(msg)
        return str(response.json()["stream_id"]).removeprefix("cadre-")

    def in_training(self, cadre: str) -> None:
        """Wait until training's projection of the registry knows the cadre."""
        url = f"{self.urls['training']}/cadres/{cadre}/recommendation"
        eventually(lambda: True if self.client.get(url, headers=self.auth).is_success else None,
                   f"cadre {cadre} in training")  # fmt: skip

    def in_audit_once(self, cadre: str) -> None:
        """Wait until audit's timeline has the cadre's nomination; fail if it has it twice."""
        url = f"{self.urls['audit']}/cadres/{cadre}/timeline"

        def nominations() -> int | None:
            response = self.client.get(url, headers=self.auth)
            found = sum(e["event_type"] == "CadreNominated" for e in response.json()) if response.is_success else 0
            return found or None

        if (found := eventually(nominations, f"cadre {cadre} in audit")) != 1:
            msg = f"audit has cadre {cadre}'s nomination {found} times"
            raise RuntimeError(msg)

    def mails(self, query: str) -> int:
        """How many emails in the mail catcher match `query` (Mailpit's search)."""
        found = self.client.get(f"{self.mail}/api/v1/search", params={"query": query, "limit": 10}).json()
        return int(found["messages_count"])

    def mailed_once(self, full_name: str) -> None:
        """Wait until the leader's email about `full_name` arrived; fail if it arrived twice."""
        query = f'"{full_name}"'
        if (found := eventually(lambda: self.mails(query) or None, f"email about {full_name}")) != 1:
            msg = f"the email about {full_name} arrived {found} times"
            raise RuntimeError(msg)

    def nomination_travels(self) -> str:
        """One nomination: in training's and audit's projections, and its email in the mail catcher."""
        name = f"Check {uuid.uuid4().hex[:8]}"
        cadre = self.nominate(name)
        self.in_training(cadre)
        self.in_audit_once(cadre)
        self.mailed_once(name)
        return "a nomination reached training and audit, and its email the mail catcher"
