"""Reading a dead-letter topic from given offsets up to its end when reading began."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.processing import usable_message
from streamkit.errors import KafkaClientError
from streamkit.settings import StreamkitSettings

__all__ = ["BATCH", "TIMEOUT_S", "DeadLetterReader"]

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
BATCH = 500
_STALL_S = 60.0


class DeadLetterReader:
    """Reads each partition of a topic from a start offset to its end at open time."""

    def __init__(self, settings: StreamkitSettings, topic: str, group: str) -> None:
        self.topic = topic
        overrides = {
            "group.id": group,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": log,
        }
        self.consumer, _ = connect(
            Consumer,
            client_config(settings, "consumer", overrides=overrides),
            settings,
            operation="read dead letters",
        )
        self.group = group
        self.bounds = self._bounds()

    def _bounds(self) -> dict[int, tuple[int, int]]:
        metadata = self.consumer.list_topics(self.topic, timeout=TIMEOUT_S)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            raise KafkaClientError(
                f"topic {self.topic!r} does not exist (hint: dead-letter topics are named "
                "<topic>.dlq, see STREAMKIT_CONSUMER__DEAD_LETTER_SUFFIX)",
                code="UNKNOWN_TOPIC_OR_PART",
                topic=self.topic,
            )
        bounds = {}
        for partition in sorted(found.partitions):
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=TIMEOUT_S
                )
            except KafkaException as exc:
                raise translate_kafka_error(
                    exc.args[0], operation="read dead letters", topic=self.topic
                ) from exc
            bounds[partition] = (low, high)
        return bounds

    def committed(self) -> dict[int, int]:
        """Where this reader's group stopped in each partition (the low mark if nowhere)."""
        asked = [TopicPartition(self.topic, p) for p in self.bounds]
        try:
            found = self.consumer.committed(asked, timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise translate_kafka_error(
                exc.args[0], operation="read replay position", topic=self.topic
            ) from exc
        return {
            tp.partition: max(tp.offset, self.bounds[tp.partition][0])
            for tp in found
            if tp.partition in self.bounds
        }

    def read(self, starts: Mapping[int, int]) -> Iterator[Message]:
        """Messages from ``starts`` up to the end marks, partition order kept."""
        ends = {p: self.bounds[p][1] for p, start in starts.items() if start < self.bounds[p][1]}
        if not ends:
            return
        self.consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in ends])
        last_progress = time.monotonic()
        while ends:
            messages = self.consumer.consume(BATCH, 0.5)
            if not messages and time.monotonic() - last_progress > _STALL_S:
                raise KafkaClientError(
                    f"no message from {self.topic} partitions {sorted(ends)} for "
                    f"{_STALL_S:.0f} s before their end marks",
                    code="_TIMED_OUT",
                    retriable=True,
                    topic=self.topic,
                )
            for message in messages:
                last_progress = time.monotonic()
                partition = message.partition() or 0
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    # Transaction markers take offsets too: the end can hold no message.
                    ends.pop(partition, None)
                    continue
                if partition not in ends or not usable_message(message, self.group, "dlq"):
                    continue
                if (message.offset() or 0) + 1 >= ends[partition]:
                    del ends[partition]
                yield message

    def close(self) -> None:
        self.consumer.close()
