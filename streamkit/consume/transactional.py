"""Exactly once within Kafka: a transactional consume → transform → produce loop.

:class:`TransactionalProcessor` reads events with ``isolation.level=read_committed``,
turns each into zero or more output events with a ``transform`` function, and writes
the outputs *and* the consumed offsets in one Kafka transaction per poll:

1. ``begin_transaction``;
2. per input: decode, ``transform`` (retried with the consumer's backoff), produce the
   outputs; an input that cannot be decoded, or whose transform keeps failing, goes to
   the dead-letter topic (``<topic>.dlq``) inside the same transaction;
3. ``send_offsets_to_transaction`` with the consumer's positions and group metadata;
4. ``commit_transaction``.

A crash anywhere before step 4 leaves no visible output and no committed offset: a
restarted instance with the same ``transactional.id`` fences the old one, its open
transaction is aborted, and the inputs are processed again. A ``read_committed`` reader
of the output topics therefore sees each input's outputs exactly once. Output event ids
are derived from the input's id (:func:`output_event_id`), so a downstream consumer with
a dedup store also recognises them if they are ever produced outside a transaction.

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
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamkit.client.config import client_config
from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.processing import (
    backoff_delays,
    dead_letter,
    install_stop_signals,
    restore_signals,
    take_batch,
    usable_message,
)
from streamkit.errors import (
    ConfigError,
    ConfigProblem,
    DeserializationError,
    StreamkitError,
)
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, EventDecoder, Headers
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, SchemaSet
from streamkit.settings import StreamkitSettings, env_var_name, load_settings

__all__ = ["Output", "TransactionStats", "TransactionalProcessor", "Transform", "output_event_id"]

log = logging.getLogger(__name__)

_POLL_TIMEOUT_S = 0.5
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


Transform = Callable[[Event], Iterable[Output | tuple[Any, ...]]]


@dataclass
class TransactionStats:
    """Counters of one :meth:`TransactionalProcessor.run`."""

    consumed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    retries: int = 0
    committed: int = 0
    """Transactions committed."""
    aborted: int = 0
    """Transactions aborted (their inputs were processed again)."""


def output_event_id(source_id: str, index: int) -> str:
    """The id of the ``index``-th output of the event ``source_id`` (a stable uuid5)."""
    return str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, f"{source_id}/{index}"))


class _AbortError(Exception):
    """Internal: the transaction must be aborted and its inputs processed again."""


class TransactionalProcessor:
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
    ) -> None:
        self.settings = settings or load_settings()
        self.group_id, self.transactional_id = _required_ids(self.settings)
        self.topics = list(topics)
        self.stats = TransactionStats()
        self._transform = transform
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._owns_registry = registry is None
        self._registry = registry or SchemaRegistry(self.settings)
        self._decoder = EventDecoder(self._registry, reader_schemas)
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
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"TransactionalProcessor(group={self.group_id!r}, "
            f"transactional_id={self.transactional_id!r}, topics={self.topics!r})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the transaction in flight."""
        self._stopping.set()

    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> TransactionStats:
        """Process until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        Args:
            max_messages: return after this many inputs were consumed.
            idle_timeout_s: return after this long without any input.
            handle_signals: install SIGTERM/SIGINT handlers (main thread only).

        Raises:
            KafkaClientError: a fatal client error, e.g. this instance was fenced by
                another one with the same ``transactional.id``.
        """
        previous = (
            install_stop_signals(self.stop, f"processor {self.group_id}") if handle_signals else {}
        )
        self._consumer.subscribe(self.topics)
        last_input = time.monotonic()
        try:
            while not self._stopping.is_set():
                messages = take_batch(self._consumer, self._batch_size, _POLL_TIMEOUT_S)
                usable = [
                    m
                    for m in messages
                    if usable_message(m, self.group_id, f"processor {self.group_id}")
                ]
                if usable:
                    last_input = time.monotonic()
                    self._process(usable)
                elif idle_timeout_s is not None and time.monotonic() - last_input > idle_timeout_s:
                    break
                if max_messages is not None and self.stats.consumed >= max_messages:
                    break
        finally:
            restore_signals(previous)
        return self.stats

    # One transaction per poll -------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        client = self._producer.client
        self._txn("begin transaction", client.begin_transaction)
        try:
            produced = sum(self._process_one(message) for message in messages)
            self._txn(
                "send offsets to transaction",
                client.send_offsets_to_transaction,
                self._positions(messages),
                self._consumer.consumer_group_metadata(),
                _TXN_TIMEOUT_S,
            )
            self._commit()
        except _AbortError as exc:
            self._abort(messages, exc)
            return
        except BaseException as exc:
            # Failing: do not leave the transaction open behind us, if the client can
            # still abort it; the error being raised matters more than a failed abort.
            with suppress(StreamkitError):
                self._abort(messages, exc)
            raise
        self.stats.consumed += len(messages)
        self.stats.produced += produced
        self.stats.committed += 1

    def _process_one(self, message: Message) -> int:
        """Produce the outputs of one input (or its dead letter); return how many."""
        try:
            event = self._decoder.decode(
                message.value(),
                topic=message.topic() or "",
                partition=message.partition(),
                offset=message.offset(),
                key=message.key(),
                headers=message.headers(),
            )
        except DeserializationError as exc:
            self._dead_letter(message, exc, attempts=0)
            return 0
        delays = chain(backoff_delays(self.settings.consumer), [None])
        for attempts, delay in enumerate(delays, start=1):
            try:
                encoded = self._encode(event, self._transform(event))
                break
            except Exception as exc:
                if delay is None or isinstance(exc, StreamkitError):
                    # Schema errors in outputs are deterministic: retrying cannot help.
                    self._dead_letter(message, exc, attempts=attempts)
                    return 0
                self.stats.retries += 1
                log.info(
                    "transform failed (%s: %s); retrying in %.2f s", type(exc).__name__, exc, delay
                )
                if self._stopping.wait(delay):
                    raise _AbortError("stop requested during a retry") from exc
        for topic, value, key, headers in encoded:
            self._produce(topic, value, key, headers)
        return len(encoded)

    def _encode(
        self, source: Event, outputs: Iterable[Output | tuple[Any, ...]]
    ) -> list[tuple[str, bytes, bytes | None, Headers]]:
        """Validate and encode every output first, so a bad one produces nothing."""
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
            encoded.append((output.topic, encoder.encode(event), key, encoder.headers(event)))
        return encoded

    def _produce(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Sequence[Any]
    ) -> None:
        client = self._producer.client
        deadline = time.monotonic() + _TXN_TIMEOUT_S
        while True:
            try:
                client.produce(topic, value, key, headers=list(headers))
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise _AbortError(
                        f"producer queue stayed full for {_TXN_TIMEOUT_S:.0f} s"
                    ) from None
                client.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                raise translate_kafka_error(exc.args[0], operation="produce", topic=topic) from exc

    def _dead_letter(self, message: Message, error: BaseException, *, attempts: int) -> None:
        letter = dead_letter(
            message,
            error,
            attempts=attempts,
            group=self.group_id,
            suffix=self.settings.consumer.dead_letter_suffix,
        )
        log.warning(
            "dead-lettering %s[%s]@%s to %s in the transaction: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            letter.topic,
            error,
        )
        self._produce(letter.topic, letter.value, letter.key, letter.headers)
        self.stats.dead_lettered += 1

    def _positions(self, messages: list[Message]) -> list[TopicPartition]:
        """The next offset of every partition the batch read from."""
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            last[(message.topic() or "", message.partition() or 0)] = message.offset() or 0
        return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]

    def _txn(self, action: str, method: Callable[..., Any], *args: Any) -> Any:
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

    def _abort(self, messages: list[Message], reason: BaseException) -> None:
        """Abort the open transaction and rewind to the batch's first offsets."""
        log.warning("processor %s: aborting transaction: %s", self.group_id, reason)
        try:
            self._producer.client.abort_transaction(_TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise translate_kafka_error(exc.args[0], operation="abort transaction") from exc
        self.stats.aborted += 1
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            first.setdefault(
                (message.topic() or "", message.partition() or 0), message.offset() or 0
            )
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Revoked meanwhile: its next owner starts from the last committed offset.
                log.info("not rewinding %s[%d]: %s", topic, partition, exc.args[0].str())

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
