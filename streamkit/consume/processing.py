"""Small pieces every consumer face shares: statistics, polling a batch, usable
messages, stop signals, the retry schedule and the dedup key of a message."""

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

from streamkit.client.diagnose import kafka_errors, translate_kafka_error
from streamkit.errors import AuthorizationError
from streamkit.serde.events import HEADER_EVENT_ID, Consumed, header_value
from streamkit.settings import ConsumerSettings

log = logging.getLogger(__name__)

__all__ = [
    "ConsumerStats",
    "KafkaMessage",
    "backoff_delays",
    "dedup_key",
    "install_stop_signals",
    "restore_signals",
    "take_batch",
    "usable_message",
]


KafkaMessage = Consumed  # the parts of ``confluent_kafka.Message`` the consumers use


HANDLER_SECONDS_KEPT = 10_000


@dataclass
class ConsumerStats:
    """Counters of a consumer (across its runs).

    ``handler_seconds`` keeps the durations of the most recent successful handler
    calls only (bounded, so a long-running consumer does not grow without end); the
    full distribution is the ``streamkit_handler_duration_seconds`` metric.
    ``mark_delays`` likewise keeps, for the most recent events handled under a dedup
    store, the seconds from the handler's success until its mark was written: the
    window in which a crash leaves a handled event unmarked.
    """

    consumed: int = 0
    processed: int = 0
    duplicates_skipped: int = 0
    claim_conflicts: int = 0
    retries: int = 0
    dead_lettered: int = 0
    rebalances: int = 0
    commits: int = 0
    finished_before: int = 0
    """Messages skipped because a previous owner had finished them (commit metadata)."""
    not_owned: int = 0
    """Messages ignored because a rebalance callback of the poll that read them let
    their partition go (the next owner reads them from the commit)."""
    dependency_outages: int = 0
    """Times a dependency (registry, dedup store, dead-letter topic) went down."""
    breaker_trips: int = 0
    """Times the failure breaker opened (see :mod:`streamkit.consume.breaker`)."""
    in_flight_peak: int = 0
    """Most messages held at once (bounded by ``max_in_flight``)."""
    handler_seconds: deque[float] = field(
        default_factory=lambda: deque(maxlen=HANDLER_SECONDS_KEPT), repr=False
    )
    mark_delays: deque[float] = field(
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
    with kafka_errors("consume"):
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
