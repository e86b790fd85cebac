"""Wiring of one service process: database, event store, relay, subscribers, HTTP app.

A service module describes itself with a `ServiceSpec` (its schema, its inline
projection, what it subscribes to, its routes); `build_app` turns that into a
FastAPI app whose lifespan starts and stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker

from contracts import topics
from runtime import asyncapi, auth, batch, checkpoint, db, http, limits, logs, openapi, relay, store, subscriber
from runtime.kafka import TopicSpec, ensure_topics, platform_topics
from runtime.keystore import KeyStore, PersonalDataSettings
from runtime.projection import Projection, Recorded, Typed
from runtime.received import HandoverReaction, Received
from runtime.settings import ServiceSettings

log = logs.get(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Subscription:
    """A projection fed from other services' topics (logical names, e.g. `registry.events`).

    Give either `projection`, or `factory` when the projection needs the running
    service (a reaction that issues commands through `service.store`). A reaction
    only issues commands, idempotent by the state they check, and writes no tables
    itself: its transaction then holds no lock the append's inline projection needs.
    """

    topics: Sequence[str]
    projection: Projection | None = None
    factory: Callable[[Service], Projection] | None = None
    with_received: bool = False
    """Also read what other deployments recorded on these topics (`<service>.received`, ADR 0010): views
    of the tree below this deployment want it; reactions, which act on this deployment's streams, do not."""

    def topic_names(self, multi_level: bool) -> list[str]:
        """The logical topics this subscription reads."""
        received = [topics.received(t) for t in self.topics] if self.with_received and multi_level else []
        return [*self.topics, *received]

    def build(self, service: Service) -> Projection:
        """The projection this subscription feeds."""
        if self.factory is not None:
            return self.factory(service)
        if self.projection is None:
            msg = "a Subscription needs a projection or a factory"
            raise ValueError(msg)
        return self.projection


class Reaction(Typed, ABC):
    """Base of a reaction (a `Subscription`'s `factory`): `react` answers its `events` by the service's commands."""

    def __init__(self, service: Service) -> None:
        self._service = service

    async def apply(self, conn: db.Conn, events: Sequence[Recorded]) -> None:
        """`react` to `events`, outside the subscriber's transaction."""
        del conn  # a reaction writes through the store, never into tables here
        await self.react(events)

    @abstractmethod
    async def react(self, events: Sequence[Recorded]) -> None:
        """Issue the commands `events` call for."""


BackgroundTask = Callable[["Service"], Coroutine[Any, Any, None]]


class Consumer(Protocol):
    """A Kafka consumer of a service besides its projection subscribers (the sync service's ingest)."""

    def attach(self, broker: KafkaBroker) -> None:
        """Register with the broker before it starts."""

    def bind(self, pool: db.Pool) -> None:
        """Get the database once the service has started it."""

    @property
    def assigned(self) -> bool:
        """Whether it holds partitions (ready to work)."""


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: everything `build_app` needs to know about it."""

    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    schema: Sequence[str] = ()
    inline: Projection | None = None
    subscriptions: Sequence[Subscription] = ()
    background: Sequence[BackgroundTask] = ()
    """Long-running tasks started after the subscribers (schedulers, ...)."""
    follows_handovers: bool = True
    """Hand over this service's stream of a cadre when the registry hands the cadre over (multi-level sync)."""
    consumers: Sequence[Callable[[Service], Consumer]] = ()
    """Consumers of other kinds than projection subscribers, built once the service exists."""
    outboxes: Sequence[tuple[str, relay.Outbox]] = ()
    """Further outboxes this service relays, each to a (logical) topic of its own."""
    extra_topics: Callable[[ServiceSettings], Sequence[str]] | None = None
    """Further topics (full names) to create before the consumers start, like the platform's own."""
    keystore: bool = False
    """Whether the service seals personal data (its settings then mix in `PersonalDataSettings`)."""
    batchable: Sequence[str] = ()
    """Route paths (templates) that `POST /batch` may run: the commands an import sends (runtime.batch)."""
    body_limits: Callable[[ServiceSettings], Mapping[str, int]] | None = None
    """Paths whose route bounds its body itself (`http.read_body`), with that bound: above MAX_REQUEST_BYTES."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def projections(self) -> tuple[Subscription, ...]:
        """Its subscriptions, and the grants every service projects (who may act where)."""
        return (*self.subscriptions, GRANTS)

    @property
    def tables(self) -> tuple[str, ...]:
        """Its schema, and the grants' table."""
        return (*self.schema, *auth.GRANTS_SCHEMA)


