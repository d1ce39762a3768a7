"""StreamkitMetrics: counters, lag from librdkafka statistics, the HTTP endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from streamkit.client.config import client_config
from streamkit.observability.http import MetricsServer, serve_metrics
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.settings import load_settings

EXPECTED_NAMES = {
    "streamkit_produced",
    "streamkit_delivered",
    "streamkit_delivery_errors",
    "streamkit_producer_queue_messages",
    "streamkit_consumed",
    "streamkit_processed",
    "streamkit_handler_duration_seconds",
    "streamkit_event_age_seconds",
    "streamkit_duplicates_skipped",
    "streamkit_retries",
    "streamkit_dead_lettered",
    "streamkit_rebalances",
    "streamkit_consumer_lag",
    "streamkit_produced_bytes",
    "streamkit_produced_bytes_per_event",
    "streamkit_consumer_in_flight",
    "streamkit_consumer_handlers_running",
    "streamkit_consumer_paused_partitions",
    "streamkit_consumer_watermark_lag",
    "streamkit_dependency_up",
    "streamkit_outbox_pending_rows",
    "streamkit_outbox_oldest_pending_age_seconds",
    "streamkit_outbox_published",
    "streamkit_outbox_publish_errors",
}


def _value(metrics: StreamkitMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _consumer_stats(partitions: dict[str, dict[str, Any]], topic: str = "orders") -> str:
    return json.dumps(
        {
            "name": "rdkafka#consumer-1",
            "type": "consumer",
            "topics": {topic: {"topic": topic, "partitions": partitions}},
        }
    )


def test_metric_names_are_prefixed_and_complete() -> None:
    metrics = StreamkitMetrics()
    assert metrics.metric_names() == EXPECTED_NAMES
    samples = metrics.sample_names()
    assert {"streamkit_produced_total", "streamkit_handler_duration_seconds_bucket"} <= samples
    assert "streamkit_consumer_lag" in samples


def test_instances_do_not_clash_and_can_join_a_user_registry() -> None:
    StreamkitMetrics()
    StreamkitMetrics()  # each owns a registry by default: no duplicate-series error
    mine = CollectorRegistry()
    Counter("myapp_requests", "requests", registry=mine)
    metrics = StreamkitMetrics(registry=mine)
    metrics.producer("svc").sent("orders")
    assert mine.get_sample_value("streamkit_produced_total", {"topic": "orders"}) == 1
    assert mine.get_sample_value("myapp_requests_total") == 0


def test_producer_counters() -> None:
    metrics = StreamkitMetrics()
    producer = metrics.producer("billing")
    for _ in range(3):
        producer.sent("orders")
    producer.delivered("orders")
    producer.failed("orders", "_MSG_TIMED_OUT")
    producer.on_statistics(json.dumps({"type": "producer", "msg_cnt": 42}))
    producer.on_statistics("{not json")  # ignored, never raises into librdkafka
    assert _value(metrics, "streamkit_produced_total", topic="orders") == 3
    assert _value(metrics, "streamkit_delivered_total", topic="orders") == 1
    assert (
        _value(metrics, "streamkit_delivery_errors_total", topic="orders", reason="msg_timed_out")
        == 1
    )
    assert _value(metrics, "streamkit_producer_queue_messages", client_id="billing") == 42


def test_consumer_counters_and_histograms() -> None:
    metrics = StreamkitMetrics()
    consumer = metrics.consumer("billing")
    consumer.consumed_batch(["orders", "orders", "payments"])
    consumer.consumed("orders")
    consumer.processed("orders")
    consumer.handler_time("orders", 0.002)
    consumer.duplicate("orders")
    consumer.retry("orders")
    consumer.dead_lettered("orders", "undecodable")
    consumer.rebalance("assign")
    labels = {"topic": "orders", "group": "billing"}
    assert _value(metrics, "streamkit_consumed_total", **labels) == 3
    assert _value(metrics, "streamkit_consumed_total", topic="payments", group="billing") == 1
    assert _value(metrics, "streamkit_processed_total", **labels) == 1
    assert _value(metrics, "streamkit_handler_duration_seconds_count", **labels) == 1
    assert _value(metrics, "streamkit_handler_duration_seconds_bucket", le="0.0025", **labels) == 1
    assert _value(metrics, "streamkit_duplicates_skipped_total", **labels) == 1
    assert _value(metrics, "streamkit_retries_total", **labels) == 1
    assert _value(metrics, "streamkit_dead_lettered_total", reason="undecodable", **labels) == 1
    assert _value(metrics, "streamkit_rebalances_total", group="billing", kind="assign") == 1


def test_event_age_is_observed_from_the_event_timestamp() -> None:
    import time

    metrics = StreamkitMetrics()
    metrics.consumer("g").processed("orders", time.time_ns() // 1_000_000 - 3_000)
    labels = {"topic": "orders", "group": "g"}
    assert _value(metrics, "streamkit_event_age_seconds_bucket", le="2.5", **labels) == 0
    assert _value(metrics, "streamkit_event_age_seconds_bucket", le="5.0", **labels) == 1


def test_lag_gauges_from_statistics_json() -> None:
    metrics = StreamkitMetrics()
    consumer = metrics.consumer("billing")
    consumer.on_statistics(
        _consumer_stats(
            {
                "0": {"partition": 0, "fetch_state": "active", "consumer_lag": 7},
                "1": {"partition": 1, "fetch_state": "active", "consumer_lag": 0},
                # nothing committed yet: the lag behind the stored offset counts
                "2": {
                    "partition": 2,
                    "fetch_state": "active",
                    "consumer_lag": -1,
                    "consumer_lag_stored": 3,
                },
                "3": {"partition": 3, "fetch_state": "none", "consumer_lag": 99},  # not ours
                "-1": {"partition": -1, "fetch_state": "none", "consumer_lag": -1},  # internal
            }
        )
    )

    def lag(partition: str) -> float | None:
        return _value(
            metrics, "streamkit_consumer_lag", topic="orders", group="billing", partition=partition
        )

    assert (lag("0"), lag("1"), lag("2"), lag("3"), lag("-1")) == (7, 0, 3, None, None)

    # Partition 0 was revoked: its series goes, the others follow the new numbers.
    consumer.on_statistics(
        _consumer_stats(
            {
                "1": {"partition": 1, "fetch_state": "active", "consumer_lag": 5},
                "2": {"partition": 2, "fetch_state": "active", "consumer_lag": 1},
            }
        )
    )
    assert (lag("0"), lag("1"), lag("2")) == (None, 5, 1)
    consumer.on_statistics("garbage")  # ignored
    assert lag("1") == 5
    consumer.close()
    assert (lag("1"), lag("2")) == (None, None)


def test_lag_series_of_other_members_are_left_alone() -> None:
    metrics = StreamkitMetrics()
    first, second = metrics.consumer("g"), metrics.consumer("g")
    first.set_lags({("orders", "0"): 4})
    second.set_lags({("orders", "1"): 6})
    first.set_lags({})
    assert (
        metrics.registry.get_sample_value(
            "streamkit_consumer_lag", {"topic": "orders", "group": "g", "partition": "1"}
        )
        == 6
    )


@pytest.mark.parametrize(("interval", "expected"), [(250, 250), (0, None)])
def test_client_config_sets_statistics_only_with_a_callback(
    env: pytest.MonkeyPatch, interval: int, expected: int | None
) -> None:
    env.setenv("STREAMKIT_METRICS__STATISTICS_INTERVAL_MS", str(interval))
    settings = load_settings()
    assert "statistics.interval.ms" not in client_config(settings, "consumer")
    conf = client_config(settings, "consumer", stats_cb=lambda _: None)
    assert conf.get("statistics.interval.ms") == expected
    assert ("stats_cb" in conf) == (expected is not None)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_http_endpoint_serves_metrics_health_and_readiness() -> None:
    metrics = StreamkitMetrics()
    metrics.producer("svc").sent("orders")
    with serve_metrics(metrics) as server:
        assert server.port
        status, body = _get(f"{server.url}/metrics")
        assert status == 200
        assert 'streamkit_produced_total{topic="orders"} 1.0' in body
        assert _get(f"{server.url}/healthz") == (200, "ok\n")
        assert _get(f"{server.url}/readyz")[0] == 503
        server.ready = True
        assert _get(f"{server.url}/readyz") == (200, "ready\n")
        assert _get(f"{server.url}/nope")[0] == 404
    assert "stopped" in repr(server)


def test_readiness_callable_and_user_registry() -> None:
    registry = CollectorRegistry()
    StreamkitMetrics(registry=registry)
    state = {"ready": False}
    with MetricsServer(registry, ready=lambda: state["ready"]) as server:
        assert _get(f"{server.url}/readyz")[0] == 503
        state["ready"] = True
        assert _get(f"{server.url}/readyz")[0] == 200
        assert "streamkit_consumer_lag" in _get(f"{server.url}/metrics")[1]


def test_liveness_endpoint_follows_the_live_callable() -> None:
    state = {"live": True}
    with serve_metrics(StreamkitMetrics(), live=lambda: state["live"]) as server:
        assert _get(f"{server.url}/livez") == (200, "live\n")
        state["live"] = False
        assert _get(f"{server.url}/livez") == (503, "not live\n")
    with serve_metrics(StreamkitMetrics()) as server:
        assert _get(f"{server.url}/livez")[0] == 200, "live by default"


def test_pipeline_gauges_and_dependency_state() -> None:
    metrics = StreamkitMetrics()
    consumer = metrics.consumer("g")
    consumer.pipeline(in_flight=7, running=3, paused=2)
    consumer.watermark_lags({("orders", "0"): 12, ("orders", "1"): 0})
    consumer.dependency("dedup_store", up=False)
    assert _value(metrics, "streamkit_consumer_in_flight", group="g") == 7
    assert _value(metrics, "streamkit_consumer_handlers_running", group="g") == 3
    assert _value(metrics, "streamkit_consumer_paused_partitions", group="g") == 2
    lag = {"topic": "orders", "group": "g", "partition": "0"}
    assert _value(metrics, "streamkit_consumer_watermark_lag", **lag) == 12
    assert _value(metrics, "streamkit_dependency_up", group="g", dependency="dedup_store") == 0
    consumer.close()
    assert _value(metrics, "streamkit_consumer_watermark_lag", **lag) is None
