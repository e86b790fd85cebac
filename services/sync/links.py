"""The links of this deployment: which mirrored topics bring whose events, and the consumer that takes them.

MirrorMaker 2 copies a child's topics into this deployment's cluster under the child's
name (`<child>.<topic>`, its DefaultReplicationPolicy), and the parent's sync events into
each child's (`<parent>.<namespace>sync.events`). The sync service reads those copies and
hands every record to the ingest, in one transaction per batch; the offsets are committed
after it, so a redelivered batch is taken again and dropped as repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

from contracts import topics
from runtime import logs, metrics
from runtime.db import Pool
from runtime.settings import ServiceSettings
from runtime.subscriber import POLL_MS, poll_without_pause, raw_records
from services.sync.ingest import Ingest

log = logs.get(__name__)


def mirrored(settings: ServiceSettings) -> dict[str, str]:
    """Every mirrored topic this deployment reads → the deployment (link) it comes from.

    From each child: all its service topics and what it received from below. From the
    parent: its sync events (directives).
    """
    links: dict[str, str] = {}
    for child in settings.child_deployments:
        for logical in (*topics.ALL, *topics.RECEIVED):
            links[f"{child}.{settings.topic(logical)}"] = child
    if settings.parent_deployment:
        links[f"{settings.parent_deployment}.{settings.topic(topics.SYNC)}"] = settings.parent_deployment
    return links


class LinkConsumer:
    """Reads the mirrored topics and hands each batch to the ingest."""

    def __init__(self, settings: ServiceSettings, ingest: Ingest) -> None:
        self._links = mirrored(settings)
        self._ingest = ingest
        self._batch_size = settings.consumer_batch_size
        self._pool: Pool | None = None
        self._subscriber: BatchSubscriber | None = None

    @property
    def topics(self) -> list[str]:
        """The mirrored topics read."""
        return sorted(self._links)

    def attach(self, broker: KafkaBroker) -> None:
        """Subscribe to the mirrored topics (none: a deployment without links has nothing to read)."""
        if not self._links:
            return
        subscriber = broker.subscriber(
            *self.topics,
            group_id="sync.ingest",
            batch=True,
            max_records=self._batch_size,
            batch_timeout_ms=POLL_MS,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=raw_records,
        )
        self._subscriber = subscriber
        subscriber.get_msg = poll_without_pause(self._batch_size)  # type: ignore[method-assign,assignment]

        async def handle(records: Any) -> None:  # Records, from raw_records (not validated again)
            await self.take(records)

        subscriber(handle)

    def bind(self, pool: Pool) -> None:
        """The sync service's database."""
        self._pool = pool

    @property
    def assigned(self) -> bool:
        """Ready: holds partitions (or has nothing to read)."""
        if not self._links:
            return True
        consumer = self._subscriber.consumer if self._subscriber else None
        return bool(consumer and consumer.assignment())

    async def take(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """One batch, in one transaction."""
        if self._pool is None:
            msg = "the link consumer has no database yet"
            raise RuntimeError(msg)
        arrivals = [(self._links.get(r.topic, r.topic.split(".", 1)[0]), r.value or b"") for r in records]
        async with self._pool.acquire() as conn, conn.transaction():
            taken = await self._ingest.take(conn, arrivals, via="link")
        metrics.CONSUMED.labels("sync", "sync.ingest", "applied").inc(taken.arrived)
        metrics.CONSUMED.labels("sync", "sync.ingest", "repeat").inc(taken.repeats)
        if taken.refused:
            metrics.HANDLER_ERRORS.labels("sync", "sync.ingest").inc(len(taken.refused))
            log.warning("events refused on arrival", count=len(taken.refused), first=taken.refused[0].reason)
