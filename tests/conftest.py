"""Fixtures shared by every test: the real Kafka and PostgreSQL, and fresh namespaces in them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from services.registry.app import RegistrySettings, create_app
from tests import infra as infra_module
from tests.support import Running, create_database, running

pytest_plugins: list[str] = []


@pytest.fixture(scope="session")
def infra() -> Iterator[infra_module.Infra]:
    """Kafka and PostgreSQL for the whole session (fails, never skips, when they cannot start)."""
    with infra_module.provide() as provided:
        yield provided


@pytest.fixture
def namespace() -> str:
    """A fresh prefix for topic names and databases, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:12]}"


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture
def database(infra: infra_module.Infra, namespace: str) -> DatabaseFactory:
    """Create a fresh database for one service of this test; returns its DSN."""

    async def create(service: str) -> str:
        name = f"{namespace}_{service}"
        await create_database(infra.postgres_dsn, name)
        return infra.database_dsn(name)

    return create


@pytest.fixture
async def registry(infra: infra_module.Infra, namespace: str, database: DatabaseFactory) -> AsyncIterator[Running]:
    """The registry service, running in this process against the real Kafka and PostgreSQL."""
    settings = RegistrySettings(
        database_url=await database("registry"),
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_namespace=f"{namespace}.",
    )
    async with running(create_app(settings)) as service:
        yield service


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failed test here: nothing that needs Kafka or PostgreSQL may quietly not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"FAILED: {skipped} test(s) skipped; this suite allows no skips", red=True)
