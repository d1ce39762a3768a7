"""Cost controls on the real broker: the default codec on the wire, bytes metrics, retention."""

from __future__ import annotations

import logging
import re
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from streamkit.observability.http import serve_metrics
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, TopicSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order

# librdkafka's "msg" debug line for each ProduceRequest batch ends with the codec name.
_BATCH_LINE = re.compile(r"Produce MessageSet with (\d+) message\(s\).*, (\w+)\)$")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not exported")


def _records(text: str, topic: str) -> int:
    """Records the exported uncompressed figures cover (0 before the first statistics)."""
    labels = {"topic": topic, "stage": "uncompressed"}
    try:
        total = _sample(text, "streamkit_produced_bytes_total", **labels)
        average = _sample(text, "streamkit_produced_bytes_per_event", **labels)
    except AssertionError:
        return 0
    return round(total / average) if average else 0


def test_default_codec_is_on_the_wire_and_bytes_are_exported(
    streamkit_settings: StreamkitSettings, schemas: SchemaSet, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=1)
    count = 200
    settings = streamkit_settings.model_copy(
        update={
            "metrics": streamkit_settings.metrics.model_copy(update={"statistics_interval_ms": 200})
        }
    )
    assert settings.producer.compression_type == "zstd"  # the default, not set by the test
    lines = _Lines()
    wire_log = logging.getLogger(f"test.librdkafka.{uuid.uuid4().hex[:6]}")
    wire_log.addHandler(lines)
    wire_log.setLevel(logging.DEBUG)
    metrics = StreamkitMetrics()
    with (
        serve_metrics(metrics) as server,
        EventProducer(
            settings, schemas=schemas, metrics=metrics, config={"debug": "msg", "logger": wire_log}
        ) as producer,
    ):
        futures = [producer.send(topic, order(i), schema=ORDER_SCHEMA) for i in range(count)]
        assert producer.flush(30) == 0
        assert all(future.exception(0) is None for future in futures)
        deadline = time.monotonic() + 15
        per_event = "streamkit_produced_bytes_per_event"
        # Statistics from before the flush may still show part of the records: wait for a
        # window that covers all of them (total bytes / bytes per event = records).
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:  # noqa: S310 (loopback)
                text = response.read().decode()
            if _records(text, topic) == count:
                break
            time.sleep(0.2)

    batches = [m.groups() for m in map(_BATCH_LINE.search, lines.lines) if m]
    assert batches, "librdkafka logged no produce batch"
    assert sum(int(n) for n, _ in batches) == count
    assert {codec for _, codec in batches} == {"zstd"}

    assert _records(text, topic) == count, "statistics never covered every record"
    raw = _sample(text, per_event, topic=topic, stage="uncompressed")
    wire = _sample(text, per_event, topic=topic, stage="compressed")
    wire_total = _sample(text, "streamkit_produced_bytes_total", topic=topic, stage="compressed")
    # Key-less Avro order envelopes are ~170 bytes; zstd batches carry them in far fewer.
    assert 120 < raw < 260
    assert 0 < wire < raw / 2
    assert wire_total == pytest.approx(wire * count)


def test_retention_from_settings_applies_to_ensured_topics(
    streamkit_settings: StreamkitSettings, topic_factory: TopicFactory
) -> None:
    def retention(settings: StreamkitSettings, topic: str) -> str:
        admin = StreamkitAdmin(settings)
        resource = ConfigResource("topic", topic)
        deadline = time.monotonic() + 30
        while True:  # a just-created topic may take a moment to reach the broker's metadata
            try:
                configs = admin.client.describe_configs([resource])[resource].result(timeout=30)
                return str(configs["retention.ms"].value)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    day = streamkit_settings.model_copy(update={"topics": TopicSettings(retention_ms=86_400_000)})
    topic = f"test-retention-{uuid.uuid4().hex[:8]}"
    StreamkitAdmin(day).ensure_topics([TopicSpec(topic, partitions=1, replication_factor=1)])
    assert retention(day, topic) == "86400000"

    hour = streamkit_settings.model_copy(update={"topics": TopicSettings(retention_ms=3_600_000)})
    changes = StreamkitAdmin(hour).ensure_topics([TopicSpec(topic, 1, replication_factor=1)])
    assert [(c.action, c.detail) for c in changes] == [("configs updated", "retention.ms")]
    # A declared config wins over the settings' default.
    explicit = TopicSpec(topic, 1, replication_factor=1, config={"retention.ms": "60000"})
    StreamkitAdmin(hour).ensure_topics([explicit])
    assert retention(hour, topic) == "60000"