def _handover_reaction(service: Service) -> Projection:
    return HandoverReaction(lambda: service.store, service.spec.name)


GRANTS = Subscription(topics=[topics.REGISTRY], projection=auth.AccessGrants())
"""Every service (the registry too) reads the grants from the registry's topic."""


class Parts:
    """The typed parts a service's routes and reactions are given, said once in its app factory.

    Each part is known by its class: `once` (command handlers, settings-derived policies: made
    when first asked for, the service started by then, and kept), `per_request` (made from the
    request too) or `reading` (queries, made per request on the database as the actor sees it).
    A route asks for one with `Annotated[X, given(X)]` or `Annotated[X, scoped(X)]`; a reaction
    or a background task with `service.part(X)`.
    """

    def __init__(self) -> None:
        self._once: dict[type[Any], Callable[[Service], Any]] = {}
        self._per_request: dict[type[Any], Callable[[Service, Request | None], Any]] = {}
        self._reading: dict[type[Any], Callable[[Service, db.Scoped], Any]] = {}
        self._made: dict[type[Any], Any] = {}

    def once(self, kind: type[T], make: Callable[[Service], T]) -> Parts:
        """`kind`, made by `make` when first asked for, then the same one every time."""
        self._once[kind] = make
        return self

    def value(self, kind: type[T], value: T) -> Parts:
        """`kind` is `value` (a policy the settings describe)."""
        return self.once(kind, lambda _: value)

    def per_request(self, kind: type[T], make: Callable[[Service, Request | None], T]) -> Parts:
        """`kind`, made for each request that asks for it (and each time a reaction does: without a request)."""
        self._per_request[kind] = make
        return self

    def reading(self, kind: type[T], make: Callable[[Service, db.Scoped], T]) -> Parts:
        """`kind`, made for each request on the database as its actor sees it (row-level security)."""
        self._reading[kind] = make
        return self

    def get(self, kind: type[T], service: Service, request: Request | None = None) -> T:
        """The part of class `kind`, for `request` when there is one."""
        if kind in self._once:
            if kind not in self._made:
                self._made[kind] = self._once[kind](service)
            return _checked(kind, self._made[kind])
        if kind in self._per_request:
            return _checked(kind, self._per_request[kind](service, request))
        msg = f"{service.spec.name} has no part {kind.__name__} made here (its app factory names its parts)"
        raise LookupError(msg)

    def read(self, kind: type[T], service: Service, scoped: db.Scoped) -> T:
        """The reading part of class `kind`, on `scoped`."""
        if kind not in self._reading:
            msg = f"{service.spec.name} has no reading part {kind.__name__} (its app factory names its parts)"
            raise LookupError(msg)
        return _checked(kind, self._reading[kind](service, scoped))


def _checked(kind: type[T], part: object) -> T:
    if not isinstance(part, kind):
        msg = f"a part made for {kind.__name__} is a {type(part).__name__}"
        raise TypeError(msg)
    return part


