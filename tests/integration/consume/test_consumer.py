"""EventConsumer against the real broker: dead letters, restarts, signals, rebalances."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.dead_letter import DLQ_HEADERS
from streamkit.ops.admin import StreamkitAdmin
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import ConsumerRunner

FAST_RETRY = {"max_retries": 2, "retry_backoff_ms": 10, "retry_backoff_max_ms": 20}


def _settings(base: StreamkitSettings, **consumer: Any) -> StreamkitSettings:
    return base.model_copy(update={"consumer": base.consumer.model_copy(update=consumer)})


def _read_all(settings: StreamkitSettings, topic: str, count: int) -> list[Any]:
    """Read ``count`` raw messages of ``topic`` with a throwaway group."""
    reader = Consumer(
        {**client_config(settings, "consumer"), "group.id": f"reader-{time.monotonic_ns()}"}
    )
    reader.subscribe([topic])
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < count and time.monotonic() < deadline:
            found.extend(m for m in reader.consume(100, 0.5) if m.error() is None)
    finally:
        reader.close()
    return found


def _committed(settings: StreamkitSettings, topic: str, partitions: int) -> dict[int, int]:
    probe = Consumer(client_config(settings, "consumer"))
    try:
        offsets = probe.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        probe.close()
    return {tp.partition: tp.offset for tp in offsets}


@pytest.mark.broker_less
def test_poison_message_and_failing_handler_go_to_dead_letter_topic(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    topic = topic_factory(partitions=1)
    settings = _settings(streamkit_settings, **FAST_RETRY)
    StreamkitAdmin(settings).ensure_topics([])
    producer.send(topic, order(1), key="a", schema=ORDER_SCHEMA).result(30)
    raw = Producer(client_config(settings, "producer"))
    raw.produce(topic, b"\xde\xad\xbe\xef garbage", b"poison", headers=[("trace", b"t-1")])
    assert raw.flush(30) == 0
    failing_id = producer.send(topic, order(2), key="b", schema=ORDER_SCHEMA).result(30).event_id
    last_id = producer.send(topic, order(3), key="c", schema=ORDER_SCHEMA).result(30).event_id

    handled: list[str] = []
    attempts: Counter[str] = Counter()

    def handle(event: Event) -> None:
        attempts[event.id] += 1
        if event.id == failing_id:
            raise RuntimeError("payment service said no")
        handled.append(event.id)

    consumer = consumers.start(EventConsumer([topic], handle, settings=settings))
    # Other keys flow while the failing one waits for its retries: wait for both.
    consumers.wait_for(lambda: last_id in handled and consumer.stats.dead_lettered == 2)
    consumers.stop(consumer)
    assert len(handled) == 2
    assert attempts[failing_id] == 3  # first try + 2 retries
    assert consumer.stats.dead_lettered == 2
    assert consumer.stats.retries == 2

    letters = _read_all(settings, f"{topic}.dlq", 2)
    assert len(letters) == 2
    poison, failed = letters
    poison_headers = dict(poison.headers())
    assert poison.value() == b"\xde\xad\xbe\xef garbage"
    assert poison.key() == b"poison"
    assert poison_headers["trace"] == b"t-1"
    assert b"DeserializationError" in poison_headers["dlq-reason"]
    assert b"wire format" in poison_headers["dlq-reason"]
    assert poison_headers["dlq-attempts"] == b"0"
    assert poison_headers["dlq-source-offset"] == b"1"
    failed_headers = dict(failed.headers())
    assert set(DLQ_HEADERS) <= set(failed_headers)
    assert failed_headers["event-id"] == failing_id.encode()
    assert failed_headers["dlq-reason"] == b"RuntimeError: payment service said no"
    assert failed_headers["dlq-attempts"] == b"3"
    assert failed_headers["dlq-source-topic"] == topic.encode()
    assert failed_headers["dlq-source-partition"] == b"0"
    assert failed_headers["dlq-consumer-group"] == settings.consumer.group_id.encode()
    assert _committed(settings, topic, 1) == {0: 4}


def _handled_lines(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event_id, partition, offset = line.split()
        rows.append((event_id, int(partition), int(offset)))
    return rows


def _spawn(
    python: str, env: dict[str, str], topic: str, handled: Path, *extra: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [python, "-m", "tests.integration.consume.consumer_proc", topic, str(handled), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=env["PYTHONPATH"],
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _signal(process: subprocess.Popen[str], signum: int) -> int:
    """Send ``signum`` and return the exit code."""
    process.send_signal(signum)
    code = process.wait(30)
    assert process.stdout is not None
    process.stdout.close()
    return code


def test_restart_after_kill_resumes_from_commit_without_loss(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
    python: str,
    tmp_path: Path,
) -> None:
    topic = topic_factory(partitions=3)
    total = 600
    sent = {
        producer.send(topic, order(i), key=str(i), schema=ORDER_SCHEMA).event_id
        for i in range(total)
    }
    assert producer.flush(30) == 0
    handled = tmp_path / "handled.txt"
    env = {**child_env, "STREAMKIT_CONSUMER__GROUP_ID": streamkit_settings.consumer.group_id}

    process = _spawn(python, env, topic, handled, "--sleep", "0.002")
    deadline = time.monotonic() + 60
    while len(_handled_lines(handled)) < total // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    _signal(process, signal.SIGKILL)  # mid-batch: no chance to commit anything more

    before = _handled_lines(handled)
    assert total // 3 <= len(before) < total
    committed = _committed(streamkit_settings, topic, 3)
    handled_offsets = {(p, o) for _, p, o in before}
    for partition, next_offset in committed.items():
        for offset in range(max(next_offset, 0)):
            assert (partition, offset) in handled_offsets, "committed before it was handled"

    process = _spawn(python, env, topic, handled)
    deadline = time.monotonic() + 60
    while {e for e, _, _ in _handled_lines(handled)} != sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _signal(process, signal.SIGTERM) == 0
    after = _handled_lines(handled)
    assert {e for e, _, _ in after} == sent, "an event was lost"
    redelivered = len(after) - total
    # Redeliveries are only what was handled after the last commit before the kill.
    assert redelivered <= len(before) - sum(max(o, 0) for o in committed.values())


def test_sigterm_finishes_in_flight_message_commits_and_exits_zero(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
    python: str,
    tmp_path: Path,
) -> None:
    topic = topic_factory(partitions=1)
    for i in range(20):
        producer.send(topic, order(i), schema=ORDER_SCHEMA)
    assert producer.flush(30) == 0
    handled = tmp_path / "handled.txt"
    env = {**child_env, "STREAMKIT_CONSUMER__GROUP_ID": streamkit_settings.consumer.group_id}
    process = _spawn(python, env, topic, handled, "--sleep", "0.5")
    deadline = time.monotonic() + 30
    while len(_handled_lines(handled)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # now inside the third handler call
    assert _signal(process, signal.SIGTERM) == 0
    rows = _handled_lines(handled)
    assert len(rows) >= 3, "the in-flight message was finished"
    assert len(rows) < 20
    assert _committed(streamkit_settings, topic, 1) == {0: len(rows)}


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_rebalance_when_third_member_joins_loses_and_repeats_nothing(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
    assignor: str,
) -> None:
    topic = topic_factory(partitions=6)
    settings = _settings(streamkit_settings, partition_assignment_strategy=assignor)
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def member(name: str) -> EventConsumer:
        def handle(event: Event) -> None:
            time.sleep(0.001)
            with lock:
                seen.append((name, event.id))

        return EventConsumer([topic], handle, settings=settings, batch_size=20)

    first = consumers.start(member("first"))
    second = consumers.start(member("second"))
    consumers.wait_for(lambda: bool(first.assignment and second.assignment))
    consumers.wait_for(lambda: len(first.assignment | second.assignment) == 6)
    assert not first.assignment & second.assignment, "two members split the partitions"

    total = 3000
    sent: set[str] = set()
    third = member("third")
    for i in range(total):
        sent.add(producer.send(topic, order(i), key=str(i), schema=ORDER_SCHEMA).event_id)
        if i == total // 3:
            # Joins while the first two are busy; the rest is sent once it owns partitions.
            consumers.start(third)
        if i == total // 2:
            consumers.wait_for(lambda: len(third.assignment) > 0)
    assert producer.flush(30) == 0
    consumers.wait_for(lambda: len(seen) >= total)
    time.sleep(1.0)  # let any duplicate delivery show up
    consumers.stop_all()

    ids = [event_id for _, event_id in seen]
    assert set(ids) == sent, "an event was lost"
    duplicates = [event_id for event_id, n in Counter(ids).items() if n > 1]
    assert duplicates == [], f"{len(duplicates)} events handed to two handlers"
    members = {name for name, _ in seen}
    assert "third" in members
    assert first.stats.rebalances + second.stats.rebalances >= 3
