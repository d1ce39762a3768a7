"""Fuzzed garbage on a topic ends in the dead-letter topic; the consumer keeps going."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import frame
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from tests.factories import ORDER_SCHEMA, order
from tests.integration.consume.test_consumer import _read_all
from tests.reliability.conftest import Collector, ConsumerRunner

ROUNDS = 6
UNKNOWN_SCHEMA_ID = 2**31 - 1


def garbage(schema_id: int) -> st.SearchStrategy[bytes | None]:
    """Values a broken or hostile producer might write: any bytes, a tombstone, random
    Avro bodies behind a known or an unknown schema id."""
    return st.one_of(
        st.binary(max_size=300),
        st.none(),
        st.builds(frame, st.just(schema_id), st.binary(max_size=300)),
        st.builds(frame, st.just(UNKNOWN_SCHEMA_ID), st.binary(max_size=50)),
    )


def test_fuzzed_garbage_is_dead_lettered_and_the_stream_goes_on(
    cluster_settings: StreamkitSettings,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    consumers: ConsumerRunner,
    figures: dict[str, Any],
) -> None:
    topic = cluster_topic()
    raw = Producer(client_config(cluster_settings, "producer"))
    collector = Collector()
    written = decoded_garbage = 0
    with EventProducer(cluster_settings, schemas=schemas) as producer:
        schema_id = producer.encoder(topic, ORDER_SCHEMA).schema_id
        consumer = consumers.start(EventConsumer([topic], collector, settings=cluster_settings))

        @settings(max_examples=ROUNDS, deadline=None, database=None)
        @given(st.lists(garbage(schema_id), min_size=1, max_size=20))
        def one_round(values: list[bytes | None]) -> None:
            nonlocal written, decoded_garbage
            dead_before, handled_before = consumer.stats.dead_lettered, len(collector.ids)
            for value in values:
                raw.produce(topic, value)
            assert raw.flush(30) == 0
            written += len(values)
            # One partition, taken in order: once this event is handled, the garbage before
            # it was handled or sent to the dead-letter topic (counted once acknowledged).
            marker = producer.send(topic, order(written), schema=ORDER_SCHEMA).result(30)
            consumers.wait_for(lambda: marker.event_id in collector.ids, 60)
            handled = len(collector.ids) - handled_before - 1
            decoded_garbage += handled  # random bytes that happen to be a valid order
            consumers.wait_for(
                lambda: consumer.stats.dead_lettered - dead_before + handled == len(values), 30
            )

        one_round()
    consumers.stop(consumer)
    letters = _read_all(cluster_settings, f"{topic}.dlq", consumer.stats.dead_lettered)
    reasons = [dict(letter.headers())["dlq-reason"] for letter in letters]
    figures.update(
        garbage_written=written,
        dead_lettered=consumer.stats.dead_lettered,
        decoded_as_valid=decoded_garbage,
        dlq_records=len(letters),
        consumed=consumer.stats.consumed,
    )
    assert len(letters) == consumer.stats.dead_lettered == written - decoded_garbage
    assert all(reason.startswith(b"DeserializationError") for reason in reasons), reasons[:3]
