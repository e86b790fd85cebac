"""What a service receives of its own kind from other deployments (multi-level sync, ADR 0010).

The sync service verifies every event that arrives from another deployment and passes it
on, in each source's order, on `<service>.received`. There each service of this
deployment:

- keeps the envelope (`received_events`): a stream handed over to this deployment goes
  on from that history;
- folds it into its own tables with the very projection that folds its own events, so
  its lists, rankings and statistics cover the deployments below it as well;
- takes note of every `StreamHandedOver` (who writes that stream from now on).

And when the registry of this deployment hands a cadre over, every other service hands
over its own stream of that cadre (`HandoverReaction`): the last word of this deployment
on each of the cadre's streams names the new owner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from contracts.envelope import Envelope
from contracts.sync import StreamHandedOver
from runtime.context import CommandContext
from runtime.db import Conn
from runtime.errors import ConcurrencyError, OwnedElsewhereError
from runtime.projection import Projection, Recorded
from runtime.store import EventStore

CADRE_STREAM_PREFIX: Final = "cadre-"


def cadre_stream(cadre_id: object) -> str:
    """The stream of one cadre in any service (each service has one per cadre)."""
    return f"{CADRE_STREAM_PREFIX}{cadre_id}"


class Received:
    """Keeps and folds this service's kind of events from other deployments."""

    name = "received"

    def __init__(self, inline: Projection | None) -> None:
        self._inline = inline

    def handles(self, event_type: str) -> bool:
        """Every event: each is kept, whether or not the service's tables use it."""
        del event_type
        return True

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Keep the envelopes, note handovers, fold what the service's projection reads."""
        await conn.executemany(
            "INSERT INTO received_events (deployment, source, position, event_id, stream_id, stream_version,"
            " cadre_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            [_row(r.envelope) for r in events],
        )
        handovers = [
            (r.envelope.stream_id, r.event.to_deployment, r.envelope.stream_version, r.envelope.recorded_at)
            for r in events
            if isinstance(r.event, StreamHandedOver)
        ]
        if handovers:
            await conn.executemany(
                "INSERT INTO stream_owners (stream_id, owner, version, changed_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (stream_id) DO UPDATE SET owner = EXCLUDED.owner, version = EXCLUDED.version,"
                " changed_at = EXCLUDED.changed_at WHERE stream_owners.version < EXCLUDED.version",
                handovers,
            )
        if self._inline is not None:
            folded = [r for r in events if self._inline.handles(r.envelope.event_type)]
            if folded:
                await self._inline.apply(conn, folded)


def _row(envelope: Envelope) -> tuple[object, ...]:
    return (
        envelope.deployment,
        envelope.source,
        envelope.position,
        envelope.event_id,
        envelope.stream_id,
        envelope.stream_version,
        envelope.cadre_id,
        envelope.to_bytes().decode(),
    )


class HandoverReaction:
    """When this deployment's registry hands a cadre over, hand over this service's stream of the cadre too."""

    name = "handover"

    def __init__(self, store: Callable[[], EventStore], service: str) -> None:
        """`store` gives the running service's store (it exists once the service has started)."""
        self._store = store
        self._service = service

    def handles(self, event_type: str) -> bool:
        """Only handovers."""
        return event_type == StreamHandedOver.event_type

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        """Append this service's own `StreamHandedOver` (idempotent: a stream handed over already is left)."""
        del conn  # a reaction issues commands; it writes no tables itself
        store = self._store()
        for recorded in events:
            envelope, event = recorded.envelope, recorded.event
            if not isinstance(event, StreamHandedOver) or envelope.cadre_id is None:
                continue
            if envelope.deployment != store.deployment:
                continue
            stream = cadre_stream(envelope.cadre_id)
            ctx = CommandContext.reacting_to(envelope, self._service)
            for _ in range(3):
                history = await store.read_stream(stream)
                if history and isinstance(history[-1].event, StreamHandedOver):
                    break
                version = history[-1].envelope.stream_version if history else 0
                handover = StreamHandedOver(to_deployment=event.to_deployment, reason=event.reason)
                try:
                    await store.append(
                        stream, version, [handover], ctx=ctx, org_path=envelope.org_path, cadre_id=envelope.cadre_id
                    )
                except ConcurrencyError:
                    continue
                except OwnedElsewhereError:
                    break
                break
