"""The platform under faults: the local stack behind our proxies, a steady load, faults at random moments.

`Platform` starts PostgreSQL and Kafka (deploy/local, each on ports it keeps across a
restart), a proxy in front of each service's database connection and one in front of the
broker (Kafka advertises the proxy's port, so every client's traffic passes it), and the
services through the project's own launcher (deploy/local/stack.py). `run` drives the load,
injects faults at moments drawn from the seed, waits for the system to be quiet and runs
the checkers (tests/faults/checks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import stack as local_stack
from deploy.local.kafka import LocalKafka
from deploy.local.ports import free_ports
from deploy.local.postgres import LocalPostgres
from runtime.settings import DEV_AUTH_SECRET
from tests.faults import checks
from tests.faults.load import Ledger, Load
from tests.faults.proxy import Proxy

SERVICES = ("registry", "training", "assessment", "notify", "audit")
CONSUMERS = ("training", "assessment", "notify", "audit")
"""The services that consume others' topics (a pause past the session timeout rebalances their groups)."""
SESSION_TIMEOUT = 10.0
"""aiokafka's default session timeout (s): a consumer frozen longer is taken out of its group."""
KINDS = {
    "kill": 6,
    "pause": 2,
    "broker": 1,
    "postgres": 1,
    "cut-db": 2,
    "slow-db": 1,
    "cut-kafka": 1,
    "swallow-kafka": 1,
}
"""Every fault and its weight in a random run."""
SWALLOW_SECONDS = 32.0
"""How long replies from the broker are swallowed: past the producer's request timeout (30 s)."""


@dataclass
class Fault:
    """One fault injected: when (s after the load began), what, to whom, how long it lasted."""

    at: float
    kind: str
    target: str
    detail: str = ""
    ended: float = 0.0


@dataclass
class Platform:
    """The running parts, reachable by the fault injectors and the checkers."""

    workdir: Path
    postgres: LocalPostgres
    kafka: LocalKafka
    kafka_proxy: Proxy
    db_proxies: dict[str, Proxy]
    stack: local_stack.Stack
    direct_dsn: str

    @property
    def bootstrap(self) -> str:
        """The broker as every client reaches it (through its proxy)."""
        return f"127.0.0.1:{self.kafka_proxy.port}"

    def places(self) -> dict[str, checks.Place]:
        """Each service's database (directly) and topic."""
        return {
            name: checks.Place(
                name,
                local_stack.database_dsn(self.direct_dsn, local_stack.database_name("", name)),
                f"{name}.events",
            )
            for name in SERVICES
        }

    def process(self, name: str) -> local_stack.ServiceProcess:
        """The current process of service `name`."""
        return self.stack.services[name]


@contextlib.contextmanager
def platform(workdir: Path | None = None, services: tuple[str, ...] = SERVICES) -> Iterator[Platform]:
    """PostgreSQL, Kafka, the proxies and the services; everything stopped when the block ends."""
    with contextlib.ExitStack() as parts:
        if workdir is None:
            workdir = Path(parts.enter_context(tempfile.TemporaryDirectory(prefix="cadre-faults-")))
        kafka_port, controller_port, pg_port = free_ports(3)
        kafka_proxy = parts.enter_context(Proxy(kafka_port, name="kafka"))
        postgres = LocalPostgres(workdir / "postgres", fsync=True, port=pg_port)
        parts.callback(postgres.stop)
        os.chmod(workdir, 0o755)  # noqa: PTH101, S103 - PostgreSQL runs as its own user when we are root
        direct = postgres.start()
        kafka = LocalKafka(
            workdir / "kafka", ports=(kafka_port, controller_port), advertised_port=kafka_proxy.port, heap="384m"
        )
        parts.callback(kafka.stop)
        kafka.start(timeout=120)
        db_proxies = {name: parts.enter_context(Proxy(pg_port, name=f"db-{name}")) for name in services}
        own_env = {
            name: {
                "DATABASE_URL": local_stack.database_dsn(
                    f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres", local_stack.database_name("", name)
                ),
                "SHUTDOWN_GRACE_SECONDS": "5",
            }
            for name, proxy in db_proxies.items()
        }
        stack = parts.enter_context(
            local_stack.run_stack(
                workdir,
                services=list(services),
                kafka=f"127.0.0.1:{kafka_proxy.port}",
                postgres=direct,
                own_env=own_env,
            )
        )
        yield Platform(workdir, postgres, kafka, kafka_proxy, db_proxies, stack, direct)


