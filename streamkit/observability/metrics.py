"""Prometheus metrics of producers and consumers (the HTTP endpoint is :mod:`.http`).

One :class:`StreamkitMetrics` owns the collectors; it registers them into a
``CollectorRegistry`` of its own, or into yours (``StreamkitMetrics(registry=REGISTRY)``).
Producers and consumers take it as their ``metrics`` argument and report through a small
binding (:class:`ProducerMetrics`, :class:`ConsumerMetrics`) that caches the labelled
children per topic, so the per-record cost is a dict lookup and an increment::

    metrics = StreamkitMetrics()
    with serve_metrics(metrics, port=9400), EventProducer(settings, metrics=metrics) as p:
        ...

Labels are kept low-cardinality: ``topic``, ``group``, a bounded ``reason``, ``kind`` or
``stage``, and ``partition`` for consumer lag only — never a key or an event id. Consumer
lag, producer queue depth and produced bytes come from librdkafka's statistics
(``stats_cb``, every ``STREAMKIT_METRICS__STATISTICS_INTERVAL_MS``).

Produced bytes (the cost levers of compression and batching) have two stages:
``uncompressed`` is key + value bytes handed over (partition ``txbytes``), ``compressed``
is the record batches as sent and stored (topic ``batchsize``: after compression, with
headers and batch framing; equal to the broker's log segment bytes).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "BYTE_STAGES",
    "EVENT_AGE_BUCKETS",
    "HANDLER_BUCKETS",
    "ConsumerMetrics",
    "NullConsumerMetrics",
    "OutboxMetrics",
    "ProducerMetrics",
    "StreamkitMetrics",
]

log = logging.getLogger(__name__)

PREFIX = "streamkit"
HANDLER_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
EVENT_AGE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
BYTE_STAGES = ("uncompressed", "compressed")


class StreamkitMetrics:
    """The streamkit collectors, registered into one ``CollectorRegistry``.

    Args:
        registry: where to register; default: a new registry owned by this object
            (so that several instances never clash). Pass ``prometheus_client.REGISTRY``
            to expose them beside your own metrics.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.produced = Counter(
            f"{PREFIX}_produced", "Records handed to the producer.", ["topic"], registry=reg
        )
        self.delivered = Counter(
            f"{PREFIX}_delivered", "Records acknowledged by the cluster.", ["topic"], registry=reg
        )
        self.delivery_errors = Counter(
            f"{PREFIX}_delivery_errors",
            "Records whose delivery failed, by librdkafka error name.",
            ["topic", "reason"],
            registry=reg,
        )
        self.producer_queue = Gauge(
            f"{PREFIX}_producer_queue_messages",
            "Messages waiting in the producer's queues (librdkafka statistics).",
            ["client_id"],
            registry=reg,
        )
        self.produced_bytes = Counter(
            f"{PREFIX}_produced_bytes",
            "Bytes produced, by stage: uncompressed (key + value) and compressed (record "
            "batches on the wire; librdkafka statistics).",
            ["topic", "stage"],
            registry=reg,
        )
        self.produced_bytes_per_event = Gauge(
            f"{PREFIX}_produced_bytes_per_event",
            "Average bytes per produced record since the producer started, by stage "
            "(librdkafka statistics).",
            ["topic", "stage"],
            registry=reg,
        )
        self.consumed = Counter(
            f"{PREFIX}_consumed",
            "Messages read by consumers (including duplicates and undecodable ones).",
            ["topic", "group"],
            registry=reg,
        )
        self.processed = Counter(
            f"{PREFIX}_processed",
            "Events the handler finished successfully.",
            ["topic", "group"],
            registry=reg,
        )
        self.handler_seconds = Histogram(
            f"{PREFIX}_handler_duration_seconds",
            "Duration of each handler attempt.",
            ["topic", "group"],
            buckets=HANDLER_BUCKETS,
            registry=reg,
        )
        self.event_age = Histogram(
            f"{PREFIX}_event_age_seconds",
            "End-to-end latency: event timestamp to handler finished.",
            ["topic", "group"],
            buckets=EVENT_AGE_BUCKETS,
            registry=reg,
        )
        self.duplicates = Counter(
            f"{PREFIX}_duplicates_skipped",
            "Events skipped because the dedup store had completed their id.",
            ["topic", "group"],
            registry=reg,
        )
        self.retries = Counter(
            f"{PREFIX}_retries", "Handler retries.", ["topic", "group"], registry=reg
        )
        self.dead_lettered = Counter(
            f"{PREFIX}_dead_lettered",
            "Messages sent to the dead-letter topic (reason: undecodable or handler_failed).",
            ["topic", "group", "reason"],
            registry=reg,
        )
        self.rebalances = Counter(
            f"{PREFIX}_rebalances",
            "Rebalance callbacks (kind: assign, revoke, lost).",
            ["group", "kind"],
            registry=reg,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Messages behind the partition end, per partition (librdkafka statistics).",
            ["topic", "group", "partition"],
            registry=reg,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_consumer_in_flight",
            "Messages held between poll and commit (bounded by max_in_flight).",
            ["group"],
            registry=reg,
        )
        self.handlers_running = Gauge(
            f"{PREFIX}_consumer_handlers_running",
            "Handler calls running now (the concurrency in use).",
            ["group"],
            registry=reg,
        )
        self.paused_partitions = Gauge(
            f"{PREFIX}_consumer_paused_partitions",
            "Partitions paused (backpressure, a dependency down, or by the application).",
            ["group"],
            registry=reg,
        )
        self.watermark_lag = Gauge(
            f"{PREFIX}_consumer_watermark_lag",
            "Offsets polled above the committable watermark (the lowest unfinished "
            "offset), per partition.",
            ["topic", "group", "partition"],
            registry=reg,
        )
        self.dependency_up = Gauge(
            f"{PREFIX}_dependency_up",
            "1 while a dependency of the consume pipeline answers, 0 while it is waited "
            "out (dependency: schema_registry, dedup_store, dead_letter_topic).",
            ["group", "dependency"],
            registry=reg,
        )
        self.outbox_pending = Gauge(
            f"{PREFIX}_outbox_pending_rows",
            "Committed outbox rows not yet published (sampled by the relay).",
            ["table"],
            registry=reg,
        )
        self.outbox_oldest_age = Gauge(
            f"{PREFIX}_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row, 0 when none (sampled by the relay).",
            ["table"],
            registry=reg,
        )
        self.outbox_published = Counter(
            f"{PREFIX}_outbox_published",
            "Outbox rows the relay published and marked sent (or deleted).",
            ["table"],
            registry=reg,
        )
        self.outbox_publish_errors = Counter(
            f"{PREFIX}_outbox_publish_errors",
            "Outbox rows whose publication failed (left pending, retried), by reason.",
            ["table", "reason"],
            registry=reg,
        )

    def __repr__(self) -> str:
        return f"StreamkitMetrics(metrics={len(self.metric_names())})"

    def metric_names(self) -> set[str]:
        """The metric family names registered (``streamkit_produced``, ...)."""
        return {
            metric.name
            for metric in self.registry.collect()
            if metric.name.startswith(PREFIX + "_")
        }

    def sample_names(self) -> set[str]:
        """Every series name a scrape can show: ``_total``, ``_bucket``, ``_sum``, ...

        Names come from the collectors' types, so series that have no samples yet
        (no label values used) are included.
        """
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }
        return {
            metric.name + suffix
            for metric in self.registry.collect()
            if metric.name.startswith(PREFIX + "_")
            for suffix in suffixes.get(metric.type, ("",))
        }

    def producer(self, client_id: str) -> ProducerMetrics:
        """A binding for one producer (``client_id`` labels its queue depth)."""
        return ProducerMetrics(self, client_id)

    def consumer(self, group: str) -> ConsumerMetrics:
        """A binding for one consumer, a member of ``group``."""
        return ConsumerMetrics(self, group)

    def outbox(self, table: str) -> OutboxMetrics:
        """A binding for the relay of one outbox ``table``."""
        return OutboxMetrics(self, table)


