"""The schema registry goes down: cached schemas keep the stream flowing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import RegistryError
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.testing.cluster import KafkaCluster
from streamkit.testing.plugin import RegistryEndpoint
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order, payment
from tests.reliability.conftest import Collector, ConsumerRunner, cluster_settings_for

DURING_OUTAGE = 500


def test_cached_schemas_keep_producing_and_decoding_while_registry_is_down(
    cluster: KafkaCluster,
    private_registry: RegistryEndpoint,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    consumers: ConsumerRunner,
    figures: dict[str, Any],
) -> None:
    settings = cluster_settings_for(cluster, private_registry.url, schema_registry={"timeout_s": 5})
    topic, other_topic = cluster_topic(), cluster_topic()
    assert private_registry.container is not None
    collector = Collector()
    with EventProducer(settings, schemas=schemas) as producer:
        first = producer.send(topic, order(0), schema=ORDER_SCHEMA).result(30).event_id
        consumer = consumers.start(EventConsumer([topic], collector, settings=settings))
        consumers.wait_for(collector.has_all({first}), 60)  # its writer schema is cached now

        private_registry.container.get_wrapped_container().stop(timeout=10)
        down_at = time.monotonic()
        assert not private_registry.container.is_ready()
        sent = [producer.send(topic, order(seq), schema=ORDER_SCHEMA) for seq in range(1, 501)]
        acknowledged = {future.result(60).event_id for future in sent}

        failing_at = time.monotonic()
        with pytest.raises(RegistryError, match="schema registry") as refused:
            producer.send(other_topic, payment(1), schema=PAYMENT_SCHEMA)
        register_failed_s = time.monotonic() - failing_at

    consumers.wait_for(collector.has_all(acknowledged | {first}), 60)
    figures.update(
        sent_during_outage=DURING_OUTAGE,
        acknowledged_during_outage=len(acknowledged),
        consumed=len(collector.ids),
        dead_lettered=consumer.stats.dead_lettered,
        new_schema_error=str(refused.value)[:160],
        new_schema_failed_after_s=round(register_failed_s, 2),
        outage_s=round(time.monotonic() - down_at, 1),
    )
    assert len(acknowledged) == DURING_OUTAGE
    assert consumer.stats.dead_lettered == 0
    assert len(collector.ids) == DURING_OUTAGE + 1


def test_a_consumer_without_the_writer_schema_waits_for_the_registry(
    cluster: KafkaCluster,
    private_registry: RegistryEndpoint,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    consumers: ConsumerRunner,
    figures: dict[str, Any],
) -> None:
    settings = cluster_settings_for(
        cluster,
        private_registry.url,
        schema_registry={"timeout_s": 2},
        consumer={"retry_backoff_max_ms": 1000},
    )
    topic = cluster_topic()
    assert private_registry.container is not None
    registry = private_registry.container.get_wrapped_container()
    with EventProducer(settings, schemas=schemas) as producer:
        futures = [producer.send(topic, order(seq), schema=ORDER_SCHEMA) for seq in range(50)]
        sent = {future.result(30).event_id for future in futures}

    registry.pause()  # unreachable: requests time out (not a definite "unknown schema")
    paused_at = time.monotonic()
    try:
        collector = Collector()
        consumer = consumers.start(EventConsumer([topic], collector, settings=settings))
        consumers.wait_for(lambda: consumer.stats.consumed >= 1, 60)
        time.sleep(5)  # several lookups fail meanwhile
        assert consumer.stats.dead_lettered == 0
        assert not collector.ids
    finally:
        registry.unpause()
    waited_s = time.monotonic() - paused_at
    consumers.wait_for(collector.has_all(sent), 60)
    figures.update(
        registry_paused_s=round(waited_s, 1),
        handled_after_pause=len(set(collector.ids)),
        dead_lettered_during_pause=consumer.stats.dead_lettered,
    )
    assert consumer.stats.dead_lettered == 0
    assert set(collector.ids) == sent
