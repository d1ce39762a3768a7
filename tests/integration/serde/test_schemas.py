"""Schemas against the real registry: round trips, evolution, refusal before produce."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.errors import SchemaCompatibilityError, SchemaValidationError
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, SchemaSet, subject_name
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, SAMPLES, order
from tests.integration.conftest import EVOLUTION_DIR, ConsumerRunner


def _as_read(value: Any) -> Any:
    """What fastavro returns for a timestamp-millis field written as epoch ms."""
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@pytest.mark.broker_less
def test_every_example_schema_round_trips(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    top_level = schemas.top_level()
    assert {schema.name for schema in top_level} == set(SAMPLES)
    received: list[Event] = []
    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    topics = []
    for schema in top_level:
        topic = topic_factory(partitions=1)
        topics.append(topic)
        for seq in range(5):
            payload = SAMPLES[schema.name](seq)
            future = producer.send(topic, payload, key=str(seq), schema=schema.name)
            sent[future.result(timeout=30).event_id] = (schema.name, payload)
    consumer = consumers.start(EventConsumer(topics, received.append, settings=streamkit_settings))
    consumers.wait_for(lambda: len(received) == len(sent))
    consumers.stop(consumer)
    for event in received:
        schema_name, payload = sent[event.id]
        expected = dict(payload)
        if "placed_at" in expected:
            expected["placed_at"] = _as_read(expected["placed_at"])
        assert event.payload == expected
        assert event.type == schema_name.rpartition(".")[2]
        assert event.schema_id is not None


def test_registered_schemas_are_self_contained(
    registry: SchemaRegistry, schemas: SchemaSet
) -> None:
    order_schema = schemas[ORDER_SCHEMA]
    schema_id = registry.register("selfcontained-orders-value", order_schema)
    fetched = registry.client.get_schema(schema_id)
    again = AvroSchema.from_definition(fetched.schema_str)
    assert again.name == ORDER_SCHEMA
    assert "Address" in fetched.schema_str  # named types from other files are inlined


def _evolution(version: int) -> AvroSchema:
    return AvroSchema.from_definition((EVOLUTION_DIR / f"v{version}.avsc").read_text())


def test_schema_evolution_under_backward(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    subject = subject_name("topic", topic, "streamkit.test.evolution.Customer")
    v1, v2, v3 = _evolution(1), _evolution(2), _evolution(3)
    custom = SchemaSet({"v1": v1, "v2": v2, "v3": v3}, Path(EVOLUTION_DIR))

    with EventProducer(streamkit_settings, schemas=custom, registry=registry) as writer:
        writer.send(topic, {"customer_id": "c-1", "name": "Ada"}, schema="v1").result(30)
        registry.set_compatibility(subject, "BACKWARD")
        assert registry.check(subject, v2).compatible
        v2_id = registry.register(subject, v2)
        writer.send(
            topic, {"customer_id": "c-2", "name": "Grace", "tier": "gold"}, schema="v2"
        ).result(30)

        assert not registry.check(subject, v3).compatible
        with pytest.raises(SchemaCompatibilityError) as refused:
            registry.register(subject, v3)
        assert refused.value.subject == subject
        assert refused.value.compatibility == "BACKWARD"
        # The registry's reason names the broken field (Confluent and Apicurio alike).
        assert "/fields/0/type" in str(refused.value)
    assert registry.client.get_latest_version(subject).schema_id == v2_id

    received: list[Event] = []
    reader = consumers.start(
        EventConsumer(
            [topic], received.append, settings=streamkit_settings, reader_schemas={topic: v2}
        )
    )
    consumers.wait_for(lambda: len(received) == 2)
    consumers.stop(reader)
    assert [e.payload for e in received] == [
        {"customer_id": "c-1", "name": "Ada", "tier": "standard"},  # v1 record, v2 reader
        {"customer_id": "c-2", "name": "Grace", "tier": "gold"},
    ]


@pytest.mark.parametrize(
    ("mutate", "field", "actual"),
    [
        (lambda p: p.pop("customer_id"), "payload.customer_id", "missing"),
        (lambda p: p.update(total_cents="42"), "payload.total_cents", "str"),
        (lambda p: p["items"][1].update(quantity=1.5), "payload.items[1].quantity", "float"),
        (
            lambda p: p["shipping_address"].update(city=None),
            "payload.shipping_address.city",
            "NoneType",
        ),
    ],
)
def test_invalid_record_is_refused_before_produce(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    mutate: Any,
    field: str,
    actual: str,
) -> None:
    topic = topic_factory(partitions=1)
    payload = order(1)
    mutate(payload)
    with pytest.raises(SchemaValidationError) as refused:
        producer.send(topic, payload, schema=ORDER_SCHEMA)
    assert refused.value.field == field
    assert refused.value.actual == actual
    assert field in str(refused.value)
    assert producer.flush(10) == 0
    probe = Consumer(client_config(streamkit_settings, "consumer"))
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        probe.close()
    assert high - low == 0, "nothing reached the topic"
