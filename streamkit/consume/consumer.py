"""EventConsumer: a consumer-group runner around a handler, at least once.

The loop is poll → decode → (deduplicate) → handler → store offset → commit. Messages
are handled one after the other, so an offset is committed only once the handler (and
the dedup mark) finished for every earlier message of its partition. A handler that
keeps failing is retried with exponential backoff, then its message goes to the
dead-letter topic (``<topic>.dlq``) with headers saying why; a message that cannot be
decoded goes there at once. The dead letter is acknowledged before the offset moves
past it, so nothing is lost. Before partitions are revoked in a rebalance (eager or
cooperative), the offsets of everything handled are committed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.processing import (
    ConsumerStats,
    DeadLetter,
    backoff_delays,
    dead_letter,
    dedup_key,
    install_stop_signals,
    restore_signals,
    take_batch,
    usable_message,
)
from streamkit.dedup import ClaimResult, DedupStore, scoped_key
from streamkit.errors import (
    ConfigError,
    ConfigProblem,
    DeliveryError,
    DeserializationError,
    RegistryError,
)
from streamkit.serde.events import Event, EventDecoder
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema
from streamkit.settings import StreamkitSettings, env_var_name, load_settings

if TYPE_CHECKING:
    from streamkit.observability.metrics import ConsumerMetrics, StreamkitMetrics

__all__ = ["BatchHandler", "EventConsumer", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[Event], Any]
BatchHandler = Callable[[list[Event]], Any]
RebalanceHook = Callable[[list[TopicPartition]], None]

_Claim = str | None | Literal[False]
_POLL_TIMEOUT_S = 0.5
# Commit failures a group member meets around rebalances and coordinator moves.
_TRANSIENT_COMMIT_ERRORS = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._WAIT_COORD,
        KafkaError._TIMED_OUT,
        # The member was fenced (e.g. frozen past session.timeout.ms); it rejoins, and the
        # partitions' new owner resumes from the last commit.
        KafkaError._ASSIGNMENT_LOST,
    }
)
_DLQ_TIMEOUT_S = 30.0


class _StopRequestedError(Exception):
    """Internal: a stop was requested while waiting; leave the batch unfinished."""


class EventConsumer:
    """Runs a handler over the events of one or more topics, as a group member.

    Args:
        topics: topics to subscribe to.
        handler: called with each :class:`~streamkit.serde.events.Event`; raising means failure.
        batch_handler: alternative to ``handler``: called with the events of one poll.
        settings: resolved settings (default: from the environment);
            ``consumer.group_id`` is required.
        registry: schema registry face, for writer schemas (default: from settings).
        reader_schemas: reader schema per topic, for schema evolution.
        dedup: deduplication store; events whose id it has completed are skipped.
        dedup_key_fn: ``(message) -> str``; default: the ``event-id`` header.
        commit: ``"auto"`` commits after each poll's messages; ``"manual"`` only
            when :meth:`commit` is called (still only what was handled).
        batch_size: most messages taken per poll.
        on_assign: called with the assigned partitions after streamkit's own work.
        on_revoke: called with the revoked partitions after streamkit's own work.
        config: extra consumer properties (they win over settings).
        metrics: Prometheus collectors to report to (consumed, processed, handler
            latency, duplicates, retries, dead letters, rebalances, lag per partition);
            None costs nothing per message.
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
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise TypeError("give exactly one of handler or batch_handler")
        self.settings = settings or load_settings()
        group = self.settings.consumer.group_id
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
        self.group_id: str = group
        self.topics = list(topics)
        self.stats = ConsumerStats()
        self._handler = handler
        self._batch_handler = batch_handler
        self._owns_registry = registry is None
        self._registry = registry or SchemaRegistry(self.settings)
        self._decoder = EventDecoder(self._registry, reader_schemas)
        self._dedup = dedup
        self._dedup_key_fn = dedup_key_fn
        self._manual = commit == "manual"
        self._batch_size = batch_size
        self._user_on_assign = on_assign
        self._user_on_revoke = on_revoke
        self._stopping = threading.Event()
        self._assignment: set[tuple[str, int]] = set()
        self._metrics: ConsumerMetrics | None = (
            metrics.consumer(group) if metrics is not None else None
        )
        overrides = {"error_cb": self._on_error, "logger": log, **(config or {})}
        # Fail now, naming the cause, rather than poll an unreachable cluster forever.
        self._consumer, _ = connect(
            Consumer,
            client_config(
                self.settings,
                "consumer",
                stats_cb=self._metrics.on_statistics if self._metrics else None,
                overrides=overrides,
            ),
            self.settings,
            operation="consume",
        )
        self._dlq_producer: Producer | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"EventConsumer(group={self.group_id!r}, topics={self.topics!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def client(self) -> Consumer:
        """The underlying confluent-kafka consumer."""
        return self._consumer

    @property
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs currently assigned to this member."""
        return set(self._assignment)

    # Rebalance ------------------------------------------------------------------

    def _on_error(self, error: KafkaError) -> None:
        log.warning("consumer %s: %s: %s", self.group_id, error.name(), error.str())

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        if self._metrics is not None:
            self._metrics.rebalance("assign")
        self._assignment.update((tp.topic, tp.partition) for tp in partitions)
        if self._user_on_assign:
            self._user_on_assign(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside poll, between messages: every handled offset is stored, so
        # committing now hands the partitions over with nothing lost or repeated.
        if not self._manual:
            self._commit_stored()
        if self._metrics is not None:
            self._metrics.rebalance("revoke")
        self._assignment.difference_update((tp.topic, tp.partition) for tp in partitions)
        if self._user_on_revoke:
            self._user_on_revoke(partitions)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions already belong to another member: committing would fail.
        log.warning("consumer %s lost %d partitions", self.group_id, len(partitions))
        if self._metrics is not None:
            self._metrics.rebalance("lost")
        self._assignment.difference_update((tp.topic, tp.partition) for tp in partitions)

    # Commit ---------------------------------------------------------------------

    def _commit_stored(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError._NO_OFFSET:
                return
            if error.code() in _TRANSIENT_COMMIT_ERRORS or error.retriable():
                # The offsets stay stored: the next commit (or the revoke) takes them.
                log.info("consumer %s: commit deferred: %s", self.group_id, error.str())
                return
            raise translate_kafka_error(error, operation="commit") from exc
        self.stats.commits += 1

    def commit(self) -> None:
        """Commit the offsets of every message handled so far (manual mode)."""
        self._commit_stored()

    # Run loop -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to finish the message in flight, commit, and return."""
        self._stopping.set()

    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        Args:
            max_messages: return after this many messages were consumed.
            idle_timeout_s: return after this long without any message.
            handle_signals: install SIGTERM/SIGINT handlers (main thread only).
        """
        previous = (
            install_stop_signals(self.stop, f"consumer {self.group_id}") if handle_signals else {}
        )
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        last_message = time.monotonic()
        try:
            while not self._stopping.is_set():
                messages = take_batch(self._consumer, self._batch_size, _POLL_TIMEOUT_S)
                if messages:
                    last_message = time.monotonic()
                    self._process(messages)
                    if not self._manual:
                        self._commit_stored()
                elif idle_timeout_s is not None and (
                    time.monotonic() - last_message > idle_timeout_s
                ):
                    break
                if max_messages is not None and self.stats.consumed >= max_messages:
                    break
        except _StopRequestedError:
            pass
        finally:
            if not self._manual:
                self._commit_stored()
            restore_signals(previous)
        return self.stats

    def _process(self, messages: list[Message]) -> None:
        entries: list[tuple[Message, Event | DeserializationError]] = []
        for message in messages:
            if usable_message(message, self.group_id, "consumer"):
                self.stats.consumed += 1
                entries.append((message, self._decode(message)))
        if self._metrics is not None:
            self._metrics.consumed_batch([message.topic() or "" for message, _ in entries])
        decoded = [(message, item) for message, item in entries if isinstance(item, Event)]
        keys = self._claim([message for message, _ in decoded])
        outstanding = {key for key in keys if key}
        batch_done = self._run_batch(decoded, keys)
        key_of = dict(zip((id(message) for message, _ in decoded), keys, strict=True))
        try:
            for message, item in entries:
                if isinstance(item, DeserializationError):
                    self._dead_letter(message, item, attempts=0)
                else:
                    key = key_of[id(message)]
                    if key is not False and not batch_done:
                        if self._stopping.is_set():
                            raise _StopRequestedError  # the message in flight is finished
                        self._handle_one(message, item, key)
                    if key:
                        outstanding.discard(key)
                self._store(message)
        except _StopRequestedError:
            self._release(list(outstanding))  # let the next owner take them at once
            raise

    def _decode(self, message: Message) -> Event | DeserializationError:
        # A registry that cannot be reached says nothing about the message: wait for it
        # (until stopped) rather than dead-letter good events.
        cap = self.settings.consumer.retry_backoff_max_ms / 1000
        waits = itertools.chain(backoff_delays(self.settings.consumer), itertools.repeat(cap))
        while True:
            try:
                return self._decoder.decode(
                    message.value(),
                    topic=message.topic() or "",
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key(),
                    headers=message.headers(),
                )
            except DeserializationError as exc:
                return exc
            except RegistryError as exc:
                delay = next(waits)
                log.warning(
                    "cannot resolve the writer schema of %s[%s]@%s (%s); retrying in %.1f s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    exc,
                    delay,
                )
                if self._stopping.wait(delay):
                    raise _StopRequestedError from exc

    def _run_batch(self, decoded: list[tuple[Message, Event]], keys: list[_Claim]) -> bool:
        """Hand the batch to the batch handler; False means: handle one by one."""
        batch_handler = self._batch_handler
        events = [event for (_, event), key in zip(decoded, keys, strict=True) if key is not False]
        if batch_handler is None or not events:
            return False
        topics = {event.topic for event in events}
        topic = str(topics.pop()) if len(topics) == 1 else "(mixed)"
        if self._attempt(lambda: batch_handler(events), topic) is not True:
            log.warning("batch of %d events failed; handling them one by one", len(events))
            return False
        self._complete(keys)
        self.stats.processed += len(events)
        if self._metrics is not None:
            for event in events:
                self._metrics.processed(event.topic or "", event.timestamp)
        return True

    def _handle_one(self, message: Message, event: Event, key: str | None) -> None:
        handler = self._handler
        batch_handler = self._batch_handler
        outcome = self._attempt(
            (lambda: handler(event)) if handler else (lambda: batch_handler([event])),  # type: ignore[misc]
            event.topic or "",
        )
        if outcome is True:
            self._complete([key])
            self.stats.processed += 1
            if self._metrics is not None:
                self._metrics.processed(event.topic or "", event.timestamp)
        else:
            self._dead_letter(message, outcome, attempts=self.settings.consumer.max_retries + 1)
            self._release([key])

    def _attempt(self, call: Callable[[], Any], topic: str) -> Any:
        """Run ``call`` with retries; True on success, else the last exception."""
        delays = None  # built on the first failure only: this runs for every message
        metrics = self._metrics
        while True:
            started = time.perf_counter()
            try:
                call()
            except Exception as exc:
                if metrics is not None:
                    metrics.handler_time(topic, time.perf_counter() - started)
                if delays is None:
                    delays = backoff_delays(self.settings.consumer)
                delay = next(delays, None)
                if delay is None:
                    return exc
                self.stats.retries += 1
                if metrics is not None:
                    metrics.retry(topic)
                log.info(
                    "handler failed (%s: %s); retrying in %.2f s", type(exc).__name__, exc, delay
                )
                if self._stopping.wait(delay):
                    raise _StopRequestedError from exc
                continue
            elapsed = time.perf_counter() - started
            self.stats.handler_seconds.append(elapsed)
            if metrics is not None:
                metrics.handler_time(topic, elapsed)
            return True

    # Dedup ----------------------------------------------------------------------

    def _claim(self, messages: list[Message]) -> list[_Claim]:
        """Claim each message's key; per message: the key to complete once handled,
        None without a store, or False for a duplicate to skip. Claims held by other
        members are waited out (until completed or expired), never skipped."""
        if self._dedup is None:
            return [None] * len(messages)
        # Scoped by group: two services reading one topic each handle every event once.
        keys = [
            scoped_key(self.group_id, dedup_key(message, self._dedup_key_fn))
            for message in messages
        ]
        unique = list(dict.fromkeys(keys))
        results = dict(zip(unique, self._dedup.claim(unique), strict=True))
        for key, result in results.items():
            while result is ClaimResult.IN_PROGRESS:
                self.stats.claim_conflicts += 1
                if self._stopping.wait(min(1.0, self.settings.dedup.claim_ttl_s / 4)):
                    self._release([k for k, r in results.items() if r is ClaimResult.CLAIMED])
                    raise _StopRequestedError
                result = results[key] = self._dedup.claim([key])[0]
        outcome: list[_Claim] = []
        seen: set[str] = set()
        for message, key in zip(messages, keys, strict=True):
            # A second copy of an id within one poll is a duplicate of the first.
            if results[key] is ClaimResult.DUPLICATE or key in seen:
                self.stats.duplicates_skipped += 1
                if self._metrics is not None:
                    self._metrics.duplicate(message.topic() or "")
                outcome.append(False)
            else:
                outcome.append(key)
            seen.add(key)
        return outcome

    def _complete(self, keys: Sequence[_Claim]) -> None:
        if self._dedup is not None:
            self._dedup.complete([key for key in keys if key])

    def _release(self, keys: Sequence[_Claim]) -> None:
        if self._dedup is not None and any(keys):
            self._dedup.release([key for key in keys if key])

    # Offsets and dead letters ---------------------------------------------------

    def _store(self, message: Message) -> None:
        try:
            self._consumer.store_offsets(message=message)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            # The partition was revoked meanwhile; its new owner re-reads from the commit.
            log.info(
                "not storing offset %s[%s]@%s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                error.str(),
            )

    def _dead_letter(self, message: Message, error: BaseException, *, attempts: int) -> None:
        letter = dead_letter(
            message,
            error,
            attempts=attempts,
            group=self.group_id,
            suffix=self.settings.consumer.dead_letter_suffix,
        )
        log.warning(
            "dead-lettering %s[%s]@%s to %s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            letter.topic,
            error,
        )
        self._send_dead_letter(letter)
        self.stats.dead_lettered += 1
        if self._metrics is not None:
            reason = "undecodable" if isinstance(error, DeserializationError) else "handler_failed"
            self._metrics.dead_lettered(message.topic() or "", reason)

    def _send_dead_letter(self, letter: DeadLetter) -> None:
        if self._dlq_producer is None:
            self._dlq_producer = Producer(
                client_config(self.settings, "producer", overrides={"logger": log})
            )
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        self._dlq_producer.produce(
            letter.topic, letter.value, letter.key, headers=letter.headers, on_delivery=on_delivery
        )
        # The offset must not move past the message before its dead letter is durable.
        if self._dlq_producer.flush(_DLQ_TIMEOUT_S) or failures:
            if failures:
                raise translate_kafka_error(
                    failures[0], operation="dead-letter", topic=letter.topic, delivery=True
                )
            raise DeliveryError(
                f"dead letter to {letter.topic} not acknowledged in {_DLQ_TIMEOUT_S:.0f} s",
                topic=letter.topic,
            )

    # Flow control and shutdown --------------------------------------------------

    def pause(self, partitions: list[TopicPartition] | None = None) -> None:
        """Stop fetching from ``partitions`` (default: all assigned)."""
        self._consumer.pause(partitions or self._consumer.assignment())

    def resume(self, partitions: list[TopicPartition] | None = None) -> None:
        """Resume fetching from ``partitions`` (default: all assigned)."""
        self._consumer.resume(partitions or self._consumer.assignment())

    def close(self) -> None:
        """Commit what was handled (auto mode), leave the group, release clients."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._manual:
                self._commit_stored()
        finally:
            self._consumer.close()
            if self._metrics is not None:
                self._metrics.close()
            if self._owns_registry:
                self._registry.close()
            if self._dlq_producer is not None:
                self._dlq_producer.flush(_DLQ_TIMEOUT_S)
