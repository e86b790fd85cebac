"""The peer in every run: the `eventsourcing` library's PostgreSQL recorder, same server, same workload.

eventsourcing (https://github.com/pyeventsourcing/eventsourcing) is the established Python
library for event sourcing. Measured here beside our own figures of the same run:

- **append**: its `Application` saves aggregates through `PostgresApplicationRecorder`, in its
  default mode and in its database-functions mode (`POSTGRES_ENABLE_DB_FUNCTIONS`), one save
  per command, the commands and payloads of `bench.workload` (1 and 10 events per command),
  `THREADS` commands in flight (the library is synchronous: threads, one connection each);
- **projection**: its `ProjectionRunner` follows the application's recorder, and a projection
  writes each event into the registry's `cadres` table together with its tracking record, one
  transaction per event (the library's way of exactly once).

The peer is slower by one to two orders of magnitude, so it appends the first `PEER_EVENTS`
events of the workload and projects the first `PEER_PROJECTED` (its rates do not depend on
the length of the run at these sizes: each save and each projected event is a transaction).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlparse
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL

from bench import append
from bench.harness import Clock, Figure, Report, Series, Stack
from bench.workload import Command, commands, org_paths
from runtime import db, store

THREADS = 16
PEER_EVENTS = 10_000
"""Events the peer appends in each of its four runs."""
PEER_PROJECTED = 5_000
"""Events the peer projects (one transaction each)."""
VERSION = "9.5.6"


class PeerCadre(Aggregate):
    """A cadre's stream in the peer: every event carries the same payload as ours (the first creates it)."""

    class Created(Aggregate.Created):
        """The cadre's first event of the workload (its nomination)."""

        cadre_id: UUID
        org_path: str
        event_type: str
        payload: dict[str, Any]

    class Happened(Aggregate.Event):
        """One of the workload's later events (its type and its payload as JSON values)."""

        org_path: str
        event_type: str
        payload: dict[str, Any]

    def __init__(self, cadre_id: UUID, org_path: str, event_type: str, payload: dict[str, Any]) -> None:
        self.cadre_id = cadre_id
        del org_path, event_type, payload  # only the events keep them

    @classmethod
    def create_id(cls, cadre_id: UUID) -> UUID:
        """The cadre's own id, as in our store."""
        return cadre_id

    def happened(self, org_path: str, event_type: str, payload: dict[str, Any]) -> None:
        """Record one of the workload's events."""
        self.trigger_event(self.Happened, org_path=org_path, event_type=event_type, payload=payload)


class PeerApp(Application[UUID]):
    """The application whose recorder the peer's figures measure."""

    name = "PeerApp"


def _env(stack_dsn: str, *, db_functions: bool) -> dict[str, str]:
    url = urlparse(stack_dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_POOL_SIZE": str(THREADS),
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y" if db_functions else "n",
        "CREATE_TABLE": "y",
    }


def _append(app: PeerApp, work: list[Command]) -> float:
    """Save the commands, THREADS in flight, one stream version after another; events/s."""
    aggregates: dict[UUID, PeerCadre] = {}
    lock = threading.Lock()

    def save(command: Command) -> None:
        events = list(command.events)
        with lock:
            aggregate = aggregates.get(command.cadre_id)
        if aggregate is None:
            first = events.pop(0)
            aggregate = PeerCadre(command.cadre_id, command.org_path, first.event_type, first.model_dump(mode="json"))
            with lock:
                aggregates[command.cadre_id] = aggregate
        for event in events:
            aggregate.happened(command.org_path, event.event_type, event.model_dump(mode="json"))
        app.save(aggregate)

    total = sum(len(c.events) for c in work)
    phases: dict[int, list[Command]] = {}
    for command in work:
        phases.setdefault(command.expected_version, []).append(command)
    with ThreadPoolExecutor(THREADS) as pool, Clock() as clock:
        for _, phase in sorted(phases.items()):
            list(pool.map(save, phase))
    return total / clock.seconds


async def _ours(stack: Stack, name: str, work: list[Command]) -> float:
    """Our store on the same commands, just before the peer: a baseline of the same moment and size."""
    dsn = _fresh(stack, name)
    pool = await db.create_pool(dsn, max_size=4)
    try:
        await db.apply_schema(pool, store.SCHEMA)
        es = store.EventStore(pool, source="registry", deployment="bench", batch_size=1000)
        with Clock() as clock:
            await append.drive(es, work, append.CONCURRENCY, Series("ours beside the peer"))
        await es.close()
    finally:
        await pool.close()
    return sum(len(c.events) for c in work) / clock.seconds


