"""Cost controls: compression, batching and retention settings; produced-bytes metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamkit.client.config import client_config, topic_config
from streamkit.errors import ConfigError
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.settings import load_settings


def test_default_codec_is_the_measured_choice(env: pytest.MonkeyPatch) -> None:
    conf = client_config(load_settings(), "producer")
    assert conf["compression.type"] == "zstd"  # bench/results/compression.json
    assert topic_config(load_settings()) == {}  # the broker's retention unless asked


@pytest.mark.parametrize(
    ("variable", "value", "key", "expected"),
    [
        ("STREAMKIT_PRODUCER__COMPRESSION_TYPE", "lz4", "compression.type", "lz4"),
        ("STREAMKIT_PRODUCER__COMPRESSION_TYPE", "none", "compression.type", "none"),
        ("STREAMKIT_PRODUCER__LINGER_MS", "50", "linger.ms", 50),
        ("STREAMKIT_PRODUCER__BATCH_SIZE", "262144", "batch.size", 262144),
    ],
)
def test_producer_cost_settings_map_to_librdkafka(
    env: pytest.MonkeyPatch, variable: str, value: str, key: str, expected: Any
) -> None:
    env.setenv(variable, value)
    assert client_config(load_settings(), "producer")[key] == expected
    assert key not in client_config(load_settings(), "consumer")


def test_retention_settings_map_to_topic_configs(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_TOPICS__RETENTION_MS", "86400000")
    env.setenv("STREAMKIT_TOPICS__RETENTION_BYTES", "-1")
    assert topic_config(load_settings()) == {"retention.ms": "86400000", "retention.bytes": "-1"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STREAMKIT_PRODUCER__COMPRESSION_TYPE", "brotli"),
        ("STREAMKIT_PRODUCER__BATCH_SIZE", "0"),
        ("STREAMKIT_TOPICS__RETENTION_MS", "-2"),
    ],
)
def test_wrong_cost_settings_name_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert variable in str(refused.value)


def _stats(topic: str, window: tuple[int, int], partitions: dict[int, tuple[int, int]]) -> str:
    """librdkafka producer statistics: a batch window and cumulative partition totals."""
    return json.dumps(
        {
            "type": "producer",
            "msg_cnt": 0,
            "topics": {
                topic: {
                    "batchsize": {"sum": window[0]},
                    "batchcnt": {"sum": window[1]},
                    "partitions": {
                        str(p): {"partition": p, "txbytes": b, "txmsgs": m}
                        for p, (b, m) in partitions.items()
                    },
                }
            },
        }
    )


def test_produced_bytes_by_stage_from_statistics() -> None:
    metrics = StreamkitMetrics()
    producer = metrics.producer("svc")
    producer.on_statistics(_stats("orders", (300, 10), {0: (1000, 6), 1: (800, 4), -1: (5, 5)}))
    producer.on_statistics(_stats("orders", (100, 10), {0: (1900, 12), 1: (1700, 8)}))

    def value(name: str, stage: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"topic": "orders", "stage": stage})

    # Partition totals are cumulative (deltas counted); batch windows add up; -1 is ignored.
    assert value("streamkit_produced_bytes_total", "uncompressed") == 3600
    assert value("streamkit_produced_bytes_total", "compressed") == 400
    assert value("streamkit_produced_bytes_per_event", "uncompressed") == 180
    assert value("streamkit_produced_bytes_per_event", "compressed") == 20
