"""What the sync and async consumers share: retry schedule, dead letters, statistics.

These pieces have no I/O of their own, so :class:`~streamkit.consume.consumer.EventConsumer`
and :class:`~streamkit.consume.aio.AsyncEventConsumer` apply one policy.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from signal import SIGINT, SIGTERM
from types import FrameType
from typing import Any, Protocol

from confluent_kafka import KafkaError

from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.history import failed_attempt, with_entry
from streamkit.errors import AuthorizationError
from streamkit.serde.events import HEADER_EVENT_ID, Headers, RawHeaders, header_value
from streamkit.settings import ConsumerSettings

log = logging.getLogger(__name__)

__all__ = [
    "DLQ_HEADERS",
    "ConsumerStats",
    "DeadLetter",
    "KafkaMessage",
    "backoff_delays",
    "dead_letter",
    "dedup_key",
]

DLQ_HEADERS = (
    "dlq-reason",
    "dlq-error-type",
    "dlq-source-topic",
    "dlq-source-partition",
    "dlq-source-offset",
    "dlq-attempts",
    "dlq-consumer-group",
    "dlq-failed-at",
)
_MAX_REASON = 2000


class KafkaMessage(Protocol):
    """The parts of ``confluent_kafka.Message`` the consumers use."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RawHeaders: ...


HANDLER_SECONDS_KEPT = 10_000


@dataclass
class ConsumerStats:
    """Counters of one consumer run.

    ``handler_seconds`` keeps the durations of the most recent successful handler
    calls only (bounded, so a long-running consumer does not grow without end); the
    full distribution is the ``streamkit_handler_duration_seconds`` metric.
    """

    consumed: int = 0
    processed: int = 0
    duplicates_skipped: int = 0
    claim_conflicts: int = 0
    retries: int = 0
    dead_lettered: int = 0
    rebalances: int = 0
    commits: int = 0
    handler_seconds: deque[float] = field(
        default_factory=lambda: deque(maxlen=HANDLER_SECONDS_KEPT), repr=False
    )


class BatchSource(Protocol):
    """The two reads of a confluent-kafka ``Consumer`` that :func:`take_batch` uses."""

    def poll(self, timeout: float = ...) -> Any: ...

    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...


def usable_message(message: Any, group: str, role: str) -> bool:
    """Whether a polled message carries a record (not an error event).

    Raises:
        KafkaClientError: a fatal error, or an ACL denial (it does not heal by polling
            on: surfaced instead of looping).
    """
    error = message.error()
    if error is None:
        return True
    translated = translate_kafka_error(
        error, operation="consume", topic=message.topic(), group=group
    )
    if error.fatal() or isinstance(translated, AuthorizationError):
        raise translated
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("%s %s: %s", role, group, error.str())
    return False


def take_batch(consumer: BatchSource, size: int, timeout_s: float) -> list[Any]:
    """Wait up to ``timeout_s`` for one message, then take what else is ready, up to ``size``.

    ``consume(size, timeout)`` waits for a full batch or the timeout: under a trickle of
    events every message would wait the whole timeout. This returns as soon as one
    arrived and still batches under load.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    if size <= 1:
        return [first]
    return [first, *consumer.consume(size - 1, 0)]


def install_stop_signals(stop: Callable[[], None], who: str) -> dict[int, Any]:
    """Make SIGTERM and SIGINT call ``stop`` (main thread only); return the old handlers.

    Give the result to :func:`restore_signals` when the run loop ends.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: signal %d, stopping after the work in flight", who, signum)
        stop()

    return {signum: signal.signal(signum, request_stop) for signum in (SIGTERM, SIGINT)}


def restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install_stop_signals` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def backoff_delays(settings: ConsumerSettings) -> Iterator[float]:
    """Seconds to wait before each retry: exponential from retry_backoff_ms, capped."""
    delay = settings.retry_backoff_ms / 1000
    cap = settings.retry_backoff_max_ms / 1000
    for _ in range(settings.max_retries):
        yield min(delay, cap)
        delay *= 2


def dedup_key(message: KafkaMessage, key_fn: Callable[[Any], str] | None = None) -> str:
    """The deduplication key of a message: ``key_fn(message)``, else its event id header.

    Messages without an event id header fall back to topic/partition/offset, which
    only catches redeliveries, not re-sends.
    """
    if key_fn is not None:
        return key_fn(message)
    event_id = header_value(message.headers(), HEADER_EVENT_ID)
    if event_id:
        return event_id.decode(errors="replace")
    return f"{message.topic()}/{message.partition()}/{message.offset()}"


@dataclass(frozen=True)
class DeadLetter:
    """A message bound for the dead-letter topic: original bytes plus error headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def dead_letter(
    message: KafkaMessage,
    error: BaseException,
    *,
    attempts: int,
    group: str,
    suffix: str,
    source: tuple[str, int, int] | None = None,
) -> DeadLetter:
    """Build the dead letter of ``message``, which failed with ``error``.

    The message's own headers are kept, an ``attempt-history`` entry is appended for
    this failure (:mod:`streamkit.consume.history`), then the ``dlq-*`` headers.
    ``source`` is where the event was first read, if not ``message``'s own topic,
    partition and offset (a message read from a retry topic): the dead-letter topic and
    the ``dlq-source-*`` headers follow it.
    """
    raw = message.headers()
    topic, partition, offset = source or (
        str(message.topic()),
        message.partition(),
        message.offset(),
    )
    entry = failed_attempt(message, error, attempts=attempts, group=group)
    reason = f"{type(error).__name__}: {error}"
    extra: Headers = [
        ("dlq-reason", reason[:_MAX_REASON].encode()),
        ("dlq-error-type", entry.error_type.encode()),
        ("dlq-source-topic", topic.encode()),
        ("dlq-source-partition", str(partition).encode()),
        ("dlq-source-offset", str(offset).encode()),
        # Handler calls over the event's life: retry hops and earlier replays included.
        ("dlq-attempts", str(entry.attempt).encode()),
        ("dlq-consumer-group", group.encode()),
        ("dlq-failed-at", str(entry.failed_at).encode()),
    ]
    headers = with_entry(raw, entry)
    return DeadLetter(f"{topic}{suffix}", message.key(), message.value(), headers + extra)
