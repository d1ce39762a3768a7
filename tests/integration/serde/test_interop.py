"""Interop both ways with Confluent's own AvroSerializer / AvroDeserializer."""

from __future__ import annotations

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import StringSerializer

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import PAYMENT_SCHEMA, payment
from tests.integration.conftest import ConsumerRunner, deserialized_values

COUNT = 20


def test_confluent_deserializer_reads_what_streamkit_writes(
    streamkit_settings: StreamkitSettings, producer: EventProducer, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=1)
    ids = [
        producer.send(topic, payment(i), key=f"k{i}", schema=PAYMENT_SCHEMA).result(30).event_id
        for i in range(COUNT)
    ]
    with SchemaRegistryClient(client_config(streamkit_settings, "schema_registry")) as client:
        values = deserialized_values(
            streamkit_settings, topic, AvroDeserializer(client), COUNT, polls=100
        )
    assert [str(v["id"]) for v in values] == ids
    assert [v["payload"] for v in values] == [payment(i) for i in range(COUNT)]


def test_streamkit_reads_what_confluent_serializer_writes(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    schema = schemas[PAYMENT_SCHEMA]
    records = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "timestamp": 1_700_000_000_000 + i,
            "type": "PaymentReceived",
            "payload": payment(i),
        }
        for i in range(COUNT)
    ]
    with SchemaRegistryClient(client_config(streamkit_settings, "schema_registry")) as client:
        producer = SerializingProducer(
            {
                **client_config(streamkit_settings, "producer"),
                "key.serializer": StringSerializer(),
                "value.serializer": AvroSerializer(client, schema.text),
            }
        )
        for i, record in enumerate(records):
            producer.produce(topic, key=f"k{i}", value=record)
        assert producer.flush(30) == 0

    received: list[Event] = []
    consumer = consumers.start(EventConsumer([topic], received.append, settings=streamkit_settings))
    consumers.wait_for(lambda: len(received) == COUNT)
    consumers.stop(consumer)
    assert [e.id for e in received] == [r["id"] for r in records]
    assert [e.timestamp for e in received] == [r["timestamp"] for r in records]
    assert [e.payload for e in received] == [r["payload"] for r in records]
    assert [e.key for e in received] == [f"k{i}".encode() for i in range(COUNT)]
