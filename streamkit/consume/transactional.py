"""Exactly once within Kafka: a transactional consume → transform → produce loop.

:class:`TransactionalProcessor` reads events with ``isolation.level=read_committed``,
turns each into zero or more output events with a ``transform`` function, and writes
the outputs *and* the consumed offsets in one Kafka transaction per poll:

1. ``begin_transaction``;
2. per input: decode, ``transform`` (retried with the consumer's backoff), produce the
   outputs; an input that cannot be decoded, or whose transform keeps failing, goes to
   the dead-letter topic (``<topic>.dlq``) inside the same transaction (with
   ``retry_delays``, a failed input goes to its next retry topic in the transaction
   instead, and the processor reads its retry topics too);
3. once every input of the poll is finished: ``send_offsets_to_transaction`` with each
   partition's watermark and the group metadata;
4. ``commit_transaction``.

It runs on the consume pipeline (:mod:`streamkit.consume.pipeline`) with the same
decode, retry, dead-letter and dependency rules as the
:class:`~streamkit.consume.consumer.EventConsumer` (an unreachable registry is waited
out, never a reason for a dead letter). With
``concurrency`` > 1 the transforms of one poll run on that many threads, one key at a
time in offset order (``ordering``), all inside the poll's transaction.

A crash anywhere before step 4 leaves no visible output and no committed offset: a
restarted instance with the same ``transactional.id`` fences the old one, its open
transaction is aborted, and the inputs are processed again. A ``read_committed`` reader
of the output topics therefore sees each input's outputs exactly once. Output event ids
are derived from the input's id (:func:`output_event_id`), so a downstream consumer with
a dedup store also recognises them if they are ever produced outside a transaction.
Traced (see :mod:`streamkit.observability.tracing`), each output gets a ``publish`` span,
child of its input's ``process`` span, and that context in its headers: the outputs carry
their input's trace.

The ``transactional.id`` must be stable per instance (e.g. ``orders-enricher-0``) and
unique among running instances: a restart reuses it so that its predecessor's open
transaction is aborted at once rather than after ``transaction.timeout.ms``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streamkit.client.closing import Closing
from streamkit.client.config import client_config
from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.dead_letter import DeadLetter, LetterSettled
from streamkit.consume.decode import Decode
from streamkit.consume.dispatch import Ordering
from streamkit.consume.offsets import OffsetTrackers, PartitionTracker, commits
from streamkit.consume.pipeline import Pipeline
from streamkit.consume.processing import ConsumerStats, install_stop_signals, restore_signals
from streamkit.consume.retry_topics import retry_policy
from streamkit.consume.work import Work
from streamkit.errors import ConfigError, ConfigProblem, RegistryError, StreamkitError
from streamkit.observability.metrics import NullConsumerMetrics
from streamkit.observability.tracing import tracing_for
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, Headers
from streamkit.serde.payloads import PayloadType
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, SchemaSet
from streamkit.settings import StreamkitSettings, env_var_name, load_settings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["Output", "TransactionStats", "TransactionalProcessor", "Transform", "output_event_id"]

log = logging.getLogger(__name__)

_TXN_TIMEOUT_S = 30.0
_COMMIT_ATTEMPTS = 5
_QUEUE_FULL_WAIT_S = 0.05
_OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c8e-9a57-3d2e1f0b7c11")


class Output(NamedTuple):
    """One event a transform emits: destination, payload, partitioning key, schema."""

    topic: str
    payload: Any
    key: str | bytes | None = None
    schema: str | None = None
    """Full name of the value schema; default: the schema declaring ``topic``."""


Transform = Callable[[Event[Any]], Iterable[Output | tuple[Any, ...]]]


@dataclass
class TransactionStats:
    """Counters of a :class:`TransactionalProcessor` (across its runs)."""

    consumed: int = 0
    """Inputs whose transaction committed."""
    produced: int = 0
    """Outputs committed."""
    dead_lettered: int = 0
    """Dead letters committed."""
    retries: int = 0
    committed: int = 0
    """Transactions committed."""
    aborted: int = 0
    """Transactions aborted (their inputs were processed again)."""


def output_event_id(source_id: str, index: int) -> str:
    """The id of the ``index``-th output of the event ``source_id`` (a stable uuid5)."""
    return str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, f"{source_id}/{index}"))


def _retriable(error: BaseException) -> bool:
    # Schema errors in outputs are deterministic: retrying cannot help. A registry
    # that cannot be reached to register an output schema may answer later.
    if isinstance(error, RegistryError):
        return error.transient
    return not isinstance(error, StreamkitError)


class _AbortError(Exception):
    """Internal: the transaction must be aborted and its inputs processed again."""


class _Transaction:
    """The processor's commit stage: one transaction per polled batch.

    Outputs and dead letters are produced into the open transaction as inputs finish;
    once every input of the batch is finished (the pipeline takes no more meanwhile),
    the partitions' watermarks are sent to the transaction and it commits. An abortable
    error aborts it and rewinds the partitions to where it began.
    """

    def __init__(
        self,
        producer: EventProducer,
        client: Any,
        trackers: OffsetTrackers,
        stats: TransactionStats,
        pipeline_stats: ConsumerStats,
        group: str,
    ) -> None:
        self._producer = producer
        self._client = client
        self._trackers = trackers
        self._stats = stats
        self._pipeline_stats = pipeline_stats
        self._group = group
        self._lock = threading.Lock()
        self._open = False
        self._start: dict[tuple[str, int], int | None] = {}
        self._inputs = self._outputs = self._letters = 0
        self._doomed: str | None = None

    def __repr__(self) -> str:
        return f"_Transaction(open={self._open}, inputs={self._inputs})"

    # Called by the pipeline (poll thread) -------------------------------------------

    def begin_batch(self, messages: int) -> None:
        if not self._open:
            self._call("begin transaction", self._producer.client.begin_transaction)
            self._open = True
            self._start = {t.key: t.watermark for t in self._trackers.all()}
        self._inputs += messages

    def turn(self, trackers: OffsetTrackers, held: int) -> None:
        if self._open and held == 0:
            self._end(trackers.all())

    def hand_over(self, trackers: Sequence[PartitionTracker], held: int) -> None:
        if self._open:
            self._end(self._trackers.all())

    # Called by handlers (any thread) ------------------------------------------------

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers) -> None:
        """Produce one record into the open transaction."""
        client = self._producer.client
        deadline = time.monotonic() + _TXN_TIMEOUT_S
        while True:
            try:
                client.produce(topic, value, key, headers=list(headers))
                return
            except BufferError:
                if time.monotonic() > deadline:
                    self.doom(f"producer queue stayed full for {_TXN_TIMEOUT_S:.0f} s")
                    return
                client.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.txn_requires_abort():
                    self.doom(f"produce: {error.str()}")
                    return
                raise translate_kafka_error(error, operation="produce", topic=topic) from exc

    def produced(self, outputs: int = 0, letters: int = 0) -> None:
        """Count records produced into the open transaction."""
        with self._lock:
            self._outputs += outputs
            self._letters += letters

    def doom(self, reason: str) -> None:
        """The open transaction cannot commit: abort it at the end of the batch."""
        self._doomed = reason

    # Ending ---------------------------------------------------------------------------

    def _end(self, trackers: list[PartitionTracker]) -> None:
        complete = all(t.unfinished == 0 for t in trackers)
        try:
            if self._doomed is not None:
                raise _AbortError(self._doomed)
            if not complete:
                raise _AbortError("inputs of the batch were left unfinished")
            found = commits(trackers, finished_above=False)
            offsets = [TopicPartition(tp.topic, tp.partition, tp.offset) for _, tp in found]
            if offsets:
                self._call(
                    "send offsets to transaction",
                    self._producer.client.send_offsets_to_transaction,
                    offsets,
                    self._client.consumer_group_metadata(),
                    _TXN_TIMEOUT_S,
                )
            self._commit()
        except _AbortError as exc:
            self._abort(trackers, exc)
            return
        except BaseException as exc:
            # Failing: do not leave the transaction open behind us, if the client can
            # still abort it; the error being raised matters more than a failed abort.
            with suppress(StreamkitError, _AbortError):
                self._abort(trackers, exc)
            raise
        for tracker, tp in found:
            tracker.mark_committed(tp.offset)
        stats = self._stats
        stats.committed += 1
        stats.consumed += self._inputs
        stats.produced += self._outputs
        stats.dead_lettered += self._letters
        stats.retries = self._pipeline_stats.retries
        self._reset()

    def _reset(self) -> None:
        self._open = False
        self._doomed = None
        self._inputs = self._outputs = self._letters = 0

    def _call(self, action: str, method: Callable[..., Any], *args: Any) -> Any:
        """Call a transaction API; abortable errors become :class:`_AbortError`."""
        try:
            return method(*args)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.txn_requires_abort():
                raise _AbortError(f"{action}: {error.str()}") from exc
            raise translate_kafka_error(error, operation=action) from exc

    def _commit(self) -> None:
        client = self._producer.client
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                client.commit_transaction(_TXN_TIMEOUT_S)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                # librdkafka: a retriable commit error leaves the outcome open; commit again.
                if error.retriable() and attempt < _COMMIT_ATTEMPTS:
                    log.info("commit transaction: %s; retrying", error.str())
                    continue
                if error.txn_requires_abort():
                    raise _AbortError(f"commit transaction: {error.str()}") from exc
                raise translate_kafka_error(error, operation="commit transaction") from exc

    def _abort(self, trackers: list[PartitionTracker], reason: BaseException) -> None:
        """Abort the open transaction and rewind to where it began."""
        log.warning("processor %s: aborting transaction: %s", self._group, reason)
        self._reset()
        try:
            self._producer.client.abort_transaction(_TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise translate_kafka_error(exc.args[0], operation="abort transaction") from exc
        self._stats.aborted += 1
        for tracker in trackers:
            start = self._start.get(tracker.key, tracker.committed)
            if start is None or tracker.highest is None:
                continue  # nothing of it was read in this transaction
            tracker.reset(start)
            try:
                self._client.seek(TopicPartition(tracker.topic, tracker.partition, start))
            except KafkaException as exc:
                # Revoked meanwhile: its next owner starts from the last committed offset.
                log.info("not rewinding %s: %s", tracker, exc.args[0].str())


class _TransactionSink:
    """Dead letters written into the open transaction (durable when it commits)."""

    def __init__(self, transaction: _Transaction, settled: LetterSettled) -> None:
        self._transaction = transaction
        self._settled = settled

    @property
    def pending(self) -> int:
        return 0

    def send(self, work: Work, letter: DeadLetter) -> None:
        self._transaction.produce(letter.topic, letter.value, letter.key, letter.headers)
        self._transaction.produced(letters=1)
        self._settled(work, None)

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


class TransactionalProcessor(Closing):
    """Consume, transform and produce with exactly-once effect on the output topics.

    Args:
        topics: input topics.
        transform: ``(event) -> iterable of Output`` (or ``(topic, payload, key)``
            tuples); raising means failure, retried, then dead-lettered.
        settings: resolved settings (default: from the environment); needs
            ``consumer.group_id`` and ``producer.transactional_id``.
        schemas: schemas of the outputs, or their directory.
        registry: schema registry face (default: from settings).
        reader_schemas: reader schema per input topic, for schema evolution.
        batch_size: most inputs per poll, hence per transaction.
        consumer_config: extra consumer properties (they win over settings).
        producer_config: extra producer properties (they win over settings).
        concurrency: transforms running at once within a transaction (default
            ``STREAMKIT_CONSUMER__CONCURRENCY``).
        ordering: ``"key"``, ``"partition"`` or ``"none"`` (default
            ``STREAMKIT_CONSUMER__ORDERING``).
        payload_type: a pydantic model, or a mapping from writer schema full name to
            model: ``transform`` gets ``Event[Model]`` (see ``EventConsumer``).
        tracer_provider: OpenTelemetry provider for the inputs' consumer spans and the
            outputs' producer spans (default: the global one, if set).
    """

    def __init__(
        self,
        topics: Sequence[str],
        transform: Transform,
        *,
        settings: StreamkitSettings | None = None,
        schemas: SchemaSet | str | Path = "schemas",
        registry: SchemaRegistry | None = None,
        reader_schemas: Mapping[str, AvroSchema] | None = None,
        batch_size: int = 100,
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        ordering: Ordering | None = None,
        payload_type: PayloadType | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.group_id, self.transactional_id = _required_ids(self.settings)
        consumer_settings = self.settings.consumer.with_overrides(
            concurrency=concurrency, ordering=ordering
        )
        self.topics = list(topics)
        self.stats = TransactionStats()
        self._transform = transform
        self._tracing = tracing_for(tracer_provider, self.settings.kafka.client_id)
        self._owns_registry = registry is None
        self._registry = registry or SchemaRegistry(self.settings)
        self._consumer = Consumer(
            client_config(
                self.settings,
                "consumer",
                overrides={
                    "logger": log,
                    **(consumer_config or {}),
                    # Uncommitted or aborted records of upstream transactions are never input.
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                },
            )
        )
        try:
            # EventProducer calls init_transactions: it fences an earlier instance with
            # this transactional.id and aborts whatever transaction it left open.
            self._producer = EventProducer(
                self.settings,
                schemas=schemas,
                registry=self._registry,
                config={"logger": log, **(producer_config or {})},
            )
        except BaseException:
            self._consumer.close()
            raise
        pipeline_stats = ConsumerStats()
        transaction: list[_Transaction] = []

        def stage(trackers: OffsetTrackers) -> _Transaction:
            transaction.append(
                _Transaction(
                    self._producer,
                    self._consumer,
                    trackers,
                    self.stats,
                    pipeline_stats,
                    self.group_id,
                )
            )
            return transaction[0]

        policy, retry_topics = retry_policy(
            consumer_settings, self.group_id, self.topics, retriable=_retriable
        )
        self._pipeline = Pipeline(
            self._consumer,
            group=self.group_id,
            topics=self.topics,
            settings=consumer_settings,
            decode=Decode.of(self._registry, reader_schemas, payload_type),
            gate=None,
            policy=policy,
            retry_topics=retry_topics,
            sink=lambda settled: _TransactionSink(transaction[0], settled),
            observer=NullConsumerMetrics(),
            stats=pipeline_stats,
            batch_size=batch_size,
            inline=consumer_settings.concurrency == 1,
            commit=stage,
            barrier=True,
            role="processor",
            tracing=self._tracing,
        )
        self._transaction = transaction[0]
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"TransactionalProcessor(group={self.group_id!r}, "
            f"transactional_id={self.transactional_id!r}, topics={self.topics!r})"
        )

    def stop(self) -> None:
        """Ask :meth:`run` to return after the transaction in flight."""
        self._pipeline.stop()

    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> TransactionStats:
        """Process until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        Args:
            max_messages: take exactly this many inputs, commit them, return.
            idle_timeout_s: return after this long without any input.
            handle_signals: install SIGTERM/SIGINT handlers (main thread only).

        Raises:
            KafkaClientError: a fatal client error, e.g. this instance was fenced by
                another one with the same ``transactional.id``.
        """
        previous = (
            install_stop_signals(self.stop, f"processor {self.group_id}") if handle_signals else {}
        )
        try:
            executor = self._pipeline.executor_for(self._process, f"streamkit-{self.group_id}")
            self._pipeline.run(executor, max_messages=max_messages, idle_timeout_s=idle_timeout_s)
        finally:
            restore_signals(previous)
        return self.stats

    def _process(self, event: Event) -> None:
        """The handler: transform one input, encode every output first (so a bad one
        produces nothing), produce them into the open transaction."""
        encoded = self._encode(event, self._transform(event))
        for topic, value, key, headers in encoded:
            self._transaction.produce(topic, value, key, headers)
        self._transaction.produced(outputs=len(encoded))

    def _encode(
        self, source: Event, outputs: Iterable[Output | tuple[Any, ...]]
    ) -> list[tuple[str, bytes, bytes | None, Headers]]:
        encoded = []
        for index, item in enumerate(outputs):
            output = item if isinstance(item, Output) else Output(*item)
            encoder = self._producer.encoder(output.topic, output.schema)
            event = Event(
                payload=output.payload,
                type=encoder.schema.name.rpartition(".")[2],
                id=output_event_id(source.id, index),
                timestamp=source.timestamp,
            )
            key = output.key.encode() if isinstance(output.key, str) else output.key
            value, headers = encoder.encode(event), encoder.headers(event)
            span = self._tracing.publish(output.topic, key, event.id)  # child of the input's
            span.inject(headers)
            span.end()
            encoded.append((output.topic, value, key, headers))
        return encoded

    def close(self) -> None:
        """Leave the group and release the clients (an open transaction was aborted)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        finally:
            self._producer.close()
            if self._owns_registry:
                self._registry.close()


def _required_ids(settings: StreamkitSettings) -> tuple[str, str]:
    problems = []
    if not settings.consumer.group_id:
        problems.append(
            ConfigProblem(
                env_var_name("consumer", "group_id"),
                "is required to consume as a group",
                "name the consumer group, e.g. orders-enricher",
            )
        )
    if not settings.producer.transactional_id:
        problems.append(
            ConfigProblem(
                env_var_name("producer", "transactional_id"),
                "is required for transactions",
                "a stable id per instance, e.g. orders-enricher-0, reused on restart",
            )
        )
    if problems:
        raise ConfigError(problems)
    return settings.consumer.group_id or "", settings.producer.transactional_id or ""
