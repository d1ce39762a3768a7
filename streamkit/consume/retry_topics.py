"""Retries that do not block the stream: one retry topic per delay, then the dead letters.

With ``retry_delays=["5s", "1m", "10m"]`` (``STREAMKIT_CONSUMER__RETRY_DELAYS=5s,1m,10m``)
a message whose handler fails is produced to ``orders.retry.5s`` (names from
``retry_topic_template``) and its offset is finished: the partition flows on. The
consumer also subscribes to its retry topics. A message read from a retry topic before
it is due is not handled: :class:`DueGate` rewinds to it and pauses that retry
partition until the due time (never a sleep in a handler slot), then resumes it. If
it fails again it moves to the next delay's topic; after the last, to the dead-letter
topic with its source topic, partition and offset, and its whole attempt history.

What a hop carries (:func:`retry_hop`): the original key, value and headers (so the
event id, and with it deduplication and the partitioning by key, are kept), an
``attempt-history`` entry for the failure (:mod:`streamkit.consume.history`), and::

    retry-attempt            the attempt this delivery will be (2 on the first hop)
    retry-delay              the stage's delay as written (5s)
    retry-due-at             epoch ms when it may be handled
    retry-first-failure-at   epoch ms of the first failure
    retry-error-type         module.Class of the last error
    retry-error              "Class: message" of the last error
    retry-source-topic       where the event was first read (and so its dead letter's
    retry-source-partition   dlq-source-* headers); a retried event is therefore
    retry-source-offset      handled after later events of its key

Per-key order: a retried event is handled after the events of its key that came later
(they were not held back). Where order beats throughput, ``retry_policy="block"`` waits
the same delays in place, holding the key (or partition) back.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streamkit.consume.dead_letter import DeadLetter, dead_letter
from streamkit.consume.history import error_type_name, failed_attempt, with_entry
from streamkit.consume.processing import KafkaMessage
from streamkit.consume.retry import Decision, Forward, InPlaceRetry, RetryPolicy
from streamkit.consume.work import Work
from streamkit.serde.events import Headers, RawHeaders, header_items, header_value, int_header
from streamkit.settings import ConsumerSettings

__all__ = [
    "RETRY_HEADERS",
    "DueGate",
    "RetryHop",
    "RetryStage",
    "RetryTopics",
    "TopicRetry",
    "final_dead_letter",
    "is_retry_topic",
    "retry_hop",
    "retry_policy",
    "retry_topic_name",
]

log = logging.getLogger(__name__)

RETRY_HEADERS = (
    "retry-attempt",
    "retry-delay",
    "retry-due-at",
    "retry-first-failure-at",
    "retry-error-type",
    "retry-error",
    "retry-source-topic",
    "retry-source-partition",
    "retry-source-offset",
)
_RETRY_PREFIX = "retry-"
_MAX_ERROR = 2000

TopicPartitionKey = tuple[str, int]


def retry_topic_name(template: str, topic: str, delay: str) -> str:
    """The retry topic of ``topic`` for ``delay`` (``orders.retry.5s``)."""
    return template.format(topic=topic, delay=delay)


def is_retry_topic(settings: ConsumerSettings, name: str) -> bool:
    """Whether ``name`` is a retry topic under ``retry_topic_template`` and ``retry_delays``."""
    if not settings.retry_delays:
        return False
    delays = "|".join(re.escape(delay) for delay in settings.retry_delays)
    pattern = re.escape(settings.retry_topic_template)
    pattern = pattern.replace(re.escape("{topic}"), ".+").replace(
        re.escape("{delay}"), f"(?:{delays})"
    )
    return re.fullmatch(pattern, name) is not None


@dataclass(frozen=True)
class RetryStage:
    """One delay of the retry schedule of one source topic."""

    source: str
    index: int
    """0 for the first delay."""
    delay: str
    delay_s: float
    topic: str


class RetryTopics:
    """The retry topics of some source topics, and which stage a topic is.

    Args:
        settings: ``retry_delays`` and ``retry_topic_template``.
        sources: the topics the consumer reads.
    """

    def __init__(self, settings: ConsumerSettings, sources: Sequence[str]) -> None:
        self.sources = list(sources)
        schedule = list(zip(settings.retry_delays, settings.retry_delay_seconds, strict=True))
        self._stages: dict[str, list[RetryStage]] = {}
        self._by_topic: dict[str, RetryStage] = {}
        for source in self.sources:
            stages = [
                RetryStage(
                    source,
                    index,
                    delay,
                    seconds,
                    retry_topic_name(settings.retry_topic_template, source, delay),
                )
                for index, (delay, seconds) in enumerate(schedule)
            ]
            self._stages[source] = stages
            self._by_topic.update((stage.topic, stage) for stage in stages)

    def __repr__(self) -> str:
        return f"RetryTopics(sources={self.sources!r}, topics={len(self._by_topic)})"

    def stages(self, source: str) -> list[RetryStage]:
        """The retry stages of ``source``, first delay first."""
        return list(self._stages.get(source, ()))

    def stage_of(self, topic: str) -> RetryStage | None:
        """The stage ``topic`` is the retry topic of, or None for a source topic."""
        return self._by_topic.get(topic)

    def next_stage(self, topic: str) -> RetryStage | None:
        """Where a message read from ``topic`` goes when its handler fails (None: the
        dead-letter topic)."""
        current = self._by_topic.get(topic)
        stages = self._stages.get(current.source if current else topic, [])
        index = current.index + 1 if current else 0
        return stages[index] if index < len(stages) else None

    def subscription(self) -> list[str]:
        """The source topics followed by all their retry topics."""
        return [*self.sources, *self._by_topic]

    def origin(self, message: KafkaMessage) -> tuple[str, int, int] | None:
        """Where a retry topic's message was first read (topic, partition, offset); None
        for a message of a source topic."""
        if self._by_topic.get(str(message.topic())) is None:
            return None
        origin = _Origin.of(message)
        return origin.topic, origin.partition, origin.offset


def _without_retry_headers(headers: RawHeaders) -> Headers:
    return [
        (k, v)
        for k, v in header_items(headers)
        if v is not None and not k.startswith(_RETRY_PREFIX)
    ]


@dataclass(frozen=True)
class _Origin:
    """Where an event was first read: the message as its source partition knew it."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, message: KafkaMessage) -> _Origin:
        headers = message.headers()
        topic = header_value(headers, "retry-source-topic")
        partition = int_header(headers, "retry-source-partition")
        offset = int_header(headers, "retry-source-offset")
        if topic is None or partition is None or offset is None:
            return cls(str(message.topic()), message.partition() or 0, message.offset() or 0)
        return cls(topic.decode(errors="replace"), partition, offset)


