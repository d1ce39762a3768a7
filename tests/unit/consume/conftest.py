"""Fakes for the consume pipeline's unit tests: a consumer client, a decoder, stores
(messages are real ``confluent_kafka.Message`` records from :func:`tests.fakes.message`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, TopicPartition

from streamkit.consume.dead_letter import DeadLetter, LetterSettled
from streamkit.consume.decode import Decode
from streamkit.consume.dedup_gate import DedupGate
from streamkit.consume.pipeline import Pipeline
from streamkit.consume.processing import ConsumerStats
from streamkit.consume.retry_topics import retry_policy
from streamkit.consume.work import Work
from streamkit.dedup import ClaimResult, DedupStore, MemoryDedupStore
from streamkit.errors import DedupStoreError, DeliveryError, DeserializationError, RegistryError
from streamkit.observability.metrics import NullConsumerMetrics
from streamkit.observability.tracing import NO_TRACING, Tracing
from streamkit.serde.events import Event, header_value
from streamkit.settings import ConsumerSettings
from tests.fakes import message


class FakeClient:
    """Stands in for ``confluent_kafka.Consumer`` under the pipeline.

    Holds a log of messages per partition and a position in each; ``poll``/``consume``
    hand out the next messages of unpaused partitions (the first call assigns every
    partition of the log through ``on_assign``); commits, pauses and seeks are recorded,
    and a seek moves the position (messages are read again).
    """

    def __init__(
        self,
        messages: list[Message],
        *,
        committed: dict[tuple[str, int], tuple[int, str]] | None = None,
    ) -> None:
        self.log: dict[tuple[str, int], list[Message]] = {}
        for record in messages:
            self.log.setdefault((record.topic(), record.partition()), []).append(record)
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

    def _next(self) -> Message | None:
        for key, messages in self.log.items():
            if key not in self.paused and self.position[key] < len(messages):
                self.position[key] += 1
                return messages[self.position[key] - 1]
        return None

    def poll(self, timeout: float = -1) -> Message | None:
        self.polls += 1
        self._assign()
        found = self._next()
        if found is None and timeout > 0:
            time.sleep(min(timeout, 0.005))
        return found

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self.polls += 1
        self._assign()
        found = []
        while len(found) < num_messages and (record := self._next()) is not None:
            found.append(record)
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


class FakeDecoder:
    """Stands in for ``EventDecoder``: the payload is the value's text; ``b"bad"`` cannot
    be decoded; while ``registry_down`` every decode fails as an unreachable registry."""

    def __init__(self) -> None:
        self.registry_down = False
        self.calls = 0

    def decode(self, value: bytes | None, **where: Any) -> Event:
        self.calls += 1
        if self.registry_down:
            raise RegistryError("cannot reach the schema registry", transient=True)
        if value == b"bad":
            raise DeserializationError("not in the wire format", **_place(where))
        event_id = header_value(where.get("headers"), "event-id")
        return Event(
            payload=(value or b"").decode(),
            type="Test",
            id=event_id.decode() if event_id else f"{where['topic']}-{where['offset']}",
            key=where.get("key"),
            topic=where["topic"],
            partition=where.get("partition"),
            offset=where.get("offset"),
        )


def _place(where: dict[str, Any]) -> dict[str, Any]:
    return {name: where.get(name) for name in ("topic", "partition", "offset")}


class FlakyStore(MemoryDedupStore):
    """A memory dedup store whose every call fails while ``down`` is set."""

    down = False

    def _check_up(self) -> None:
        if self.down:
            raise DedupStoreError("fake store: connection refused")

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        self._check_up()
        return super().claim(keys)

    def complete(self, keys: Sequence[str]) -> None:
        self._check_up()
        super().complete(keys)

    def release(self, keys: Sequence[str]) -> None:
        self._check_up()
        super().release(keys)


class FakeSink:
    """A dead-letter sink that acknowledges letters at once, or fails them while ``down``."""

    def __init__(self, settled: LetterSettled) -> None:
        self._settled = settled
        self.down = False
        self.letters: list[DeadLetter] = []
        self.attempts = 0

    @property
    def pending(self) -> int:
        return 0

    def send(self, work: Work, letter: DeadLetter) -> None:
        self.attempts += 1
        if self.down:
            self._settled(work, DeliveryError("fake: topic not writable", topic=letter.topic))
            return
        self.letters.append(letter)
        self._settled(work, None)

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def messages(count: int, *, partitions: int = 1, keys: int = 10, topic: str = "t") -> list[Message]:
    """``count`` messages spread round-robin over partitions, keys ``k0``..``k<keys-1>``."""
    found = []
    for i in range(count):
        partition = i % partitions
        found.append(
            message(
                topic=topic,
                partition=partition,
                offset=i // partitions,
                key=f"k{i % keys}".encode(),
                value=f"v{i}".encode(),
                headers=[("event-id", f"e{i}".encode())],
            )
        )
    return found


@dataclass
class Harness:
    """A pipeline over a :class:`FakeClient`, run in a thread with bounded waits."""

    pipeline: Pipeline
    client: FakeClient
    decoder: FakeDecoder
    sink: FakeSink
    executor: Any
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self, **run: Any) -> Harness:
        def target() -> None:
            try:
                self.pipeline.run(self.executor, **run)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        return self

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.005)

    def join(self, timeout_s: float = 10.0) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the pipeline did not return"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.pipeline.stop()
        self.join()


def make_harness(
    client: FakeClient,
    handler: Callable[[Event], Any],
    *,
    store: DedupStore | None = None,
    batch_call: Callable[[list[Event]], Any] | None = None,
    tracing: Tracing = NO_TRACING,
    **consumer: Any,
) -> Harness:
    """A pipeline with ``handler`` at ``consumer["concurrency"]`` (default 1) over ``client``."""
    settings = ConsumerSettings(
        group_id="g",
        max_retries=consumer.pop("max_retries", 2),
        retry_backoff_ms=consumer.pop("retry_backoff_ms", 1),
        retry_backoff_max_ms=consumer.pop("retry_backoff_max_ms", 20),
        **consumer,
    )
    decoder = FakeDecoder()
    sinks: list[FakeSink] = []

    def sink(settled: LetterSettled) -> FakeSink:
        sinks.append(FakeSink(settled))
        return sinks[0]

    policy, retry_topics = retry_policy(settings, "g", ["t"])
    pipeline = Pipeline(
        client,
        group="g",
        topics=["t"],
        settings=settings,
        decode=Decode(decoder),  # type: ignore[arg-type]
        gate=DedupGate(store, "g") if store is not None else None,
        policy=policy,
        retry_topics=retry_topics,
        sink=sink,
        observer=NullConsumerMetrics(),
        stats=ConsumerStats(),
        batch_size=50,
        inline=settings.concurrency == 1,
        batch_call=batch_call,
        tracing=tracing,
    )
    return Harness(pipeline, client, decoder, sinks[0], pipeline.executor_for(handler, "test"))