@dataclass
class Outcome:
    """What a run did and found."""

    seed: int
    faults: list[Fault] = field(default_factory=list)
    findings: checks.Findings = field(default_factory=checks.Findings)
    load_seconds: float = 0.0
    recovery_seconds: float | None = None
    """From the end of the last fault to the first moment every consumer had every published record."""
    quiet_seconds: float | None = None
    """From the end of the load to the same moment (None: not quiet before the deadline)."""
    ledger: Ledger = field(default_factory=Ledger)

    def as_dict(self) -> dict[str, object]:
        """The outcome as plain data (for --json)."""
        return {
            "seed": self.seed,
            "load_seconds": round(self.load_seconds, 1),
            "recovery_seconds": self.recovery_seconds,
            "quiet_seconds": self.quiet_seconds,
            "sent": dict(self.ledger.sent),
            "acknowledged": len(self.ledger.acks),
            "refused": dict(self.ledger.refused),
            "failed": dict(self.ledger.failed),
            "unanswered": dict(self.ledger.unanswered),
            "faults": [vars(fault) for fault in self.faults],
            "findings": dict(self.findings.counts),
            "examples": dict(self.findings.examples),
            "facts": self.findings.facts,
        }

    def report(self) -> str:
        """A human-readable summary."""
        ledger = self.ledger
        during = sum(1 for fault in self.faults if fault.at < self.load_seconds)
        lines = [
            (
                f"seed {self.seed}: {len(self.faults)} faults ({during} began while commands flowed)"
                f" over {self.load_seconds:.0f} s of load"
            ),
            (
                f"commands sent {ledger.total}, acknowledged {len(ledger.acks)}, refused (4xx)"
                f" {dict(ledger.refused)}, failed (5xx) {dict(ledger.failed)},"
                f" unanswered {sum(ledger.unanswered.values())}"
            ),
        ]
        kinds: dict[str, int] = {}
        for fault in self.faults:
            kinds[fault.kind] = kinds.get(fault.kind, 0) + 1
        lines.append("faults: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        recovery = "never" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        lines.append(f"recovery (last fault to zero lag): {recovery}")
        lines.extend(f"{key}: {value}" for key, value in self.findings.facts.items())
        lines.append(self.findings.summary())
        return "\n".join(lines)


class Injector:
    """Injects faults of the chosen kinds into a running platform."""

    def __init__(self, running: Platform, rng: random.Random, kinds: dict[str, int]) -> None:
        self.p = running
        self.rng = rng
        self.kinds = kinds

    async def one(self, kind: str | None = None) -> Fault:
        """Inject one fault (random kind unless named); return once it is over and the platform whole again."""
        kind = kind or self.rng.choices(list(self.kinds), list(self.kinds.values()))[0]
        fault = Fault(at=time.monotonic(), kind=kind, target="")
        await getattr(self, kind.replace("-", "_"))(fault)
        fault.ended = time.monotonic()
        return fault

    async def kill(self, fault: Fault) -> None:
        """kill -9 of a service process, restarted at once or after a few seconds."""
        name = self.rng.choice(SERVICES)
        delay = self.rng.choice((0.0, 0.0, self.rng.uniform(1, 8)))
        fault.target, fault.detail = name, f"restarted after {delay:.1f} s"
        process = self.p.process(name).process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        await asyncio.sleep(delay)
        await self._restart(name)

    async def _restart(self, name: str) -> None:
        started = local_stack.restart_service(self.p.stack, name)
        await asyncio.to_thread(local_stack.wait_ready, started, 120)

    async def pause(self, fault: Fault) -> None:
        """SIGSTOP a consumer past its session timeout, then SIGCONT (its group rebalances meanwhile)."""
        name = self.rng.choice(CONSUMERS)
        frozen = SESSION_TIMEOUT + self.rng.uniform(2, 6)
        fault.target, fault.detail = name, f"frozen {frozen:.1f} s"
        pid = self.p.process(name).process.pid
        os.killpg(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(frozen)
        finally:
            os.killpg(pid, signal.SIGCONT)

    async def broker(self, fault: Fault) -> None:
        """Restart the broker: a clean stop or a kill -9, then start again on the same ports with the same data."""
        down, crash = self.rng.uniform(0, 5), self.rng.random() < 0.5
        fault.target, fault.detail = "kafka", f"{'kill -9' if crash else 'SIGTERM'}, down {down:.1f} s"
        if crash and self.p.kafka.pid is not None:
            _kill_group(self.p.kafka.pid)
        await asyncio.to_thread(self.p.kafka.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.p.kafka.start, 120)

    async def postgres(self, fault: Fault) -> None:
        """Restart PostgreSQL: a fast shutdown or a kill -9 (crash recovery); every connection is broken."""
        down, crash = self.rng.uniform(0, 5), self.rng.random() < 0.5
        fault.target, fault.detail = "postgres", f"{'kill -9' if crash else 'fast shutdown'}, down {down:.1f} s"
        if crash and self.p.postgres.pid is not None:
            _kill_group(self.p.postgres.pid)
        await asyncio.to_thread(self.p.postgres.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.p.postgres.start, 60)

    async def cut_db(self, fault: Fault) -> None:
        """Cut one service's connections to PostgreSQL for a few seconds."""
        name = self.rng.choice(SERVICES)
        seconds = self.rng.uniform(1, 8)
        proxy = self.p.db_proxies[name]
        before = proxy.connections_cut
        proxy.cut()
        await asyncio.sleep(seconds)
        proxy.heal()
        fault.target, fault.detail = name, f"{seconds:.1f} s, {proxy.connections_cut - before} connections cut"

    async def slow_db(self, fault: Fault) -> None:
        """Slow one service's database link (every chunk delayed) for a while."""
        name = self.rng.choice(SERVICES)
        delay, seconds = self.rng.uniform(0.05, 0.5), self.rng.uniform(3, 10)
        fault.target, fault.detail = name, f"{delay * 1000:.0f} ms per chunk for {seconds:.1f} s"
        self.p.db_proxies[name].slow(delay)
        await asyncio.sleep(seconds)
        self.p.db_proxies[name].heal()

    async def cut_kafka(self, fault: Fault) -> None:
        """Cut every client's connections to the broker for a few seconds."""
        seconds = self.rng.uniform(1, 8)
        fault.target, fault.detail = "kafka clients", f"{seconds:.1f} s"
        self.p.kafka_proxy.cut()
        await asyncio.sleep(seconds)
        self.p.kafka_proxy.heal()

    async def swallow_kafka(self, fault: Fault) -> None:
        """The broker gets every request and its replies are lost: producers time out not knowing."""
        fault.target, fault.detail = "kafka clients", f"replies swallowed {SWALLOW_SECONDS:.0f} s"
        self.p.kafka_proxy.swallow()
        await asyncio.sleep(SWALLOW_SECONDS)
        self.p.kafka_proxy.heal()


def _kill_group(pid: int) -> None:
    """kill -9 of a server and everything in its process group (PostgreSQL's backends with it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the owner's stop() then reaps it


async def quiet(running: Platform, *, timeout: float, settle: bool = False) -> float | None:
    """Seconds until every consumer has every published record (None: not within `timeout`).

    With `settle`, also until nothing is due and nothing more is being written (before checking).
    """
    started = time.monotonic()
    places = running.places()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):  # a database or broker still coming back: ask again
            if await (checks.settled(places) if settle else _caught_up(places)):
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def _caught_up(places: dict[str, checks.Place]) -> bool:
    return not await checks.lag(places)


async def run(
    running: Platform,
    *,
    seed: int,
    commands: int,
    duration: float,
    kills: int,
    rate: float,
    kinds: dict[str, int],
) -> Outcome:
    """Drive the load, inject `kills` faults at random moments, then wait for quiet and check."""
    rng = random.Random(seed)
    outcome = Outcome(seed=seed)
    load = Load(running.stack.urls(), DEV_AUTH_SECRET, seed=seed, rate=rate)
    await load.prepare()
    span = min(duration, commands / rate)
    moments = sorted(rng.uniform(0.05, 0.8) * span for _ in range(kills))
    injector = Injector(running, rng, kinds)
    stop = asyncio.Event()
    started = time.monotonic()
    sending = asyncio.create_task(load.run(limit=commands, stop=stop))

    async def inject() -> None:
        for moment in moments:
            if (wait := started + moment - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            fault = await injector.one()
            fault.at -= started
            fault.ended -= started
            outcome.faults.append(fault)
            print(f"  {fault.at:7.1f} s  {fault.kind:<13} {fault.target:<13} {fault.detail}", flush=True)  # noqa: T201

    faults = asyncio.create_task(inject())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(sending), duration)
    await faults  # every fault is over (and healed) before the load stops
    last_fault = started + max((f.ended for f in outcome.faults), default=0.0)
    recovered = await quiet(running, timeout=120)
    if recovered is not None:
        outcome.recovery_seconds = max(0.0, time.monotonic() - last_fault)
    stop.set()
    await sending
    outcome.load_seconds = load.seconds
    outcome.quiet_seconds = await quiet(running, timeout=180, settle=True)
    outcome.ledger = load.ledger
    outcome.findings = await checks.check(
        running.places(), running.bootstrap, load.ledger.acks, maildir=Path(running.stack.mail["MAILDIR"])
    )
    if outcome.quiet_seconds is None:
        outcome.findings.add("unseen", "the platform did not become quiet within 180 s of the load's end")
    return outcome