class _Children:
    """Labelled children of one metric, cached by label values."""

    __slots__ = ("_cache", "_metric", "_prefix")

    def __init__(self, metric: Any, *prefix: str) -> None:
        self._metric = metric
        self._prefix = prefix
        self._cache: dict[Any, Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels, *self._prefix)
        return child


class ProducerMetrics:
    """What one producer reports; made by :meth:`StreamkitMetrics.producer`."""

    def __init__(self, metrics: StreamkitMetrics, client_id: str) -> None:
        self.client_id = client_id
        self._produced = _Children(metrics.produced)
        self._delivered = _Children(metrics.delivered)
        self._errors = _Children(metrics.delivery_errors)
        self._queue = metrics.producer_queue.labels(client_id)
        self._bytes = _Children(metrics.produced_bytes)
        self._per_event = _Children(metrics.produced_bytes_per_event)
        # Cumulative (bytes, records) per (topic, stage): partition txbytes/txmsgs are
        # running totals, topic batchsize/batchcnt cover one statistics window each.
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"ProducerMetrics(client_id={self.client_id!r})"

    def sent(self, topic: str) -> None:
        """A record was handed to librdkafka."""
        self._produced(topic).inc()

    def delivered(self, topic: str) -> None:
        """A record was acknowledged."""
        self._delivered(topic).inc()

    def failed(self, topic: str, reason: str) -> None:
        """A record's delivery failed; ``reason`` is a librdkafka error name."""
        self._errors(topic, reason.strip("_").lower()).inc()

    def on_statistics(self, stats_json: str) -> None:
        """``stats_cb``: queue depth and produced bytes from librdkafka statistics."""
        try:
            stats = json.loads(stats_json)
            self._queue.set(float(stats.get("msg_cnt", 0)))
            for topic, figures in (stats.get("topics") or {}).items():
                self._count_bytes(topic, figures)
        except (ValueError, TypeError, AttributeError, KeyError):
            log.debug("unreadable producer statistics", exc_info=True)

    def _count_bytes(self, topic: str, figures: dict[str, Any]) -> None:
        partitions = [p for p in figures.get("partitions", {}).values() if p["partition"] >= 0]
        uncompressed = (
            sum(int(p["txbytes"]) for p in partitions),
            sum(int(p["txmsgs"]) for p in partitions),
        )
        before = self._totals.get((topic, "uncompressed"), (0, 0))
        self._add(topic, "uncompressed", uncompressed[0] - before[0], uncompressed)
        window_bytes = int(figures.get("batchsize", {}).get("sum", 0))
        window_records = int(figures.get("batchcnt", {}).get("sum", 0))
        bytes_, records = self._totals.get((topic, "compressed"), (0, 0))
        self._add(
            topic, "compressed", window_bytes, (bytes_ + window_bytes, records + window_records)
        )

    def _add(self, topic: str, stage: str, delta: int, total: tuple[int, int]) -> None:
        self._totals[(topic, stage)] = total
        if delta > 0:
            self._bytes(topic, stage).inc(delta)
        if total[1] > 0:
            self._per_event(topic, stage).set(total[0] / total[1])


