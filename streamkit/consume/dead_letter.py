"""Dead letters: build them (original bytes plus headers saying why) and produce them.

A message that cannot be decoded, or whose handler keeps failing, goes to
``<topic><dead_letter_suffix>`` (``.dlq`` by default) with its key, value and headers as
they were, plus the ``dlq-*`` headers of :data:`DLQ_HEADERS`. Its offset is finished
only once the dead letter is acknowledged, so nothing is lost. Sending never blocks the
poll thread: :class:`ProducerSink` hands the letter to an idempotent producer of its own
and reports the outcome when the poll thread serves delivery reports
(:meth:`ProducerSink.serve`); a failed letter is re-sent by the pipeline once the
dead-letter topic can be written again. The transactional processor has a sink of its
own that writes letters into its transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamkit.client.config import client_config
from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.processing import KafkaMessage
from streamkit.consume.work import Work
from streamkit.errors import DeliveryError, KafkaClientError
from streamkit.serde.events import Headers
from streamkit.settings import StreamkitSettings

__all__ = [
    "DLQ_HEADERS",
    "DeadLetter",
    "DeadLetterSink",
    "LetterSettled",
    "ProducerSink",
    "dead_letter",
]

log = logging.getLogger(__name__)

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

LetterSettled = Callable[[Work, KafkaClientError | None], None]


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
) -> DeadLetter:
    """Build the dead letter of ``message``, which failed with ``error``."""
    reason = f"{type(error).__name__}: {error}"
    extra: Headers = [
        ("dlq-reason", reason[:_MAX_REASON].encode()),
        ("dlq-error-type", f"{type(error).__module__}.{type(error).__qualname__}".encode()),
        ("dlq-source-topic", str(message.topic()).encode()),
        ("dlq-source-partition", str(message.partition()).encode()),
        ("dlq-source-offset", str(message.offset()).encode()),
        ("dlq-attempts", str(attempts).encode()),
        ("dlq-consumer-group", group.encode()),
        ("dlq-failed-at", str(time.time_ns() // 1_000_000).encode()),
    ]
    raw = message.headers()
    items = raw.items() if isinstance(raw, dict) else raw or ()
    headers: Headers = [(k, v) for k, v in items if v is not None]
    return DeadLetter(f"{message.topic()}{suffix}", message.key(), message.value(), headers + extra)


class DeadLetterSink(Protocol):
    """Where dead letters go; each outcome is reported to the pipeline's callback."""

    @property
    def pending(self) -> int:
        """Letters sent and not acknowledged yet."""
        ...

    def send(self, work: Work, letter: DeadLetter) -> None:
        """Send ``work``'s dead letter; the outcome is reported later (or at once)."""
        ...

    def serve(self) -> None:
        """Report the outcomes that arrived (poll thread, every loop turn)."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for every letter's outcome."""
        ...

    def close(self) -> None:
        """Flush and release the sink."""
        ...


class ProducerSink:
    """Dead letters through an idempotent producer of the consumer's own (made on first use).

    Args:
        settings: the producer settings (and cluster) to use.
        settled: called with each letter's work and None (acknowledged) or the error.
    """

    def __init__(self, settings: StreamkitSettings, settled: LetterSettled) -> None:
        self._settings = settings
        self._settled = settled
        self._producer: Producer | None = None
        self._pending = 0

    def __repr__(self) -> str:
        return f"ProducerSink(pending={self._pending})"

    @property
    def pending(self) -> int:
        return self._pending

    def send(self, work: Work, letter: DeadLetter) -> None:
        if self._producer is None:
            self._producer = Producer(
                client_config(self._settings, "producer", overrides={"logger": log})
            )

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            self._pending -= 1
            failure = None
            if error is not None:
                failure = translate_kafka_error(
                    error, operation="dead-letter", topic=letter.topic, delivery=True
                )
            self._settled(work, failure)

        try:
            self._producer.produce(
                letter.topic,
                letter.value,
                letter.key,
                headers=letter.headers,
                on_delivery=on_delivery,
            )
        except BufferError:
            self._settled(
                work,
                DeliveryError(
                    f"dead letter to {letter.topic}: the producer queue is full",
                    topic=letter.topic,
                ),
            )
            return
        except KafkaException as exc:
            self._settled(
                work,
                translate_kafka_error(exc.args[0], operation="dead-letter", topic=letter.topic),
            )
            return
        self._pending += 1
        self._producer.poll(0)

    def serve(self) -> None:
        if self._pending and self._producer is not None:
            self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        if self._pending and self._producer is not None:
            self._producer.flush(timeout_s)

    def close(self) -> None:
        self.flush(30.0)
