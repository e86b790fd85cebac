"""Where the tests' Kafka and PostgreSQL come from.

In order: the servers named by KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL; else
testcontainers, when a Docker engine answers and already holds the images they
start (nothing is pulled: a registry may be out of reach); else the project's own
local Kafka and PostgreSQL (deploy/local). CADRE_TEST_INFRA=local or =containers
decides instead. Nothing is ever skipped: if none of these works, the tests that
need them fail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class Infra:
    """A Kafka cluster and a PostgreSQL server for tests."""

    kafka_bootstrap: str
    postgres_dsn: str
    """Admin DSN (database `postgres`); tests create their own databases."""

    def database_dsn(self, name: str) -> str:
        """The DSN of database `name` on the same server."""
        base, _, _ = self.postgres_dsn.rpartition("/")
        return f"{base}/{name}"


KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:15"


def testcontainers_images() -> list[str]:
    """The images testcontainers would start (Kafka, PostgreSQL, and its reaper unless disabled)."""
    from testcontainers.core.config import testcontainers_config  # noqa: PLC0415

    reaper = [] if testcontainers_config.ryuk_disabled else [testcontainers_config.ryuk_image]
    return [KAFKA_IMAGE, POSTGRES_IMAGE, *reaper]


def _use_testcontainers() -> bool:
    """CADRE_TEST_INFRA=containers or =local; else (auto) whether an engine answers with the images at hand."""
    mode = os.environ.get("CADRE_TEST_INFRA", "auto")
    if mode in {"local", "containers"}:
        return mode == "containers"
    try:
        import docker  # noqa: PLC0415 - only where testcontainers may be used

        client = docker.from_env(timeout=3)
        for image in testcontainers_images():
            client.images.get(image)  # raises when the engine lacks it
    except Exception:
        return False
    return True


@contextlib.contextmanager
def provide() -> Iterator[Infra]:
    """Start (or find) Kafka and PostgreSQL for the test session; stop what was started."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    postgres = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        use_containers = (kafka is None or postgres is None) and _use_testcontainers()
        if kafka is None:
            if use_containers:
                from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

                container = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
                kafka = container.get_bootstrap_server()
            else:
                from deploy.local.kafka import LocalKafka  # noqa: PLC0415

                kafka = stack.enter_context(LocalKafka()).bootstrap_servers
        if postgres is None:
            if use_containers:
                from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

                pg = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, driver=None))
                postgres = pg.get_connection_url()
            else:
                from deploy.local.postgres import LocalPostgres  # noqa: PLC0415

                local = stack.enter_context(LocalPostgres(fsync=False))
                postgres = local.dsn("postgres")
        yield Infra(kafka_bootstrap=kafka, postgres_dsn=postgres)


async def remove_namespace(infra: Infra, namespace: str) -> None:
    """Delete the topics and drop the databases whose names begin with `namespace`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        # Also the copies of a linked deployment's topics (`<deployment>.<namespace>...`, multi-level sync).
        mine = [t for t in await admin.list_topics() if t.startswith(f"{namespace}.") or f".{namespace}." in t]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    conn = await asyncpg.connect(infra.postgres_dsn)
    try:
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"{namespace}%")
        for row in names:
            await conn.execute(f'DROP DATABASE "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()
