"""The projection subscriber on faststream's in-memory broker: what it parses, applies, skips and dead-letters.

Beside the real-broker tests (tests/integration/test_relay_and_subscriber.py): here no Kafka and
no PostgreSQL, so the parsing and the dead-lettering are checked in milliseconds. The watermarks
live in a connection that remembers nothing (every record is seen first now).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts import topics
from contracts.envelope import uuid7
from contracts.registry import CadreNominated, CadreRetired, RetirementReason
from runtime.context import CommandContext
from runtime.db import Conn
from runtime.eventlog import InMemoryEventLog
from runtime.projection import Recorded, Typed
from runtime.relay import POSITION_HEADER, PREV_HEADER
from runtime.subscriber import ProjectionSubscriber, broker_dead_letter
from tests.support import command_context, nominated

TOPIC = "t.registry.events"


class _Connection:
    """A connection that stores nothing: no watermark is known, every write is taken."""

    async def fetch(self, *_: Any) -> list[Any]:
        return []

    async def executemany(self, *_: Any) -> None:
        return None

    def transaction(self) -> Self:
        return self

    def acquire(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class Nominations(Typed):
    """Keeps the names of the nominations it reads; refuses one named "refused"."""

    name = "nominations"
    events = (CadreNominated,)

    def __init__(self) -> None:
        self.names: list[str] = []

    async def apply(self, conn: Conn, events: Sequence[Recorded]) -> None:
        del conn
        for recorded in events:
            assert isinstance(recorded.event, CadreNominated)
            if recorded.event.full_name == "refused":
                msg = "refused"
                raise ValueError(msg)
            self.names.append(recorded.event.full_name)


async def _published(ctx: CommandContext, *events: CadreNominated | CadreRetired) -> list[bytes]:
    log = InMemoryEventLog(source="registry")
    envelopes = []
    for event in events:
        envelopes += await log.append(f"cadre-{event.cadre_id}", 0, [event], ctx=ctx, org_path="cn.qs")
    return [envelope.to_bytes() for envelope in envelopes]


async def test_records_are_parsed_applied_skipped_or_dead_lettered() -> None:
    broker = KafkaBroker("localhost:9092")
    projection = Nominations()
    subscriber = ProjectionSubscriber(
        service="training",
        projection=projection,
        topics=[TOPIC],
        dead_letter=broker_dead_letter(broker, "training"),
        pool=_Connection(),  # type: ignore[arg-type]
    )
    subscriber.attach(broker)
    dead: list[tuple[bytes, dict[str, str]]] = []

    @broker.subscriber(topics.dlq(TOPIC))
    async def dead_letters(body: Any, message: KafkaMessage) -> None:
        del body  # the record's bytes as they were: `message.body`
        dead.append((message.body, dict(message.headers)))

    ctx = command_context()
    leaving = CadreRetired(cadre_id=uuid7(), reason=RetirementReason.WITHDREW, effective_on=ctx.day)
    good, refused, retired = await _published(
        ctx, nominated(full_name="Li Wei"), nominated(full_name="refused"), leaving
    )
    async with TestKafkaBroker(broker) as test_broker:
        for position, body in enumerate([good, b"not an envelope", refused, retired], start=1):
            headers = {POSITION_HEADER: str(position), PREV_HEADER: str(position - 1)}
            await test_broker.publish(body, topic=TOPIC, headers=headers)
        await subscriber.drain()

    assert projection.names == ["Li Wei"]  # the retirement is another projection's: skipped
    assert [body for body, _ in dead] == [b"not an envelope", refused]
    assert dead[0][1]["dlq-error"].startswith("unparseable envelope")
    assert dead[1][1]["dlq-error"] == "ValueError: refused"
    assert {headers["dlq-consumer"] for _, headers in dead} == {"training.nominations"}