@dataclass(frozen=True)
class RetryHop:
    """A failed message bound for its next retry topic."""

    letter: DeadLetter
    stage: RetryStage
    due_at_ms: int


def retry_hop(
    message: KafkaMessage,
    error: BaseException,
    *,
    attempts: int,
    group: str,
    stage: RetryStage,
    now_ms: int | None = None,
) -> RetryHop:
    """The copy of ``message`` for ``stage``'s retry topic, after ``attempts`` failed calls."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    raw = message.headers()
    origin = _Origin.of(message)
    entry = failed_attempt(message, error, attempts=attempts, group=group)
    first_failure = int_header(raw, "retry-first-failure-at") or now
    due = now + int(stage.delay_s * 1000)
    reason = f"{type(error).__name__}: {error}"
    headers = with_entry(_without_retry_headers(raw), entry)
    headers += [
        ("retry-attempt", str(entry.attempt + 1).encode()),
        ("retry-delay", stage.delay.encode()),
        ("retry-due-at", str(due).encode()),
        ("retry-first-failure-at", str(first_failure).encode()),
        ("retry-error-type", error_type_name(error).encode()),
        ("retry-error", reason[:_MAX_ERROR].encode()),
        ("retry-source-topic", origin.topic.encode()),
        ("retry-source-partition", str(origin.partition).encode()),
        ("retry-source-offset", str(origin.offset).encode()),
    ]
    letter = DeadLetter(stage.topic, message.key(), message.value(), headers)
    return RetryHop(letter, stage, due)


@dataclass(frozen=True)
class _WithoutRetryHeaders:
    """A retried message without its ``retry-*`` headers (the history tells the story)."""

    message: KafkaMessage

    def topic(self) -> str | None:
        return self.message.topic()

    def partition(self) -> int | None:
        return self.message.partition()

    def offset(self) -> int | None:
        return self.message.offset()

    def key(self) -> bytes | None:
        return self.message.key()

    def value(self) -> bytes | None:
        return self.message.value()

    def headers(self) -> Headers:
        return _without_retry_headers(self.message.headers())


def final_dead_letter(
    message: KafkaMessage,
    error: BaseException,
    *,
    attempts: int,
    group: str,
    suffix: str,
) -> DeadLetter:
    """The dead letter of a message whose last retry failed: to ``<source topic><suffix>``,
    ``dlq-source-*`` naming where the event was first read, the attempt history whole."""
    origin = _Origin.of(message)
    return dead_letter(
        _WithoutRetryHeaders(message),
        error,
        attempts=attempts,
        group=group,
        suffix=suffix,
        source=(origin.topic, origin.partition, origin.offset),
    )


class DueGate:
    """Holds back retry-topic messages until they are due, by pausing their partition.

    A retry topic's messages are in due order (one delay per topic), so the first one
    not due yet stops its partition: :meth:`admit` rewinds to it, pauses the partition
    and drops the later messages of that partition from the batch (they are read again);
    :meth:`resume_due` resumes it at the due time.

    Args:
        topics: which topics are retry topics.
        pause, resume: pause or resume fetching partitions (the pipeline's
            application-level pause, so that backpressure leaves them alone).
        seek: rewind a partition to an offset.
        clock: wall-clock seconds (due times are epoch milliseconds, set by whichever
            member failed the message).
    """

    def __init__(
        self,
        topics: RetryTopics,
        *,
        pause: Callable[[list[TopicPartitionKey]], None],
        resume: Callable[[list[TopicPartitionKey]], None],
        seek: Callable[[str, int, int], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._topics = topics
        self._pause = pause
        self._resume = resume
        self._seek = seek
        self._clock = clock
        self._waiting: dict[TopicPartitionKey, float] = {}  # partition -> due (epoch s)

    def __repr__(self) -> str:
        return f"DueGate(waiting={len(self._waiting)})"

    @property
    def waiting(self) -> int:
        """Retry partitions paused until a message is due."""
        return len(self._waiting)

    def admit(self, messages: Iterable[Any]) -> list[Any]:
        """The messages that may be handled now (every message of a source topic; those
        of a retry topic up to the first that is not due yet)."""
        now = self._clock()
        admitted = []
        held: dict[TopicPartitionKey, float] = {}
        for message in messages:
            topic = message.topic()
            if message.error() is not None or self._topics.stage_of(topic) is None:
                admitted.append(message)
                continue
            key = (topic, message.partition())
            if key in held:
                continue  # behind a message that is not due: read again after the wait
            due_ms = int_header(message.headers(), "retry-due-at")
            due = due_ms / 1000 if due_ms is not None else now
            if due <= now:
                admitted.append(message)
                continue
            held[key] = due
            self._seek(topic, message.partition(), message.offset())
        if held:
            self._pause(list(held))
            self._waiting.update(held)
            log.debug("retry partitions waiting: %s", held)
        return admitted

    def resume_due(self) -> None:
        """Resume the retry partitions whose message is due."""
        if not self._waiting:
            return
        now = self._clock()
        due = [key for key, at in self._waiting.items() if at <= now]
        if due:
            for key in due:
                del self._waiting[key]
            self._resume(due)

    def next_due_in(self) -> float | None:
        """Seconds until the next waiting partition is due (None: none waits)."""
        if not self._waiting:
            return None
        return max(0.0, min(self._waiting.values()) - self._clock())

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """``partitions`` were revoked: stop waiting for them (their next owner reads them
        again from the committed offset)."""
        for key in partitions:
            self._waiting.pop(key, None)


class TopicRetry:
    """Retries through the retry topics, then the dead-letter topic.

    A failed handler call sends the message on to the next stage's retry topic (a
    :class:`~streamkit.consume.retry.Forward` with its ``stage``): its offset is finished
    once the hop is acknowledged, so its partition flows on. After the last stage, or
    for an error ``retriable`` refuses, it goes to ``<source topic><dead_letter_suffix>``
    with its attempt history.

    Args:
        settings: ``dead_letter_suffix``.
        group: the consumer group, written into the headers.
        topics: the retry topics of the consumer's source topics.
        retriable: which errors are worth another call (default: all).
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        group: str,
        topics: RetryTopics,
        retriable: Callable[[BaseException], bool] = lambda _error: True,
    ) -> None:
        self._suffix = settings.dead_letter_suffix
        self._group = group
        self._topics = topics
        self._retriable = retriable

    def __repr__(self) -> str:
        return f"TopicRetry({self._topics!r})"

    def on_failure(self, work: Work, error: BaseException) -> Decision:
        stage = self._topics.next_stage(work.topic) if self._retriable(error) else None
        if stage is None:
            return self._dead_letter(work, error, "handler_failed")
        hop = retry_hop(work.message, error, attempts=work.attempts, group=self._group, stage=stage)
        return Forward(hop.letter, "retry", error, stage=stage)

    def on_undecodable(self, work: Work, error: BaseException) -> Forward:
        return self._dead_letter(work, error, "undecodable")

    def _dead_letter(self, work: Work, error: BaseException, reason: str) -> Forward:
        letter = final_dead_letter(
            work.message, error, attempts=work.attempts, group=self._group, suffix=self._suffix
        )
        return Forward(letter, reason, error)


def retry_policy(
    settings: ConsumerSettings,
    group: str,
    sources: Sequence[str],
    retriable: Callable[[BaseException], bool] = lambda _error: True,
) -> tuple[RetryPolicy, RetryTopics | None]:
    """The retry policy ``settings`` ask for, and the retry topics it uses (None: in place).

    ``retry_delays`` with ``retry_policy="topics"``: :class:`TopicRetry`; otherwise
    :class:`~streamkit.consume.retry.InPlaceRetry` (waiting ``retry_delays`` in place
    under ``"block"``, else ``max_retries`` with backoff).
    """
    if settings.uses_retry_topics:
        topics = RetryTopics(settings, sources)
        return TopicRetry(settings, group, topics, retriable), topics
    return InPlaceRetry(settings, group, retriable), None
