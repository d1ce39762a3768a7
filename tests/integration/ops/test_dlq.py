"""Dead-letter inspect and replay against the real broker and registry.

The dead-letter topic is filled the way a service fills it: an EventConsumer whose handler
fails for some events (two exception types) reading a topic that also holds undecodable
messages. After the handler is "fixed", replays send the failed events back and a
consumer with a dedup store handles each exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.history import attempt_history
from streamkit.dedup import MemoryDedupStore
from streamkit.errors import KafkaClientError
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.ops.dlq import (
    HEADER_REPLAYED_FROM,
    DeadLetter,
    DeadLetterSelection,
    inspect_dead_letters,
    replay_dead_letters,
    replay_group,
)
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, header_value
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import (
    ConsumerRunner,
    consumer_settings,
    read_raw,
    write_dead_letters,
)

FAST_RETRY = {"max_retries": 2, "retry_backoff_ms": 10, "retry_backoff_max_ms": 20}
GOOD, RUNTIME_FAILURES, VALUE_FAILURES, GARBAGE = 30, 7, 3, 5


class PaymentDeclinedError(ValueError):
    """The second kind of handler failure."""


@dataclass
class DeadLetters:
    """A source topic whose consumer filled ``<topic>.dlq``, and what it saw."""

    topic: str
    dlq: str
    settings: StreamkitSettings
    store: MemoryDedupStore
    failing: dict[str, type[Exception]]
    handled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def consumer(self, broken: set[str] | None = None) -> EventConsumer:
        """A member of the service's group; its handler fails for the ids in ``broken``."""
        broken = set(self.failing) if broken is None else broken

        def handle(event: Event) -> None:
            if event.id in broken:
                raise self.failing[event.id](f"order {event.payload['order_id']} refused")
            with self.lock:
                self.handled.append(event.id)

        return EventConsumer([self.topic], handle, settings=self.settings, dedup=self.store)


