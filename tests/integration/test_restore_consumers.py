"""After a point-in-time restore the service's consumer groups go back to the beginning (real Kafka)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from runtime.restore import rewind_consumers
from tests.infra import Infra


async def test_the_restored_services_groups_are_rewound_and_no_other(infra: Infra, namespace: str) -> None:
    topic = f"{namespace}.registry.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    for index in range(10):
        await producer.send_and_wait(topic, f"event {index}".encode(), partition=index % 2)
    await producer.stop()
    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    service, other = f"{namespace}training", f"{namespace}notify"
    for group in (f"{service}.pool", f"{other}.pool"):  # both read everything and committed it
        consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        consumer.assign(partitions)
        await consumer.commit({tp: OffsetAndMetadata(5, "") for tp in partitions})
        await consumer.stop()

    assert await rewind_consumers(infra.kafka_bootstrap, service) == {f"{service}.pool": 2}

    rewound = await admin.list_consumer_group_offsets(f"{service}.pool")
    untouched = await admin.list_consumer_group_offsets(f"{other}.pool")
    await admin.close()
    assert {tp: meta.offset for tp, meta in rewound.items()} == dict.fromkeys(partitions, 0)
    assert {tp: meta.offset for tp, meta in untouched.items()} == dict.fromkeys(partitions, 5)
