"""The reader behind ``streamkit consume``: decode and hand over events, never write.

A debugging tool must not change what it looks at. Without a group the reader joins
none: it assigns every partition of the topics, starting at the beginning, at an
offset, or at a time, and commits nothing. With a group it subscribes as a member and
commits the offset of a message only once the caller marked it done (printed), so a
reader that stops half-way (a closed pipe, ``--max``) resumes where its output ended.
Nothing is ever dead-lettered: an undecodable message is handed over as the
:class:`~streamkit.errors.DeserializationError` that says why.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Message, TopicPartition

from streamkit.client.closing import Closing
from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import kafka_errors
from streamkit.consume.processing import take_batch, usable_message
from streamkit.errors import DeserializationError, KafkaClientError, RegistryError
from streamkit.serde.events import Event, EventDecoder
from streamkit.serde.registry import SchemaRegistry
from streamkit.settings import StreamkitSettings

__all__ = ["StartAt", "TopicReader", "parse_start_time"]

log = logging.getLogger(__name__)

_POLL_TIMEOUT_S = 0.5
_BATCH = 100
_METADATA_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class StartAt:
    """Where a group-less reader starts in each partition.

    Attributes:
        offset: an offset (``>= 0``), or a count back from the end (``< 0``: ``-10`` reads
            the last ten messages of each partition); None with ``time`` None: the start.
        time_ms: the first message at or after this time (epoch milliseconds).
    """

    offset: int | None = None
    time_ms: int | None = None


def parse_start_time(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 time (no offset: UTC) or of an epoch-ms number."""
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class TopicReader(Closing):
    """Reads and decodes the events of ``topics``, as a group member or as nobody.

    Args:
        settings: resolved settings (bootstrap, security, registry).
        topics: the topics to read.
        group: the group to read as (its committed offsets, commits of what is done);
            None: no group, every partition assigned from ``start``.
        start: where a group-less reader starts (default: the beginning).
    """

    def __init__(
        self,
        settings: StreamkitSettings,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: StartAt | None = None,
    ) -> None:
        if group is not None and start is not None:
            raise ValueError("a group resumes from its committed offsets: give no start")
        self.settings = settings
        self.topics = list(topics)
        self.group = group
        self._start = start or StartAt()
        self._stopping = threading.Event()
        self._registry = SchemaRegistry(settings)
        self._decoder = EventDecoder(self._registry)
        overrides: dict[str, Any] = {
            "logger": log,
            "enable.auto.offset.store": False,
            # With a group, librdkafka commits only the offsets stored by done(): in the
            # background, before a rebalance takes partitions away, and at close.
            "enable.auto.commit": group is not None,
            # Without one, a throw-away id that never reaches the broker: assign()
            # joins no group, and nothing is committed.
            "group.id": group or f"streamkit-cli-{uuid.uuid4().hex}",
        }
        self._consumer, _ = connect(
            Consumer,
            client_config(settings, "consumer", overrides=overrides),
            settings,
            operation="consume",
        )

    def __repr__(self) -> str:
        return f"TopicReader(topics={self.topics!r}, group={self.group!r})"

    def stop(self) -> None:
        """Make :meth:`messages` return (from another thread or a signal handler)."""
        self._stopping.set()

    def messages(
        self, *, max_messages: int | None = None, idle_timeout_s: float | None = None
    ) -> Iterator[tuple[Message, Event | DeserializationError]]:
        """Each message read, decoded: an event, or why it could not be decoded.

        Stops after ``max_messages`` messages exactly, after ``idle_timeout_s`` without
        one, or on :meth:`stop`.
        """
        self._begin()
        read = 0
        last = time.monotonic()
        while not self._stopping.is_set():
            wanted = _BATCH if max_messages is None else min(_BATCH, max_messages - read)
            if wanted <= 0:
                return
            batch = take_batch(self._consumer, wanted, _POLL_TIMEOUT_S)
            usable = [m for m in batch if usable_message(m, self.group or "-", "consume")]
            if not usable:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            last = time.monotonic()
            for message in usable:
                decoded = self._decode(message)
                if decoded is None:  # stopped while the registry was away
                    return
                read += 1
                yield message, decoded

    def done(self, message: Message) -> None:
        """Mark ``message`` handled: with a group, its offset may now be committed."""
        if self.group is not None:
            with kafka_errors("store offset", topic=message.topic(), group=self.group):
                self._consumer.store_offsets(message=message)

    def close(self) -> None:
        """Commit what is done (with a group) and leave."""
        try:
            with kafka_errors("close", group=self.group):
                self._consumer.close()
        finally:
            self._registry.close()

    def _begin(self) -> None:
        if self.group is not None:
            with kafka_errors("subscribe", group=self.group):
                self._consumer.subscribe(self.topics)
            return
        with kafka_errors("assign partitions"):
            self._consumer.assign(self._start_positions())

    def _start_positions(self) -> list[TopicPartition]:
        # All topics' metadata: naming one topic would let a broker auto-create it.
        with kafka_errors("list topics"):
            metadata = self._consumer.list_topics(timeout=_METADATA_TIMEOUT_S)
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                raise KafkaClientError(
                    f"consume failed: topic {topic!r} does not exist or is not visible "
                    f"(hint: streamkit topics ensure {topic}; or check the principal's "
                    "DESCRIBE ACL)",
                    topic=topic,
                )
            partitions += [TopicPartition(topic, p) for p in sorted(found.partitions)]
        start = self._start
        if start.time_ms is not None:
            wanted = [TopicPartition(tp.topic, tp.partition, start.time_ms) for tp in partitions]
            with kafka_errors("look up offsets by time"):
                found_offsets = self._consumer.offsets_for_times(
                    wanted, timeout=_METADATA_TIMEOUT_S
                )
            # No message at or after the time: the partition's end.
            return [
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                for tp in found_offsets
            ]
        if start.offset is None:
            return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
        if start.offset >= 0:
            return [TopicPartition(tp.topic, tp.partition, start.offset) for tp in partitions]
        positions = []
        for tp in partitions:
            with kafka_errors("read watermarks", topic=tp.topic):
                low, high = self._consumer.get_watermark_offsets(
                    tp, timeout=_METADATA_TIMEOUT_S, cached=False
                )
            positions.append(TopicPartition(tp.topic, tp.partition, max(low, high + start.offset)))
        return positions

    def _decode(self, message: Message) -> Event | DeserializationError | None:
        # The registry being away says nothing about the message: wait for it.
        delay = self.settings.consumer.retry_backoff_ms / 1000
        cap = self.settings.consumer.retry_backoff_max_ms / 1000
        while True:
            try:
                return self._decoder.decode_message(message)
            except DeserializationError as exc:
                return exc
            except RegistryError as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, cap)
