"""After a service's database was put back to an earlier moment: bring its consumers back with it.

A restored database holds each consumer's watermarks (`consumed`, ADR 0009) as they were at the
moment, while the consumer groups' offsets committed to Kafka are later: started as they are,
the consumers would go on from those offsets and never apply what came in between. So the
groups of the restored service (`<service>.<projection>`) are rewound to the beginning of
every partition they read; each record at or below its watermark is then skipped as a
repeat, the rest is applied once. The relay needs nothing: it re-sends from its restored
cursor the very rows the topic has (same content, same position headers), which consumers
drop by position. Run it with the service stopped (an empty group accepts the commit).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata


async def rewind_consumers(bootstrap: str, service: str) -> dict[str, int]:
    """Rewind every consumer group of `service` to the beginning of its partitions; partitions per group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        groups = sorted(
            str(row[0]) for row in await admin.list_consumer_groups() if str(row[0]).startswith(f"{service}.")
        )
        committed = {group: list(await admin.list_consumer_group_offsets(group)) for group in groups}
    finally:
        await admin.close()
    rewound: dict[str, int] = {}
    for group, partitions in committed.items():
        if not partitions:
            continue
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            beginnings = await consumer.beginning_offsets(partitions)
            await consumer.commit({tp: OffsetAndMetadata(beginnings[tp], "") for tp in partitions})
        finally:
            await consumer.stop()
        rewound[group] = len(partitions)
    return rewound
