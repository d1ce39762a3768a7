"""Metrics from real producers and consumers, scraped by a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import MemoryDedupStore
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.network import free_port
from streamkit.testing.plugin import TopicFactory
from streamkit.testing.prometheus import PrometheusServer
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import REPO, ConsumerRunner


@pytest.mark.broker_less
def test_producer_and_consumer_report_to_metrics(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=2)
    settings = streamkit_settings.model_copy(
        update={
            "metrics": streamkit_settings.metrics.model_copy(update={"statistics_interval_ms": 200})
        }
    )
    metrics = StreamkitMetrics()
    group = settings.consumer.group_id
    with EventProducer(settings, schemas=schemas, metrics=metrics) as producer:
        futures = [
            producer.send(topic, order(i), key=f"k{i}", schema=ORDER_SCHEMA) for i in range(20)
        ]
        for future in futures[:2]:  # two re-sends with the same event id
            producer.send(topic, order(0), key="k0", schema=ORDER_SCHEMA, event_id=future.event_id)
        producer.flush(30)
        # The statistics callback runs in the delivery thread every 200 ms.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            metrics.registry.get_sample_value(
                "streamkit_producer_queue_messages", {"client_id": "streamkit-test"}
            )
            is None
        ):
            time.sleep(0.05)
    raw = Producer(client_config(settings, "producer"))
    raw.produce(topic, b"\x01 garbage", b"poison")
    assert raw.flush(30) == 0

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("streamkit_produced_total", topic=topic) == 22
    assert sample("streamkit_delivered_total", topic=topic) == 22
    assert sample("streamkit_delivery_errors_total", topic=topic, reason="msg_timed_out") is None
    assert sample("streamkit_producer_queue_messages", client_id="streamkit-test") is not None

    with MemoryDedupStore() as store:
        consumer = consumers.start(
            EventConsumer(
                [topic], lambda _event: None, settings=settings, dedup=store, metrics=metrics
            )
        )
        labels = {"topic": topic, "group": str(group)}
        consumers.wait_for(lambda: consumer.stats.consumed == 23 and consumer.stats.processed == 20)
        # Lag per partition arrives with the statistics; everything handled is committed.
        consumers.wait_for(
            lambda: all(
                sample("streamkit_consumer_lag", partition=str(p), **labels) == 0 for p in (0, 1)
            ),
            timeout_s=30,
        )
        consumers.stop(consumer)
    assert sample("streamkit_consumed_total", **labels) == 23
    assert sample("streamkit_processed_total", **labels) == 20
    assert sample("streamkit_duplicates_skipped_total", **labels) == 2
    assert sample("streamkit_dead_lettered_total", reason="undecodable", **labels) == 1
    assert sample("streamkit_handler_duration_seconds_count", **labels) == 20
    assert sample("streamkit_event_age_seconds_count", **labels) == 20
    assert (sample("streamkit_rebalances_total", group=str(group), kind="assign") or 0) >= 1
    # The member left: its lag series are gone.
    assert sample("streamkit_consumer_lag", partition="0", **labels) is None


def test_prometheus_scrapes_the_demo(
    prometheus_server: PrometheusServer, child_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    prometheus_server.scrape(f"127.0.0.1:{port}", labels={"test": "demo"})
    demo = [str(Path(sys.executable).parent / "streamkit"), "demo"]
    args = ["--events", "400", "--consumers", "2", "--metrics-port", str(port)]
    result = subprocess.run(
        [*demo, *args, "--serve-after", "4", "--json"],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    sent = summary["produced"] + summary["duplicates_injected"]
    consumed = summary["consumed"]
    assert consumed == sent + summary["poison_injected"]
    topic = summary["topic"]
    # The demo has exited: Prometheus marked its series stale, so instant queries come
    # back empty. The last scraped values are still there over a range.
    produced = prometheus_server.wait_for(
        f'sum(max_over_time(streamkit_produced_total{{test="demo",topic="{topic}"}}[5m]))',
        lambda value: value == sent,
        timeout_s=30,
    )
    assert produced == sent
    got = prometheus_server.wait_for(
        f'sum(max_over_time(streamkit_consumed_total{{test="demo",topic="{topic}"}}[5m]))',
        lambda value: value == consumed,
        timeout_s=30,
    )
    assert got == consumed
    dead = prometheus_server.value(
        f'sum(max_over_time(streamkit_dead_lettered_total{{test="demo",topic="{topic}"}}[5m]))'
    )
    assert dead == summary["dead_lettered"]