class ConsumerMetrics:
    """What one consumer (a member of ``group``) reports; see :meth:`StreamkitMetrics.consumer`.

    Each binding keeps the lag series it set, so that partitions it no longer owns
    lose their series without touching those of other members of the group.
    """

    def __init__(self, metrics: StreamkitMetrics, group: str) -> None:
        self.group = group
        self._metrics = metrics
        self._consumed = _Children(metrics.consumed, group)
        self._processed = _Children(metrics.processed, group)
        self._handler = _Children(metrics.handler_seconds, group)
        self._age = _Children(metrics.event_age, group)
        self._duplicates = _Children(metrics.duplicates, group)
        self._retries = _Children(metrics.retries, group)
        self._lag_series: set[tuple[str, str]] = set()
        self._watermark_series: set[tuple[str, str]] = set()
        self._lag_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConsumerMetrics(group={self.group!r})"

    def consumed(self, topic: str) -> None:
        """A message was read."""
        self._consumed(topic).inc()

    def consumed_batch(self, topics: list[str]) -> None:
        """Messages were read; one topic per message (counted once per topic)."""
        if len(set(topics)) == 1:
            self._consumed(topics[0]).inc(len(topics))
            return
        for topic, count in collections.Counter(topics).items():
            self._consumed(topic).inc(count)

    def processed(self, topic: str, event_timestamp_ms: int | None = None) -> None:
        """The handler finished an event; its age since ``event_timestamp_ms`` is observed."""
        self._processed(topic).inc()
        if event_timestamp_ms:
            self._age(topic).observe(max(0.0, time.time() - event_timestamp_ms / 1000))

    def handler_time(self, topic: str, seconds: float) -> None:
        """One handler attempt took ``seconds``."""
        self._handler(topic).observe(seconds)

    def duplicate(self, topic: str) -> None:
        """An event was skipped as a duplicate."""
        self._duplicates(topic).inc()

    def retry(self, topic: str) -> None:
        """A failed handler attempt will be retried."""
        self._retries(topic).inc()

    def dead_lettered(self, topic: str, reason: str) -> None:
        """A message went to the dead-letter topic (``undecodable``/``handler_failed``)."""
        self._metrics.dead_lettered.labels(topic, self.group, reason).inc()

    def rebalance(self, kind: str) -> None:
        """A rebalance callback ran: ``assign``, ``revoke`` or ``lost``."""
        self._metrics.rebalances.labels(self.group, kind).inc()

    def on_statistics(self, stats_json: str) -> None:
        """``stats_cb``: per-partition consumer lag from librdkafka statistics."""
        try:
            lags = dict(_partition_lags(json.loads(stats_json)))
        except (ValueError, TypeError, AttributeError):
            log.debug("unreadable consumer statistics", exc_info=True)
            return
        self.set_lags(lags)

    def set_lags(self, lags: dict[tuple[str, str], int]) -> None:
        """Set the lag of each (topic, partition) owned; drop series no longer reported."""
        gauge = self._metrics.consumer_lag
        with self._lag_lock:
            for topic, partition in self._lag_series - lags.keys():
                with contextlib.suppress(KeyError):  # removed by a reset meanwhile
                    gauge.remove(topic, self.group, partition)
            for (topic, partition), lag in lags.items():
                gauge.labels(topic, self.group, partition).set(lag)
            self._lag_series = set(lags)

    def pipeline(self, *, in_flight: int, running: int, paused: int) -> None:
        """The pipeline's state: messages held, handlers running, partitions paused."""
        metrics = self._metrics
        metrics.in_flight.labels(self.group).set(in_flight)
        metrics.handlers_running.labels(self.group).set(running)
        metrics.paused_partitions.labels(self.group).set(paused)

    def watermark_lags(self, lags: dict[tuple[str, str], int]) -> None:
        """Set the watermark lag of each (topic, partition) owned; drop the others."""
        gauge = self._metrics.watermark_lag
        with self._lag_lock:
            for topic, partition in self._watermark_series - lags.keys():
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, self.group, partition)
            for (topic, partition), lag in lags.items():
                gauge.labels(topic, self.group, partition).set(lag)
            self._watermark_series = set(lags)

    def dependency(self, name: str, *, up: bool) -> None:
        """A dependency went down (``up=False``) or answers again."""
        self._metrics.dependency_up.labels(self.group, name).set(1 if up else 0)

    def close(self) -> None:
        """Drop the per-partition series of this member (it left the group)."""
        self.set_lags({})
        self.watermark_lags({})


