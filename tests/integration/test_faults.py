"""Faults under load against the real Kafka and PostgreSQL (tests/faults): each scenario, then a short seeded run.

One platform for the module (its own PostgreSQL and Kafka behind our proxies, the five
services as processes through deploy/local/stack.py). Each scenario sends commands
while one fault is injected, waits for the platform to settle, and runs every checker:
nothing acknowledged lost, nothing applied twice, nothing out of order or unseen, every
hash chain intact. The checkers run over everything the module has done so far.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from runtime.settings import DEV_AUTH_SECRET
from tests.faults import checks, harness
from tests.faults.harness import Fault, Injector, Platform
from tests.faults.load import Load

SEED = 17
pytestmark = pytest.mark.timeout(600)  # a bound on a hang (the first test also starts the platform), not a speed test


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    """The platform behind the proxies, for this module; stopped (with its servers) at the end."""
    with harness.platform() as running:
        yield running


@pytest.fixture(scope="module")
def load(platform: Platform) -> Load:
    """One load for the module: its ledger holds every acknowledged command of every scenario."""
    load = Load(platform.stack.urls(), DEV_AUTH_SECRET, seed=SEED, rate=25)
    asyncio.run(load.prepare())
    return load


async def _under(load: Load, injector: Injector, kind: str, *, commands: int, lead: float = 2.0) -> Fault:
    """Send `commands` commands and inject one fault of `kind` `lead` seconds in; return the fault."""
    stop = asyncio.Event()
    limit = load.ledger.total + commands
    sending = asyncio.create_task(load.run(limit=limit, stop=stop))
    await asyncio.sleep(lead)
    fault = await injector.one(kind)
    await sending
    return fault


async def _checked(platform: Platform, load: Load) -> checks.Findings:
    settled = await harness.quiet(platform, timeout=180, settle=True)
    assert settled is not None, await checks.lag(platform.places())
    found = await checks.check(
        platform.places(), platform.bootstrap, load.ledger.acks, maildir=platform.workdir / "mail"
    )
    assert found.ok, found.summary()
    assert not [key for key in load.ledger.failed if not key.endswith(" 503")], load.ledger.failed
    return found


def _scenario(platform: Platform, load: Load, kind: str, commands: int) -> tuple[Fault, checks.Findings, int]:
    injector = Injector(platform, random.Random(f"{SEED}:{kind}"), harness.KINDS)
    acked = len(load.ledger.acks)

    async def go() -> tuple[Fault, checks.Findings]:
        fault = await _under(load, injector, kind, commands=commands)
        return fault, await _checked(platform, load)

    fault, found = asyncio.run(go())
    return fault, found, len(load.ledger.acks) - acked


def test_a_broker_restart_loses_no_acknowledged_event(platform: Platform, load: Load) -> None:
    fault, found, acked = _scenario(platform, load, "broker", 200)
    assert fault.kind == "broker"
    assert acked > 0
    assert found.facts["events checked in store, topic and archive"] >= acked


def test_an_unknown_producer_outcome_is_retried_and_counted_once(platform: Platform, load: Load) -> None:
    # Replies from the broker are swallowed past the producers' request timeout: the records
    # reached the broker, the relay cannot know it. The idempotent producer sends the same
    # batch again (same producer id and sequence) and the broker keeps one copy; had a round
    # failed instead, the relay would re-send from its cursor and consumers skip the repeat.
    before = _timed_out(platform)
    swallowed = platform.kafka_proxy.replies_swallowed
    fault, _found, acked = _scenario(platform, load, "swallow-kafka", 250)
    assert fault.kind == "swallow-kafka"
    assert acked > 0
    assert platform.kafka_proxy.replies_swallowed > swallowed
    assert _timed_out(platform) > before, "no produce request timed out: the fault did not hit a producer"


def test_a_database_connection_cut_mid_transaction_changes_nothing_twice(platform: Platform, load: Load) -> None:
    # The registry's connections (appends in flight) and assessment's (a consumer's batches in
    # flight) are broken at once: commands answer 503 or nothing, batches are tried again,
    # nothing is dead-lettered (the checkers read the dead-letter topics).
    proxies = [platform.db_proxies["registry"], platform.db_proxies["assessment"]]
    before = [proxy.connections_cut for proxy in proxies]

    async def go() -> None:
        stop = asyncio.Event()
        sending = asyncio.create_task(load.run(limit=load.ledger.total + 200, stop=stop))
        await asyncio.sleep(2)
        for proxy in proxies:
            proxy.cut()
        await asyncio.sleep(3)
        for proxy in proxies:
            proxy.heal()
        await sending
        await _checked(platform, load)

    asyncio.run(go())
    assert all(proxy.connections_cut > cut for proxy, cut in zip(proxies, before, strict=True))


def test_a_consumer_paused_past_its_session_applies_each_event_once(platform: Platform, load: Load) -> None:
    fault, _found, acked = _scenario(platform, load, "pause", 250)
    assert fault.kind == "pause"
    assert float(fault.detail.split()[1]) > harness.SESSION_TIMEOUT
    assert acked > 0


def test_a_short_seeded_run_of_random_faults_finds_nothing(platform: Platform, load: Load) -> None:
    # What `./dev faults --seed 18 --commands 500 --kills 5 --rate 25` runs, on this module's platform.
    kinds = {kind: weight for kind, weight in harness.KINDS.items() if kind != "swallow-kafka"}
    outcome = asyncio.run(
        harness.run(platform, seed=SEED + 1, commands=500, duration=120, kills=5, rate=25, kinds=kinds)
    )
    print(outcome.report())  # noqa: T201 - the run's figures, shown with -s or on failure
    assert outcome.findings.ok, outcome.report()
    assert len(outcome.faults) == 5
    assert outcome.recovery_seconds is not None
    assert len(outcome.ledger.acks) > 0
    assert not [key for key in outcome.ledger.failed if not key.endswith(" 503")], outcome.ledger.failed
    asyncio.run(_checked(platform, load))  # and over everything the module's scenarios acknowledged


def _timed_out(platform: Platform) -> int:
    """Produce requests that failed without an answer (retried by the producer) and relay rounds that failed."""
    logs = [(platform.workdir / "logs" / f"{name}.log").read_text(errors="replace") for name in harness.SERVICES]
    return sum(log.count("Got error produce response") + log.count("relay round failed") for log in logs)
