"""Fixtures shared by every test: the real Kafka and PostgreSQL, and fresh namespaces in them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI

from deploy.local.stack import as_service_role, create_service_role
from runtime.settings import ServiceSettings
from services.assessment.app import AssessmentSettings
from services.assessment.app import create_app as assessment_app
from services.registry.app import RegistrySettings, create_app
from services.selection.app import SelectionSettings
from services.selection.app import create_app as selection_app
from services.training.app import TrainingSettings
from services.training.app import create_app as training_app
from tests import infra as infra_module
from tests.support import DatabaseFactory, Launch, Running, create_database, running

pytest_plugins: list[str] = ["tests.timetravel"]

# The tests are local development: the published development secrets are allowed (runtime.settings).
# Services the tests start as processes inherit it; a test of production settings removes it.
os.environ.setdefault("ENVIRONMENT", "development")


@pytest.fixture(scope="session")
def infra() -> Iterator[infra_module.Infra]:
    """Kafka and PostgreSQL for the whole session (fails, never skips, when they cannot start)."""
    with infra_module.provide() as provided:
        asyncio.run(create_service_role(provided.postgres_dsn))
        yield provided


@pytest.fixture
async def namespace(infra: infra_module.Infra) -> AsyncIterator[str]:
    """A fresh prefix for topic names and databases, so tests never see each other's data.

    What the test made under it is removed afterwards: the broker and the server stay
    small however long the suite (thousands of partitions slowed the whole run down).
    """
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    await infra_module.remove_namespace(infra, name)


@pytest.fixture
def database(infra: infra_module.Infra, namespace: str) -> DatabaseFactory:
    """Create a fresh database for one service of this test; returns its DSN."""

    created: set[str] = set()

    async def create(service: str) -> str:
        name = f"{namespace}_{service}"
        if name not in created:  # asking again (a restarted service) gives the same database
            await create_database(infra.postgres_dsn, name)
            created.add(name)
        return infra.database_dsn(name)

    return create


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@pytest.fixture
async def launch(infra: infra_module.Infra, namespace: str, database: DatabaseFactory) -> AsyncIterator[Launch]:
    """Start services in this process against the real stack; all are stopped when the test ends.

    `await launch(create_app, SettingsClass, "training", **overrides)` runs one with
    its own database (the same one again if launched again under the same name) and
    the test's topic namespace (an override may name another under it: a second
    deployment); `await running.stop()` stops it early (a restart test).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            create_app: Callable[[SettingsT], FastAPI], settings_class: type[SettingsT], name: str, **overrides: Any
        ) -> Running:
            owner = await database(name)
            defaults = {
                "database_url": as_service_role(owner),  # the services work as a role that owns nothing
                "database_owner_url": owner,
                "kafka_bootstrap_servers": infra.kafka_bootstrap,
                "topic_namespace": f"{namespace}.",
            }
            settings = settings_class(**{**defaults, **overrides})
            return await stack.enter_async_context(running(create_app(settings)))

        yield start


@pytest.fixture
async def registry(launch: Launch) -> Running:
    """The registry service, running in this process against the real Kafka and PostgreSQL."""
    return await launch(create_app, RegistrySettings, "registry")


@pytest.fixture
async def selection(launch: Launch, registry: Running) -> Running:
    """The selection service (after the registry, whose events it reads)."""
    return await launch(selection_app, SelectionSettings, "selection")


@pytest.fixture
async def training(launch: Launch, registry: Running) -> Running:
    """The training service (after the registry, whose events it reads)."""
    return await launch(training_app, TrainingSettings, "training")


@pytest.fixture
async def assessment(launch: Launch, registry: Running) -> Running:
    """The assessment service (after the registry, whose events it reads)."""
    return await launch(assessment_app, AssessmentSettings, "assessment")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failed test here: nothing that needs Kafka or PostgreSQL may quietly not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"FAILED: {skipped} test(s) skipped; this suite allows no skips", red=True)


@pytest.fixture(scope="session")
def console_port() -> int:
    """The port the console listens on in the browser tests (the provider's realm lets it sign people in)."""
    from deploy.local.ports import free_port  # noqa: PLC0415

    return free_port()


@pytest.fixture(scope="session")
def keycloak(console_port: int) -> Iterator[str]:
    """A real Keycloak with the demo organization's people, for the whole session; its issuer URL.

    Started on first use only (the tests of sign-in and of the console), stopped when the
    session ends, even after a failure; it fails, never skips, when it cannot start.
    """
    from deploy.local import keycloak as local_keycloak  # noqa: PLC0415

    realm = local_keycloak.realm(
        local_keycloak.demo_users(),
        redirect_uris=["http://127.0.0.1:1/*", f"http://127.0.0.1:{console_port}/*"],
    )
    with local_keycloak.LocalKeycloak(realm) as server:
        yield server.issuer