class NullConsumerMetrics(ConsumerMetrics):
    """A :class:`ConsumerMetrics` that records nothing: what a consumer without
    ``metrics`` reports to, so that its code never asks whether metrics are on."""

    def __init__(self, group: str = "") -> None:  # no collectors behind it
        self.group = group

    def __repr__(self) -> str:
        return "NullConsumerMetrics()"

    def consumed(self, topic: str) -> None:
        pass

    def consumed_batch(self, topics: list[str]) -> None:
        pass

    def processed(self, topic: str, event_timestamp_ms: int | None = None) -> None:
        pass

    def handler_time(self, topic: str, seconds: float) -> None:
        pass

    def duplicate(self, topic: str) -> None:
        pass

    def retry(self, topic: str) -> None:
        pass

    def dead_lettered(self, topic: str, reason: str) -> None:
        pass

    def rebalance(self, kind: str) -> None:
        pass

    def on_statistics(self, stats_json: str) -> None:
        pass

    def set_lags(self, lags: dict[tuple[str, str], int]) -> None:
        pass

    def pipeline(self, *, in_flight: int, running: int, paused: int) -> None:
        pass

    def watermark_lags(self, lags: dict[tuple[str, str], int]) -> None:
        pass

    def dependency(self, name: str, *, up: bool) -> None:
        pass

    def close(self) -> None:
        pass


class OutboxMetrics:
    """What an outbox relay reports; made by :meth:`StreamkitMetrics.outbox`."""

    def __init__(self, metrics: StreamkitMetrics, table: str) -> None:
        self.table = table
        self._pending = metrics.outbox_pending.labels(table)
        self._oldest_age = metrics.outbox_oldest_age.labels(table)
        self._published = metrics.outbox_published.labels(table)
        self._errors = metrics.outbox_publish_errors

    def __repr__(self) -> str:
        return f"OutboxMetrics(table={self.table!r})"

    def backlog(self, pending: int, oldest_age_s: float) -> None:
        """The pending rows and the age of the oldest, as just counted."""
        self._pending.set(pending)
        self._oldest_age.set(oldest_age_s)

    def published(self, count: int) -> None:
        """``count`` rows were acknowledged by Kafka and marked."""
        self._published.inc(count)

    def failed(self, reason: str, count: int = 1) -> None:
        """``count`` rows failed to publish (``reason``: librdkafka error name or kind)."""
        self._errors.labels(self.table, reason).inc(count)  # rare: no child cache


def _partition_lags(stats: dict[str, Any]) -> Iterable[tuple[tuple[str, str], int]]:
    """(topic, partition) → lag of the partitions a consumer is fetching."""
    for topic, entry in (stats.get("topics") or {}).items():
        for key, partition in (entry.get("partitions") or {}).items():
            if key == "-1" or partition.get("fetch_state") in (None, "none", "stopped"):
                continue  # -1 is librdkafka's internal unassigned partition
            lag = partition.get("consumer_lag", -1)
            if lag < 0:  # nothing committed yet: lag behind the stored position
                lag = partition.get("consumer_lag_stored", -1)
            if lag >= 0:
                yield (topic, str(partition.get("partition", key))), int(lag)
