"""The three nodes of the cluster are restarted one by one while events are produced
and consumed at concurrency 32: every acknowledged event is handled exactly once after
dedup."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import open_store
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.cluster import KafkaCluster
from streamkit.testing.redis import RedisEndpoint
from tests.integration.consume.conftest import PacedProducer
from tests.reliability.conftest import ConsumerRunner

PARTITIONS = 6
RATE_PER_S = 400
MAX_PRODUCE_S = 240


def test_rolling_restart_while_producing_and_consuming_at_concurrency_32(
    cluster: KafkaCluster,
    cluster_settings: StreamkitSettings,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    consumers: ConsumerRunner,
    redis_server: RedisEndpoint,
    figures: dict[str, Any],
) -> None:
    topic = cluster_topic(PARTITIONS)
    store = open_store(f"{redis_server.url}?prefix=rolling-{uuid.uuid4().hex[:8]}:")
    lock = threading.Lock()
    handled: Counter[str] = Counter()

    def handle(event: Event) -> None:
        time.sleep(0.002)
        with lock:
            handled[event.id] += 1

    consumer = consumers.start(
        EventConsumer([topic], handle, settings=cluster_settings, dedup=store, concurrency=32)
    )
    consumers.wait_for(lambda: len(consumer.assignment) == PARTITIONS, 60)

    producer = EventProducer(cluster_settings, schemas=schemas)
    producing = PacedProducer(producer, topic, RATE_PER_S, keys=200, max_s=MAX_PRODUCE_S).start()
    restarts: dict[str, float] = {}
    started = time.monotonic()
    try:
        time.sleep(2)
        for node_id in cluster.nodes:
            down_at = time.monotonic()
            cluster.stop_nodes(node_id)
            cluster.start_nodes(node_id)
            cluster.wait_in_sync(topic)
            restarts[f"node_{node_id}_back_in_sync_s"] = round(time.monotonic() - down_at, 1)
        time.sleep(2)
    finally:
        acknowledged = producing.stop()
        producer.close()
    consumers.wait_for(lambda: acknowledged <= set(handled), 120)
    time.sleep(2)  # late repeats would show now
    consumers.stop(consumer)
    store.close()

    figures.update(
        sent=len(producing.futures),
        acknowledged=len(acknowledged),
        handled=len(handled),
        lost=len(acknowledged - set(handled)),
        handled_twice=sum(n - 1 for n in handled.values() if n > 1),
        duplicates_skipped=consumer.stats.duplicates_skipped,
        rebalances=consumer.stats.rebalances,
        concurrency=32,
        seconds=round(time.monotonic() - started, 1),
        **restarts,
    )
    print("FIGURES rolling-restart: " + " ".join(f"{k}={v}" for k, v in figures.items()))
    assert acknowledged <= set(handled), "an acknowledged event was never handled"
    assert max(handled.values()) == 1, "an event was handled twice"
