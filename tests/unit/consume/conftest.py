"""Fakes for the consume pipeline's unit tests: messages, a consumer client, a decoder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from streamkit.serde.events import RawHeaders


@dataclass
class FakeMessage:
    """Stands in for confluent_kafka.Message."""

    _headers: RawHeaders = field(default_factory=list)
    _topic: str = "orders"
    _partition: int = 2
    _offset: int = 41
    _key: bytes | None = b"k"
    _value: bytes | None = b"v"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> RawHeaders:
        return self._headers

    def error(self) -> None:
        return None


class FakeClient:
    """Stands in for ``confluent_kafka.Consumer`` under the pipeline.

    Holds a log of messages per partition and a position in each; ``poll``/``consume``
    hand out the next messages of unpaused partitions (the first call assigns every
    partition of the log through ``on_assign``); commits, pauses and seeks are recorded,
    and a seek moves the position (messages are read again).
    """

    def __init__(
        self,
        messages: list[FakeMessage],
        *,
        committed: dict[tuple[str, int], tuple[int, str]] | None = None,
    ) -> None:
        self.log: dict[tuple[str, int], list[FakeMessage]] = {}
        for message in messages:
            self.log.setdefault((message.topic(), message.partition()), []).append(message)
        self.stored = dict(committed or {})
        self.position = {
            key: self._index(key, self.stored[key][0]) if key in self.stored else 0
            for key in self.log
        }
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[tuple[list[TopicPartition], bool]] = []
        self.seeks: list[TopicPartition] = []
        self.polls = 0
        self._callbacks: dict[str, Any] = {}
        self._assigned = False

    def _index(self, key: tuple[str, int], offset: int) -> int:
        offsets = [m.offset() for m in self.log[key]]
        return next((i for i, o in enumerate(offsets) if o >= offset), len(offsets))

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._callbacks = callbacks

    def _assign(self) -> None:
        if not self._assigned:
            self._assigned = True
            partitions = [TopicPartition(t, p) for t, p in self.log]
            self._callbacks["on_assign"](self, partitions)

    def revoke(self, keys: list[tuple[str, int]]) -> None:
        """Call the pipeline's on_revoke (as librdkafka does inside poll)."""
        self._callbacks["on_revoke"](self, [TopicPartition(t, p) for t, p in keys])

    def _next(self) -> FakeMessage | None:
        for key, messages in self.log.items():
            if key not in self.paused and self.position[key] < len(messages):
                self.position[key] += 1
                return messages[self.position[key] - 1]
        return None

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        self.polls += 1
        self._assign()
        found = self._next()
        if found is None and timeout > 0:
            time.sleep(min(timeout, 0.005))
        return found

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.polls += 1
        self._assign()
        found = []
        while len(found) < num_messages and (message := self._next()) is not None:
            found.append(message)
        return found

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append((offsets, asynchronous))
        for tp in offsets:
            self.stored[(tp.topic, tp.partition)] = (tp.offset, tp.metadata or "")

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        found = []
        for tp in partitions:
            offset, metadata = self.stored.get((tp.topic, tp.partition), (-1001, ""))
            found.append(TopicPartition(tp.topic, tp.partition, offset, metadata))
        return found

    def last_commit(self) -> dict[tuple[str, int], int]:
        """The committed offset of each partition."""
        return {key: offset for key, (offset, _) in self.stored.items()}

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp)
        self.position[(tp.topic, tp.partition)] = self._index((tp.topic, tp.partition), tp.offset)

    def consumer_group_metadata(self) -> object:
        return object()

    def close(self) -> None:
        pass