class Service:
    """The running parts of one service process."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings, parts: Parts | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self.parts = parts or Parts()
        self._pool: db.Pool | None = None
        self._store: store.EventStore | None = None
        self._keystore: KeyStore | None = None
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=f"{spec.name}-{settings.deployment_id}",
            logger=None,
            acks="all",
            enable_idempotence=True,
        )
        multi_level = not settings.topology.single
        subscriptions = list(spec.projections)
        if multi_level:
            own = topics.service_topic(spec.name)
            subscriptions.append(Subscription(topics=[topics.received(own)], projection=Received(spec.inline)))
            if spec.follows_handovers:
                subscriptions.append(Subscription(topics=[topics.REGISTRY], factory=_handover_reaction))
        self.subscribers = [
            subscriber.ProjectionSubscriber(
                service=spec.name,
                projection=sub.build(self),
                topics=[settings.topic(t) for t in sub.topic_names(multi_level)],
                dead_letter=subscriber.broker_dead_letter(self.broker, spec.name),
                batch_size=settings.consumer_batch_size,
            )
            for sub in subscriptions
        ]
        self.consumers = [make(self) for make in spec.consumers]
        for sub in [*self.subscribers, *self.consumers]:
            sub.attach(self.broker)
        self._relays: list[relay.OutboxRelay] = []
        self._relay_tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        """Set when the service begins to stop: background tasks finish their round and return."""

    @property
    def pool(self) -> db.Pool:
        """The database pool (after start)."""
        if self._pool is None:
            msg = "service not started"
            raise RuntimeError(msg)
        return self._pool

    @property
    def store(self) -> store.EventStore:
        """The event store (after start)."""
        if self._store is None:
            msg = "service not started"
            raise RuntimeError(msg)
        return self._store

    def part(self, kind: type[T]) -> T:
        """The part of class `kind` its app factory named (after start): command handlers, a policy."""
        return self.parts.get(kind, self)

    @property
    def keystore(self) -> KeyStore:
        """The cadres' keys (after start, in a service whose spec asks for them)."""
        if self._keystore is None:
            msg = f"{self.spec.name} has no key store"
            raise RuntimeError(msg)
        return self._keystore

    async def start(self) -> None:
        """Connect, set up the schema and topics, then start relay, subscribers and tasks."""
        settings = self.settings
        owner = await db.create_pool(settings.owner_dsn, max_size=2)
        try:
            schema = [*store.SCHEMA, *relay.SCHEMA, *subscriber.SCHEMA, *self.spec.tables]
            await db.apply_schema(owner, schema, secured=True)
            self._pool = await db.create_pool(settings.database_url, max_size=settings.db_pool_size)
            await db.grant_membership(owner, str(await self._pool.fetchval("SELECT current_user")))
        finally:
            await owner.close()
        await db.check_working_role(self._pool, development=settings.development)
        self._store = store.EventStore(
            self._pool,
            source=self.spec.name,
            deployment=settings.deployment_id,
            inline=self.spec.inline,
            batch_size=settings.append_batch_size,
            topology=settings.topology,
        )
        if self.spec.keystore:
            if not isinstance(settings, PersonalDataSettings):
                msg = f"{self.spec.name} seals personal data: its settings need PersonalDataSettings"
                raise TypeError(msg)
            self._keystore = await KeyStore.connect(
                settings.keystore_dsn(settings.database_url),
                owner_dsn=settings.keystore_dsn(settings.owner_dsn),
                master_key_b64=settings.personal_data_master_key.get_secret_value(),
                deployment=settings.deployment_id,
            )
        mismatches = await ensure_topics(
            settings.kafka_bootstrap_servers,
            platform_topics(
                settings.topic_namespace,
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                min_insync_replicas=settings.topic_min_insync_replicas,
            ),
        )
        if self.spec.extra_topics is not None:
            mismatches += await ensure_topics(
                settings.kafka_bootstrap_servers,
                [
                    TopicSpec(
                        name=name,
                        partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                    )
                    for name in self.spec.extra_topics(settings)
                ],
            )
        for mismatch in mismatches:
            log.warning("topic differs from its spec", topic=mismatch.topic, problem=mismatch.problem)
        producer = relay.make_producer(settings.kafka_bootstrap_servers, client_id=f"{self.spec.name}-relay")
        self._producer = producer
        await producer.start()
        outboxes = [(settings.own_topic, relay.Outbox()), *((settings.topic(t), o) for t, o in self.spec.outboxes)]
        self._relays = [
            relay.OutboxRelay(
                self._pool,
                producer,
                service=self.spec.name,
                topic=topic,
                batch_size=settings.relay_batch_size,
                outbox=outbox,
            )
            for topic, outbox in outboxes
        ]
        for sub in [*self.subscribers, *self.consumers]:
            sub.bind(self._pool)
        await self.broker.start()
        self._relay_tasks = [
            asyncio.create_task(r.run(), name=f"{self.spec.name}-relay-{r.topic}") for r in self._relays
        ]
        self._tasks.append(asyncio.create_task(self._checkpoint_forever(), name=f"{self.spec.name}-checkpoints"))
        for task in self.spec.background:
            self._tasks.append(asyncio.create_task(task(self), name=f"{self.spec.name}-{task.__name__}"))
        log.info("service started", service=self.spec.name, topic=settings.own_topic)

    async def _checkpoint_forever(self) -> None:
        """Sign the chain head at every interval (and once more when stopping)."""
        key = checkpoint.private_key(self.settings.checkpoint_signing_key.get_secret_value())
        signer = checkpoint.Checkpointer(self.pool, self.store, key)
        interval = self.settings.checkpoint_interval_seconds
        # The level above releases only what a checkpoint signs; so does the level below, of the sync
        # service's events (its directives go down).
        linked_down = self.spec.name == "sync" and bool(self.settings.child_deployments)
        if self.settings.parent_deployment or linked_down:
            interval = min(interval, self.settings.sync_checkpoint_interval_seconds)
        while True:
            stopping = await self.pause(interval)
            try:
                await signer.checkpoint()
            except Exception:  # the next round tries again
                log.exception("chain checkpoint failed", service=self.spec.name)
            if stopping:
                return

    async def pause(self, seconds: float) -> bool:
        """Sleep for `seconds` or until the service stops; True when it is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        return self.stopping.is_set()

    async def stop(self) -> None:
        """Finish in-flight work and stop.

        Subscribers commit, background tasks end their round, the store drains, the
        relay publishes what was committed, then everything closes. Each step has a
        deadline: a step that overruns is logged and cut short, so a stuck client can
        never keep the process from exiting.
        """
        await self._step("consumers", self._stop_consumers(), 25)
        self.stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_seconds)
            for task in late:
                log.warning("background task cut short", service=self.spec.name, task=task.get_name())
                task.cancel()
            await self._step("background tasks", asyncio.gather(*self._tasks, return_exceptions=True), 5)
            self._tasks.clear()
        if self._store is not None:
            await self._step("event store", self._store.close(), 10)
        for outbox_relay, task in zip(self._relays, self._relay_tasks, strict=True):
            # The relay publishes what was just committed, then returns: the topic has it all before we go.
            outbox_relay.stop()
            if not await self._step(f"relay {outbox_relay.topic}", asyncio.shield(task), 10):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._relay_tasks = []
        if self._producer is not None:
            await self._step("producer", self._producer.stop(), 5)
            self._producer = None
        if self._keystore is not None:
            keys, self._keystore = self._keystore, None
            await self._step("key store", keys.close(), 10)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if not await self._step("database pool", pool.close(), 10):
                pool.terminate()
        log.info("service stopped", service=self.spec.name)

    async def _stop_consumers(self) -> None:
        """Stop consuming, then finish the batch each subscriber was writing (its offsets are committed after)."""
        await self.broker.stop()
        for sub in self.subscribers:
            await sub.close()

    async def _step(self, what: str, work: Awaitable[Any], seconds: float) -> bool:
        """Await one shutdown step within `seconds`; False (logged) when it failed or overran."""
        try:
            await asyncio.wait_for(work, timeout=seconds)
        except TimeoutError:
            log.warning("shutdown step overran", service=self.spec.name, step=what, seconds=seconds)
            return False
        except Exception as error:  # noqa: BLE001 - stopping goes on; the error is logged
            log.warning("shutdown step failed", service=self.spec.name, step=what, error=repr(error))
            return False
        return True

    async def readiness(self) -> dict[str, bool]:
        """What `/health/ready` reports: database, broker, consumers assigned, relay alive."""
        checks: dict[str, bool] = {}
        try:
            checks["database"] = await self.pool.fetchval("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - reported, not raised
            checks["database"] = False
        try:
            checks["broker"] = await asyncio.wait_for(self.broker.ping(timeout=2.0), timeout=3.0)
        except Exception:  # noqa: BLE001
            checks["broker"] = False
        checks["consumers"] = all(s.assigned for s in [*self.subscribers, *self.consumers])
        checks["relay"] = bool(self._relay_tasks) and not any(task.done() for task in self._relay_tasks)
        return checks


def build_app(spec: ServiceSpec, settings: ServiceSettings, parts: Parts | None = None) -> FastAPI:
    """The FastAPI app of one service, with the `parts` its routes are given; its lifespan runs the whole service."""
    service = Service(spec, settings, parts)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await service.start()
        except BaseException:
            # A start that fails half-way (Kafka unreachable, a bad DSN) releases what it took.
            with contextlib.suppress(Exception):
                await service.stop()
            raise
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,  # served below, to signed-in callers only
        docs_url=None,  # the console shows the docs to people signed in there
        redoc_url=None,
    )
    app.state.service = service
    app.state.authenticator = auth.Authenticator(
        secret=settings.auth_secret.get_secret_value(),
        provider=auth.ProviderKeys(settings.oidc_issuer, jwks_url=settings.oidc_jwks_url)
        if settings.oidc_issuer
        else None,
        audience=settings.oidc_audience,
        pool=lambda: service.pool,
        max_lifetime=float(settings.max_token_lifetime_seconds),
    )
    app.state.limits = limits.RateLimits(
        writes=limits.Buckets(settings.rate_limit_writes_per_second, settings.rate_limit_writes_burst),
        expensive=limits.Buckets(settings.rate_limit_expensive_per_minute / 60, settings.rate_limit_expensive_burst),
    )
    app.state.backdating_window = timedelta(days=settings.backdating_window_days)
    body_limits = spec.body_limits(settings) if spec.body_limits else None
    http.install(app, service=spec.name, max_body=settings.max_request_bytes, body_limits=body_limits)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/health/ready",
        tags=["health"],
        responses={503: {"description": "Not ready: the checks that failed", "content": {"application/json": {}}}},
    )
    async def ready() -> JSONResponse:
        checks = await service.readiness()
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"ready": status == 200, "checks": checks}, status_code=status)  # noqa: PLR2004

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(actor: auth.CurrentActor) -> JSONResponse:
        del actor  # any signed-in caller may read what the API offers; nobody else
        return JSONResponse(app.openapi())

    @app.get("/asyncapi", include_in_schema=False)
    async def asyncapi_document(actor: auth.CurrentActor) -> JSONResponse:
        del actor  # as the OpenAPI document: any signed-in caller
        return JSONResponse(asyncapi.document(spec))

    for router in spec.routers:
        app.include_router(router)
    if spec.batchable:
        app.include_router(batch.router(spec.batchable))
    openapi.declare_problems(app)
    return app


def service_of(request: Request) -> Service:
    """FastAPI dependency: the running service."""
    running: Service = request.app.state.service
    return running


async def actor_db(request: Request, actor: auth.CurrentActor) -> db.Scoped:
    """FastAPI dependency: the service's database as this request's actor sees it (row-level security)."""
    return db.Scoped(service_of(request).pool, actor)


ActorDB = Annotated[db.Scoped, Depends(actor_db)]
"""What a route reads with: queries that forget their filter still see only the actor's subtree."""


async def service_pool(request: Request) -> db.Pool:
    """FastAPI dependency: the service's database pool (the service's own role: no row-level filter)."""
    return service_of(request).pool


async def service_store(request: Request) -> store.EventStore:
    """FastAPI dependency: the service's event store."""
    return service_of(request).store


ServicePool = Annotated[db.Pool, Depends(service_pool)]
ServiceStore = Annotated[store.EventStore, Depends(service_store)]


def given(kind: type[T]) -> Any:
    """FastAPI dependency on the part of class `kind` the app factory named (a route: `Annotated[X, this]`)."""

    async def dependency(request: Request) -> T:
        service = service_of(request)
        return service.parts.get(kind, service, request)

    dependency.__name__ = f"given_{kind.__name__}"
    return Depends(dependency)


def scoped(kind: type[T]) -> Any:
    """FastAPI dependency on the reading part `kind`, on the database as the actor sees it (in an Annotated)."""

    async def dependency(request: Request, actor_scoped: ActorDB) -> T:
        service = service_of(request)
        return service.parts.read(kind, service, actor_scoped)

    dependency.__name__ = f"scoped_{kind.__name__}"
    return Depends(dependency)
