"""EventConsumer: a consumer-group member running a handler over events, at least once.

A thin face on the consume pipeline (:mod:`streamkit.consume.pipeline`): poll → decode
→ dedup gate → dispatch → handler → retry / dead letter → finish → watermark commit.

With ``concurrency=1`` (the default) the handler runs on the poll thread, one event at
a time, as a plain loop. With ``concurrency=N`` it runs on N threads: under
``ordering="key"`` (the default) events of one key are handled one after the other in
offset order while different keys run side by side; ``"partition"`` orders per
partition; ``"none"`` not at all. Whatever the concurrency, a partition's offset is
committed only up to its *watermark*, below which every message is finished (handled,
skipped as a duplicate, or acknowledged by the dead-letter or a retry topic). A handler
that keeps failing is retried with backoff (without holding other keys), or through
delayed retry topics (``retry_delays``: the partition flows on meanwhile), then its
message goes to ``<topic>.dlq`` with headers saying why; a message that cannot be
decoded goes there at once. An unreachable registry, dedup store or dead-letter topic is
waited out. When most handler calls fail, the failure breaker stops taking messages
until handlers succeed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamkit.client.closing import Closing
from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.consume.dead_letter import LetterSettled, ProducerSink
from streamkit.consume.decode import Decode
from streamkit.consume.dedup_gate import DedupGate
from streamkit.consume.dispatch import Ordering
from streamkit.consume.executors import Executor
from streamkit.consume.pipeline import Pipeline
from streamkit.consume.processing import ConsumerStats, install_stop_signals, restore_signals
from streamkit.consume.rebalance import RebalanceHook
from streamkit.consume.retry_topics import retry_policy
from streamkit.dedup import DedupStore
from streamkit.errors import ConfigError, ConfigProblem
from streamkit.observability.metrics import ConsumerMetrics, NullConsumerMetrics
from streamkit.observability.tracing import tracing_for
from streamkit.serde.events import Event
from streamkit.serde.payloads import PayloadType
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema
from streamkit.settings import StreamkitSettings, env_var_name, load_settings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from streamkit.observability.metrics import StreamkitMetrics

__all__ = ["BatchHandler", "EventConsumer", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any]], Any]
"""A handler: ``Event`` (dict payloads) or ``Event[Model]`` with ``payload_type=Model``."""
BatchHandler = Callable[[list[Event[Any]]], Any]


class EventConsumer(Closing):
    """Runs a handler over the events of one or more topics, as a group member.

    Args:
        topics: topics to subscribe to.
        handler: called with each :class:`~streamkit.serde.events.Event`; raising means failure.
        batch_handler: alternative to ``handler`` (concurrency 1 only): called with the
            events of one poll; when it keeps failing they are handled one by one.
        settings: resolved settings (default: from the environment);
            ``consumer.group_id`` is required.
        registry: schema registry face, for writer schemas (default: from settings).
        reader_schemas: reader schema per topic, for schema evolution.
        dedup: deduplication store; events whose id it has completed are skipped.
        dedup_key_fn: ``(message) -> str``; default: the ``event-id`` header.
        commit: ``"auto"`` commits finished offsets as the consumer goes; ``"manual"``
            only when :meth:`commit` is called (still only what was finished).
        batch_size: most messages taken per poll.
        on_assign: called with the assigned partitions after streamkit's own work.
        on_revoke: called with the revoked partitions after streamkit's own work.
        config: extra consumer properties (they win over settings).
        metrics: Prometheus collectors to report to (consumed, processed, handler
            latency, duplicates, retries, dead letters, rebalances, lag, in flight,
            paused partitions, handlers running, watermark lag, dependencies, retry
            hops by stage, retry partitions waiting, the failure breaker).
        concurrency: handler calls at once (default ``STREAMKIT_CONSUMER__CONCURRENCY``).
        ordering: ``"key"``, ``"partition"`` or ``"none"`` (default
            ``STREAMKIT_CONSUMER__ORDERING``).
        max_in_flight: most messages held (default ``STREAMKIT_CONSUMER__MAX_IN_FLIGHT``,
            else 10 x concurrency).
        payload_type: a pydantic model, or a mapping from writer schema full name to
            model: the handler gets ``Event[Model]``; a payload that does not fit is
            dead-lettered naming the field (:mod:`streamkit.serde.payloads`).
        tracer_provider: OpenTelemetry provider to record consumer spans with (default:
            the global one, if set; see :mod:`streamkit.observability.tracing`).
    """

    def __init__(
        self,
        topics: Sequence[str],
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        settings: StreamkitSettings | None = None,
        registry: SchemaRegistry | None = None,
        reader_schemas: Mapping[str, AvroSchema] | None = None,
        dedup: DedupStore | None = None,
        dedup_key_fn: Callable[[Any], str] | None = None,
        commit: Literal["auto", "manual"] = "auto",
        batch_size: int = 500,
        on_assign: RebalanceHook | None = None,
        on_revoke: RebalanceHook | None = None,
        config: Mapping[str, Any] | None = None,
        metrics: StreamkitMetrics | None = None,
        concurrency: int | None = None,
        ordering: Ordering | None = None,
        max_in_flight: int | None = None,
        payload_type: PayloadType | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise TypeError("give exactly one of handler or batch_handler")
        self.settings = settings or load_settings()
        self.group_id: str = _required_group(self.settings)
        self.consumer_settings = self.settings.consumer.with_overrides(
            concurrency=concurrency, ordering=ordering, max_in_flight=max_in_flight
        )
        if batch_handler is not None and self.consumer_settings.concurrency > 1:
            raise TypeError("batch_handler hands one poll's events at once: use concurrency 1")
        self.topics = list(topics)
        self.stats = ConsumerStats()
        self._call: Handler = handler or (lambda event: batch_handler([event]))  # type: ignore[misc]
        self._owns_registry = registry is None
        self._registry = registry or SchemaRegistry(self.settings)
        observer: ConsumerMetrics = (
            metrics.consumer(self.group_id) if metrics is not None else NullConsumerMetrics()
        )
        self._observer = observer
        if dedup is not None:
            observer.watch_dedup(dedup)  # streamkit_dedup_remembered_ids
        user_on_commit = (config or {}).get("on_commit")

        def on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
            # A failed asynchronous commit is only reported here: commit it again.
            self._pipeline.on_commit(error, partitions)
            if user_on_commit is not None:
                user_on_commit(error, partitions)

        overrides = {
            "error_cb": self._on_error,
            "logger": log,
            **(config or {}),
            "on_commit": on_commit,
        }
        # Fail now, naming the cause, rather than poll an unreachable cluster forever.
        client, _ = connect(
            Consumer,
            client_config(
                self.settings,
                "consumer",
                stats_cb=observer.on_statistics if metrics is not None else None,
                overrides=overrides,
            ),
            self.settings,
            operation="consume",
        )
        self._client = client

        def sink(settled: LetterSettled) -> ProducerSink:
            return ProducerSink(self.settings, settled)

        policy, retry_topics = retry_policy(self.consumer_settings, self.group_id, self.topics)

        self._pipeline = Pipeline(
            client,
            group=self.group_id,
            topics=self.topics,
            settings=self.consumer_settings,
            decode=Decode.of(self._registry, reader_schemas, payload_type),
            gate=DedupGate(dedup, self.group_id, dedup_key_fn) if dedup is not None else None,
            policy=policy,
            retry_topics=retry_topics,
            sink=sink,
            observer=observer,
            stats=self.stats,
            batch_size=batch_size,
            inline=self.consumer_settings.concurrency == 1,
            manual_commit=commit == "manual",
            batch_call=batch_handler,
            on_assign=on_assign,
            on_revoke=on_revoke,
            tracing=tracing_for(tracer_provider, self.settings.kafka.client_id),
        )
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"EventConsumer(group={self.group_id!r}, topics={self.topics!r}, "
            f"concurrency={self.consumer_settings.concurrency}, "
            f"ordering={self.consumer_settings.ordering!r})"
        )

    @property
    def client(self) -> Consumer:
        """The underlying confluent-kafka consumer."""
        return self._client

    @property
    def pipeline(self) -> Pipeline:
        """The consume pipeline behind this face."""
        return self._pipeline

    @property
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs currently assigned to this member."""
        return set(self._pipeline.rebalancer.assignment)

    def _on_error(self, error: KafkaError) -> None:
        log.warning("consumer %s: %s: %s", self.group_id, error.name(), error.str())

    # Run loop -------------------------------------------------------------------

    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        Args:
            max_messages: take exactly this many messages, finish and commit them, return.
            idle_timeout_s: return (after finishing what is held) once this long passed
                without any message.
            handle_signals: install SIGTERM/SIGINT handlers (main thread only).
        """
        previous = (
            install_stop_signals(self.stop, f"consumer {self.group_id}") if handle_signals else {}
        )
        try:
            self.run_with(
                self._executor(), max_messages=max_messages, idle_timeout_s=idle_timeout_s
            )
        finally:
            restore_signals(previous)
        return self.stats

    def run_with(
        self,
        executor: Executor,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> ConsumerStats:
        """:meth:`run` with handlers run by ``executor`` (the asyncio face's way in)."""
        self._pipeline.run(executor, max_messages=max_messages, idle_timeout_s=idle_timeout_s)
        return self.stats

    def _executor(self) -> Executor:
        return self._pipeline.executor_for(self._call, f"streamkit-{self.group_id}")

    def stop(self) -> None:
        """Ask :meth:`run` to stop taking messages, finish the handlers in flight
        (bounded by ``drain_timeout_ms``), commit, and return."""
        self._pipeline.stop()

    def commit(self) -> None:
        """Commit the offsets of every message finished so far (manual mode)."""
        self._pipeline.commit_now()

    def is_alive(self) -> bool:
        """Liveness: the loop polled within ``max.poll.interval.ms`` and the member did
        not lose its assignment (give it to ``serve_metrics(live=...)`` for ``/livez``)."""
        return self._pipeline.liveness.alive()

    def is_ready(self) -> bool:
        """Readiness: :meth:`run` is running, no dependency is being waited out, and the
        failure breaker is closed."""
        pipeline = self._pipeline
        return (
            pipeline.running and not pipeline.dependencies.is_down() and pipeline.breaker.accepting
        )

    # Flow control and shutdown --------------------------------------------------

    def pause(self, partitions: list[TopicPartition] | None = None) -> None:
        """Stop fetching from ``partitions`` (default: all assigned) until :meth:`resume`."""
        self._pipeline.backpressure.pause_by_user(_keys(partitions) or self.assignment)

    def resume(self, partitions: list[TopicPartition] | None = None) -> None:
        """Resume fetching from ``partitions`` (default: all assigned)."""
        self._pipeline.backpressure.resume_by_user(_keys(partitions) or self.assignment)

    def close(self) -> None:
        """Commit what was finished (auto mode), leave the group, release clients."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pipeline.close()
        finally:
            self._observer.close()
            if self._owns_registry:
                self._registry.close()


def _keys(partitions: list[TopicPartition] | None) -> set[tuple[str, int]]:
    return {(tp.topic, tp.partition) for tp in partitions or ()}


def _required_group(settings: StreamkitSettings) -> str:
    group = settings.consumer.group_id
    if not group:
        raise ConfigError(
            [
                ConfigProblem(
                    env_var_name("consumer", "group_id"),
                    "is required to consume as a group",
                    "name the consumer group, e.g. billing-service",
                )
            ]
        )
    return group
