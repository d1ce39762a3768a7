"""JSON Schema events against the real broker and registry: the same tests as for Avro."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, SerializingProducer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import StringSerializer

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.errors import SchemaCompatibilityError, SchemaValidationError
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.jsonschemas import JsonSchema
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet, load_schemas, subject_name
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import JSON_EVOLUTION_DIR, JSON_ORDER_SCHEMA, JSON_SCHEMAS_DIR, order
from tests.integration.conftest import ConsumerRunner, deserialized_values

COUNT = 10


@pytest.fixture(scope="module")
def json_schemas() -> SchemaSet:
    return load_schemas(JSON_SCHEMAS_DIR)


@pytest.fixture
def json_producer(
    streamkit_settings: StreamkitSettings, json_schemas: SchemaSet, registry: SchemaRegistry
) -> Iterator[EventProducer]:
    with EventProducer(streamkit_settings, schemas=json_schemas, registry=registry) as producer:
        yield producer


@pytest.fixture
def registry_client(streamkit_settings: StreamkitSettings) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient(client_config(streamkit_settings, "schema_registry")) as client:
        yield client


def _envelope(seq: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{seq:012d}",
        "timestamp": 1_700_000_000_000 + seq,
        "type": "OrderPlaced",
        "payload": order(seq),
    }


def _consume(
    settings: StreamkitSettings, consumers: ConsumerRunner, topic: str, count: int
) -> list[Event]:
    received: list[Event] = []
    consumer = consumers.start(EventConsumer([topic], received.append, settings=settings))
    consumers.wait_for(lambda: len(received) == count)
    consumers.stop(consumer)
    return received


def _messages_on(settings: StreamkitSettings, topic: str) -> int:
    probe = Consumer(client_config(settings, "consumer"))
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        probe.close()
    return int(high - low)


def test_round_trip_registers_a_json_schema(
    streamkit_settings: StreamkitSettings,
    json_producer: EventProducer,
    registry_client: SchemaRegistryClient,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    payloads = [order(seq) for seq in range(COUNT)]
    ids = [
        json_producer.send(topic, payload, key=str(seq), schema=JSON_ORDER_SCHEMA)
        .result(30)
        .event_id
        for seq, payload in enumerate(payloads)
    ]
    received = _consume(streamkit_settings, consumers, topic, COUNT)
    assert [event.id for event in received] == ids
    assert [event.payload for event in received] == payloads
    assert {event.type for event in received} == {"OrderPlaced"}
    registered = registry_client.get_latest_version(subject_name("topic", topic, "-"))
    assert registered.schema.schema_type == "JSON"
    assert {event.schema_id for event in received} == {registered.schema_id}


@pytest.mark.parametrize(
    ("mutate", "field", "actual"),
    [
        (lambda p: p.pop("customer_id"), "payload.customer_id", "missing"),
        (lambda p: p["items"][1].update(quantity=1.5), "payload.items[1].quantity", "float"),
    ],
)
def test_invalid_record_is_refused_before_produce(
    streamkit_settings: StreamkitSettings,
    json_producer: EventProducer,
    topic_factory: TopicFactory,
    mutate: Any,
    field: str,
    actual: str,
) -> None:
    topic = topic_factory(partitions=1)
    payload = order(1)
    mutate(payload)
    with pytest.raises(SchemaValidationError) as refused:
        json_producer.send(topic, payload, schema=JSON_ORDER_SCHEMA)
    assert (refused.value.field, refused.value.actual) == (field, actual)
    assert field in str(refused.value)
    assert json_producer.flush(10) == 0
    assert _messages_on(streamkit_settings, topic) == 0, "nothing reached the topic"


def test_confluent_json_deserializer_reads_what_streamkit_writes(
    streamkit_settings: StreamkitSettings,
    json_producer: EventProducer,
    registry_client: SchemaRegistryClient,
    topic_factory: TopicFactory,
) -> None:
    topic = topic_factory(partitions=1)
    payloads = [order(seq) for seq in range(COUNT)]
    ids = [
        json_producer.send(topic, payload, schema=JSON_ORDER_SCHEMA).result(30).event_id
        for payload in payloads
    ]
    # No reader schema: the deserializer fetches (and validates with) the writer's.
    deserializer = JSONDeserializer(None, schema_registry_client=registry_client)
    values = deserialized_values(streamkit_settings, topic, deserializer, COUNT, polls=120)
    assert [value["id"] for value in values] == ids
    assert [value["payload"] for value in values] == payloads


def test_streamkit_reads_what_confluent_json_serializer_writes(
    streamkit_settings: StreamkitSettings,
    json_schemas: SchemaSet,
    registry_client: SchemaRegistryClient,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    records = [_envelope(seq) for seq in range(COUNT)]
    producer = SerializingProducer(
        {
            **client_config(streamkit_settings, "producer"),
            "key.serializer": StringSerializer(),
            "value.serializer": JSONSerializer(
                json_schemas[JSON_ORDER_SCHEMA].text, registry_client
            ),
        }
    )
    for seq, record in enumerate(records):
        producer.produce(topic, key=f"k{seq}", value=record)
    assert producer.flush(30) == 0

    received = _consume(streamkit_settings, consumers, topic, COUNT)
    assert [event.id for event in received] == [record["id"] for record in records]
    assert [event.timestamp for event in received] == [record["timestamp"] for record in records]
    assert [event.payload for event in received] == [record["payload"] for record in records]
    assert [event.key for event in received] == [f"k{seq}".encode() for seq in range(COUNT)]


def _evolution(version: int) -> JsonSchema:
    path = JSON_EVOLUTION_DIR / f"v{version}.json"
    return JsonSchema.from_definition(path.read_text(), path=path)


def test_schema_evolution_under_backward(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    v1, v2, v3 = _evolution(1), _evolution(2), _evolution(3)
    subject = subject_name("topic", topic, v1.name)
    custom = SchemaSet({"v1": v1, "v2": v2}, Path(JSON_EVOLUTION_DIR))

    with EventProducer(streamkit_settings, schemas=custom, registry=registry) as writer:
        writer.send(topic, {"customer_id": "c-1", "name": "Ada"}, schema="v1").result(30)
        registry.set_compatibility(subject, "BACKWARD")
        # An optional property added to a closed content model is a BACKWARD change.
        assert registry.check(subject, v2).compatible
        v2_id = registry.register(subject, v2)
        writer.send(
            topic, {"customer_id": "c-2", "name": "Grace", "tier": "gold"}, schema="v2"
        ).result(30)
        with pytest.raises(SchemaValidationError, match="tier"):
            writer.send(topic, {"customer_id": "c-3", "name": "Alan", "tier": 1}, schema="v2")

        assert not registry.check(subject, v3).compatible
        with pytest.raises(SchemaCompatibilityError) as refused:
            registry.register(subject, v3)
        assert refused.value.subject == subject
        assert refused.value.compatibility == "BACKWARD"
        # The registry's reason names the changed property (Apicurio: only in the 409 body).
        assert "customer_id" in str(refused.value)
    assert registry.client.get_latest_version(subject).schema_id == v2_id

    received = _consume(streamkit_settings, consumers, topic, 2)
    assert [event.payload for event in received] == [
        {"customer_id": "c-1", "name": "Ada"},
        {"customer_id": "c-2", "name": "Grace", "tier": "gold"},
    ]
    assert received[0].schema_id != received[1].schema_id == v2_id