@pytest.fixture
def dead_letters(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> DeadLetters:
    topic = topic_factory(partitions=2)
    settings = consumer_settings(streamkit_settings, **FAST_RETRY)
    StreamkitAdmin(settings).ensure_topics([TopicSpec(f"{topic}.dlq", partitions=2)])
    failing: dict[str, type[Exception]] = {}
    raw = Producer(client_config(settings, "producer"))
    total = GOOD + RUNTIME_FAILURES + VALUE_FAILURES
    for i in range(total):
        event_id = producer.send(topic, order(i), key=f"k{i}", schema=ORDER_SCHEMA).event_id
        if i < RUNTIME_FAILURES:
            failing[event_id] = RuntimeError
        elif i < RUNTIME_FAILURES + VALUE_FAILURES:
            failing[event_id] = PaymentDeclinedError
        if i % 8 == 0 and i // 8 < GARBAGE:
            raw.produce(topic, b"not avro %d" % i, f"g{i}".encode(), headers=[("trace", b"t")])
    assert producer.flush(30) == 0
    assert raw.flush(30) == 0
    setup = DeadLetters(topic, f"{topic}.dlq", settings, MemoryDedupStore(), failing)
    consumer = consumers.start(setup.consumer())
    consumers.wait_for(
        lambda: consumer.stats.processed + consumer.stats.dead_lettered == total + GARBAGE
    )
    consumers.stop(consumer)
    assert consumer.stats.dead_lettered == len(failing) + GARBAGE
    setup.handled.clear()
    return setup


def _replayed(settings: StreamkitSettings, topic: str) -> list[Any]:
    """The replayed copies now on ``topic``."""
    return [
        m
        for m in read_raw(settings, topic, 1, timeout_s=5)
        if header_value(m.headers(), HEADER_REPLAYED_FROM)
    ]


def _letters(setup: DeadLetters) -> list[DeadLetter]:
    expected = len(setup.failing) + GARBAGE
    return [DeadLetter.of(m) for m in read_raw(setup.settings, setup.dlq, expected)]


def _committed(settings: StreamkitSettings, group: str, topic: str) -> dict[int, int]:
    probe = Consumer({**client_config(settings, "consumer"), "group.id": group})
    try:
        found = probe.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    finally:
        probe.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_inspect_counts_exactly_and_decodes_samples(dead_letters: DeadLetters) -> None:
    letters = _letters(dead_letters)
    report = inspect_dead_letters(dead_letters.dlq, dead_letters.settings, samples=50)

    assert report.count == len(dead_letters.failing) + GARBAGE == 15
    assert report.by_reason == {"handler_failed": 10, "undecodable": GARBAGE}
    assert report.by_error_type == {
        "builtins.RuntimeError": RUNTIME_FAILURES,
        "streamkit.errors.DeserializationError": GARBAGE,
        f"{__name__}.PaymentDeclinedError": VALUE_FAILURES,
    }
    expected_sources = Counter(f"{dead_letters.topic}[{x.source_partition}]" for x in letters)
    assert report.by_source_partition == dict(expected_sources)
    assert sum(report.by_source_partition.values()) == 15
    failed_at = sorted(x.failed_at for x in letters)
    assert report.oldest == datetime.fromtimestamp(failed_at[0] / 1000, tz=UTC)
    assert report.newest == datetime.fromtimestamp(failed_at[-1] / 1000, tz=UTC)

    assert len(report.samples) == 15
    for sample in report.samples:
        if sample.reason == "undecodable":
            assert sample.payload is None
            assert sample.decode_error is not None
            assert "wire format" in sample.decode_error
            assert ("trace", "t") in sample.headers
        else:
            assert sample.decode_error is None
            assert sample.payload["order_id"].startswith("order-")
            event_id = dict(sample.headers)["event-id"]
            assert event_id in dead_letters.failing
            assert sample.attempts == 3
            assert [entry.attempt for entry in sample.history] == [3]
    shape = report.as_dict()
    assert set(shape) == {
        "topic",
        "count",
        "by_reason",
        "by_error_type",
        "by_source_partition",
        "oldest",
        "newest",
        "samples",
    }


def test_inspect_missing_topic_names_it(streamkit_settings: StreamkitSettings) -> None:
    missing = f"nowhere-{uuid.uuid4().hex[:8]}.dlq"
    with pytest.raises(KafkaClientError, match=missing):
        inspect_dead_letters(missing, streamkit_settings)


def test_replay_after_fix_handles_each_once_and_second_replay_sends_nothing(
    dead_letters: DeadLetters, consumers: ConsumerRunner
) -> None:
    settings = dead_letters.settings
    selection = DeadLetterSelection(reason="handler_failed")
    dry = replay_dead_letters(dead_letters.dlq, settings, selection=selection, dry_run=True)
    assert (dry.examined, dry.selected, dry.sent) == (15, 10, 0)
    assert _replayed(settings, dead_letters.topic) == []
    assert _committed(settings, replay_group(dead_letters.dlq, selection), dead_letters.dlq) == {}

    first = replay_dead_letters(dead_letters.dlq, settings, selection=selection)
    assert (first.examined, first.selected, first.sent, first.passed_over) == (15, 10, 10, 5)
    assert first.target == dead_letters.topic
    assert first.remaining == 0
    second = replay_dead_letters(dead_letters.dlq, settings, selection=selection)
    assert (second.examined, second.sent) == (0, 0)

    copies = _replayed(settings, dead_letters.topic)
    assert len(copies) == 10
    for copy in copies:
        names = [name for name, _ in copy.headers()]
        assert not [name for name in names if name.startswith("dlq-")]
        assert header_value(copy.headers(), HEADER_REPLAYED_FROM).startswith(
            f"{dead_letters.dlq}[".encode()
        )
        assert len(attempt_history(copy.headers())) == 1
    assert {header_value(c.headers(), "event-id").decode() for c in copies} == set(
        dead_letters.failing
    )

    # The handler is fixed: the service's group handles each replayed event once.
    fixed = consumers.start(dead_letters.consumer(broken=set()))
    consumers.wait_for(lambda: len(dead_letters.handled) >= 10)
    time.sleep(1.0)  # let any second delivery show up

    # Replayed again under another group (a duplicate send): the dedup store skips them.
    again = replay_dead_letters(
        dead_letters.dlq, settings, selection=selection, group=f"other-{uuid.uuid4().hex[:6]}"
    )
    assert again.sent == 10
    consumers.wait_for(lambda: fixed.stats.duplicates_skipped >= 10)
    consumers.stop(fixed)
    assert sorted(dead_letters.handled) == sorted(dead_letters.failing)
    assert fixed.stats.duplicates_skipped == 10
    assert fixed.stats.dead_lettered == 0


@pytest.mark.parametrize(
    ("selection", "wanted"),
    [
        (DeadLetterSelection(reason="undecodable"), lambda x: x.reason == "undecodable"),
        (
            DeadLetterSelection(error_type="PaymentDeclinedError"),
            lambda x: x.error_type.endswith(".PaymentDeclinedError"),
        ),
        (
            DeadLetterSelection(error_type="builtins.RuntimeError"),
            lambda x: x.error_type == "builtins.RuntimeError",
        ),
    ],
    ids=["reason", "error-type-short", "error-type-full"],
)
def test_replay_filters_select_exactly(
    dead_letters: DeadLetters, selection: DeadLetterSelection, wanted: Any
) -> None:
    expected = {(x.partition, x.offset) for x in _letters(dead_letters) if wanted(x)}
    assert expected
    report = replay_dead_letters(dead_letters.dlq, dead_letters.settings, selection=selection)
    assert report.sent == len(expected)
    sent = {
        header_value(c.headers(), HEADER_REPLAYED_FROM).decode()
        for c in _replayed(dead_letters.settings, dead_letters.topic)
    }
    assert sent == {f"{dead_letters.dlq}[{p}]@{o}" for p, o in expected}


def test_replay_time_window_and_limit_select_exactly(dead_letters: DeadLetters) -> None:
    letters = sorted(_letters(dead_letters), key=lambda x: x.failed_at)
    cut = letters[len(letters) // 2].failed_at
    since = datetime.fromtimestamp(cut / 1000, tz=UTC)
    newer = {(x.partition, x.offset) for x in letters if x.failed_at >= cut}
    older = {(x.partition, x.offset) for x in letters if x.failed_at <= cut}

    for selection, expected in (
        (DeadLetterSelection(since=since), newer),
        (DeadLetterSelection(until=since), older),
    ):
        dry = replay_dead_letters(
            dead_letters.dlq, dead_letters.settings, selection=selection, dry_run=True
        )
        assert dry.selected == len(expected), selection

    limited = replay_dead_letters(dead_letters.dlq, dead_letters.settings, limit=4)
    assert limited.sent == 4
    rest = replay_dead_letters(dead_letters.dlq, dead_letters.settings)
    assert rest.sent == 15 - 4
    sent = [
        header_value(c.headers(), HEADER_REPLAYED_FROM).decode()
        for c in _replayed(dead_letters.settings, dead_letters.topic)
    ]
    assert len(sent) == len(set(sent)) == 15


def test_event_failing_again_after_replay_carries_full_history(
    dead_letters: DeadLetters, consumers: ConsumerRunner
) -> None:
    still_broken = next(i for i, kind in dead_letters.failing.items() if kind is RuntimeError)
    replay_dead_letters(
        dead_letters.dlq,
        dead_letters.settings,
        selection=DeadLetterSelection(reason="handler_failed"),
    )
    consumer = consumers.start(dead_letters.consumer(broken={still_broken}))
    consumers.wait_for(lambda: consumer.stats.dead_lettered == 1 and len(dead_letters.handled) == 9)
    consumers.stop(consumer)

    letters = [
        x
        for x in _letters(dead_letters)
        if header_value(x.headers, "event-id") == still_broken.encode()
    ]
    assert len(letters) == 2
    again = next(x for x in letters if header_value(x.headers, HEADER_REPLAYED_FROM))
    assert [entry.attempt for entry in again.history] == [3, 6]
    assert {entry.topic for entry in again.history} == {dead_letters.topic}
    assert again.attempts == 6  # handler calls over the event's life
    assert again.source_topic == dead_letters.topic


def test_replay_throughput(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Replay a large dead-letter topic written with streamkit's own dead-letter headers."""
    count = 20_000
    topic = topic_factory(partitions=3)
    dlq = write_dead_letters(streamkit_settings, topic, [RuntimeError("boom")] * count)

    report = replay_dead_letters(dlq, streamkit_settings)
    assert report.sent == count
    assert report.remaining == 0
    with capsys.disabled():  # past output capture, so that a run's figures can be quoted
        print(
            f"\nFIGURES retry replay: {report.sent} dead letters replayed in "
            f"{report.elapsed_s:.2f} s = {report.per_second:,.0f} msg/s "
            "(read, re-produce acks=all idempotent, commit)"
        )
