"""The test kit's broker and registry are real and usable by plain clients."""

from __future__ import annotations

from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streamkit.client.config import client_config
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory

MESSAGES = 1000
KEYS = 20


@pytest.mark.broker_less
def test_thousand_keyed_messages_keep_per_key_order(
    streamkit_settings: StreamkitSettings, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=3)
    producer = Producer(client_config(streamkit_settings, "producer"))
    assert client_config(streamkit_settings, "producer")["enable.idempotence"] is True
    acknowledged: list[int] = []
    for seq in range(MESSAGES):
        producer.produce(
            topic,
            value=str(seq).encode(),
            key=f"key-{seq % KEYS}".encode(),
            on_delivery=lambda err, msg: acknowledged.append(0 if err else 1),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert sum(acknowledged) == MESSAGES

    consumer = Consumer(client_config(streamkit_settings, "consumer"))
    consumer.subscribe([topic])
    by_key: dict[bytes, list[int]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    received = 0
    try:
        for _ in range(120):
            for message in consumer.consume(500, timeout=0.5):
                assert message.error() is None
                by_key[message.key()].append(int(message.value()))
                partitions_of_key[message.key()].add(message.partition())
                received += 1
            if received >= MESSAGES:
                break
    finally:
        consumer.close()
    assert received == MESSAGES
    assert len(by_key) == KEYS
    for key, sequence in by_key.items():
        assert sequence == sorted(sequence), f"order broken for {key!r}"
        assert len(partitions_of_key[key]) == 1
    used = set().union(*partitions_of_key.values())
    assert used == {0, 1, 2}


def test_schema_registered_is_read_back_by_id(streamkit_settings: StreamkitSettings) -> None:
    definition = (
        '{"type":"record","name":"Ping","namespace":"streamkit.test",'
        '"fields":[{"name":"n","type":"long"}]}'
    )
    with SchemaRegistryClient(client_config(streamkit_settings, "schema_registry")) as client:
        schema_id = client.register_schema("testkit-ping-value", Schema(definition, "AVRO"))
        fetched = client.get_schema(schema_id)
        latest = client.get_latest_version("testkit-ping-value")
    assert fetched.schema_type == "AVRO"
    assert '"Ping"' in fetched.schema_str
    assert latest.schema_id == schema_id