def run_append(stack: Stack, report: Report) -> str:
    """The peer's appends in both modes beside ours; return the DSN of the single-event, default-mode database.

    The machine is shared: each pair (ours, then the peer's two modes) runs back to back on
    the same commands, so the ratio compares like with like.
    """
    source = ""
    for per_command in (1, 10):
        work = commands(PEER_EVENTS, per_command=per_command, per_cadre=10 if per_command == 10 else 5)
        ours = asyncio.run(_ours(stack, f"bench_peer_{per_command}_ours", work))
        for db_functions in (False, True):
            mode = "database functions" if db_functions else "default mode"
            name = f"bench_peer_{per_command}_{'fn' if db_functions else 'default'}"
            dsn = _fresh(stack, name)
            app = PeerApp(env=_env(dsn, db_functions=db_functions))
            try:
                rate = _append(app, work)
            finally:
                app.close()
            if per_command == 1 and not db_functions:
                source = dsn
            report.add(
                Figure(
                    name=f"peer: eventsourcing {VERSION} append ({mode}), {per_command} event(s) per save",
                    value=rate,
                    unit="events/s",
                    baseline_name=f"ours, the same {PEER_EVENTS:,} events just before ({append.CONCURRENCY} in flight)",
                    baseline=ours,
                    notes=(
                        f"ours is {ours / rate:.1f}x the peer; {THREADS} saves in flight (threads);"
                        f" first {PEER_EVENTS:,} events of the workload; load {os.getloadavg()[0]:.1f}"
                    ),
                )
            )
    return source


class PeerView(PostgresTrackingRecorder):
    """The registry's `cadres` table, kept by the peer's projection with its tracking record."""

    NOMINATE: ClassVar = SQL(
        "INSERT INTO cadres (cadre_id, org_code, org_path, full_name, gender, birth_date, birth_date_precision,"
        " education, current_position, years_of_service, grassroots_months, user_id, email, language, reason,"
        " status, nominated_at, version, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, 'in_pool', %s, %s, %s)"
    )
    CHANGE: ClassVar = SQL(
        "UPDATE cadres SET current_position = coalesce(%s, current_position),"
        " years_of_service = coalesce(%s, years_of_service), version = greatest(version, %s),"
        " updated_at = greatest(updated_at, %s) WHERE cadre_id = %s"
    )
    MENTOR: ClassVar = SQL(
        "UPDATE cadres SET mentor_user_id = %s, mentor_name = %s, mentor_email = %s,"
        " version = greatest(version, %s), updated_at = greatest(updated_at, %s) WHERE cadre_id = %s"
    )

    def apply(self, event: PeerCadre.Created | PeerCadre.Happened, tracking: Tracking) -> None:
        """Write the event's row and the tracking record in one transaction."""
        p, version, at = event.payload, event.originator_version, event.timestamp
        with self.datastore.transaction(commit=True) as curs:
            if event.event_type == "CadreNominated":
                curs.execute(
                    self.NOMINATE,
                    (
                        p["cadre_id"], p["org_code"], event.org_path, p["full_name"], p["gender"], p["birth_date"],
                        p["birth_date_precision"], p["education"], p["current_position"], p["years_of_service"],
                        p["grassroots_months"], p["user_id"], p["email"], p["language"], p["reason"], at, version, at,
                    ),
                    prepare=True,
                )  # fmt: skip
            elif event.event_type == "CadreProfileUpdated":
                changes = p["changes"]
                curs.execute(
                    self.CHANGE,
                    (changes["current_position"], changes["years_of_service"], version, at, p["cadre_id"]),
                    prepare=True,
                )
            elif event.event_type == "MentorAssigned":
                mentor = p["mentor"]
                curs.execute(
                    self.MENTOR,
                    (mentor["user_id"], mentor["name"], mentor["email"], version, at, p["cadre_id"]),
                    prepare=True,
                )
            self._insert_tracking(curs, tracking)


class PeerProjection(Projection[PeerView]):
    """Folds the peer's events into its view."""

    name = "peerview"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Every event is one of the workload's."""
        if isinstance(domain_event, PeerCadre.Created | PeerCadre.Happened):
            self.view.apply(domain_event, tracking)
        else:
            self.view.insert_tracking(tracking)


def run_projection(report: Report, *, source: str, ours: float, schema: tuple[str, ...]) -> None:
    """Project the peer's single-event appends (default mode) with its ProjectionRunner; events/s."""
    with psycopg.connect(source, autocommit=True) as conn:
        for statement in schema:
            conn.execute(statement)  # our own DDL
        conn.execute(
            "INSERT INTO org_units (code, name, level, path, target_pool_size, registered_at, version)"
            " SELECT split_part(p, '.', -1), p, 'county', p, 10, now(), 1 FROM unnest(%s::text[]) AS p",
            (org_paths(),),
        )
    env = _env(source, db_functions=False)
    reader = PeerApp(env=env)
    head = min(reader.recorder.max_notification_id() or 0, PEER_PROJECTED)
    reader.close()
    with (
        Clock() as clock,
        ProjectionRunner(
            application_class=PeerApp, projection_class=PeerProjection, view_class=PeerView, env=env
        ) as runner,
    ):
        while (runner.view.max_tracking_id(runner.app.name) or 0) < head:
            time.sleep(0.05)
    rate = head / clock.seconds
    report.add(
        Figure(
            name=f"peer: eventsourcing {VERSION} projection (ProjectionRunner, one transaction per event)",
            value=rate,
            unit="events/s",
            baseline_name="ours, same run",
            baseline=ours,
            notes=(
                f"ours is {ours / rate:.1f}x the peer (ours: the projection figure of this run, from Kafka);"
                f" {head:,} events into the registry's cadres table; load {os.getloadavg()[0]:.1f}"
            ),
        )
    )


def _fresh(stack: Stack, name: str) -> str:
    with psycopg.connect(stack.postgres, autocommit=True) as conn:
        conn.execute(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
        conn.execute(SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return stack.dsn(name)
