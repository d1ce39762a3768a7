"""Retry topics, ``retry_policy="block"`` and the failure breaker, wired into the pipeline
over a fake consumer client."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Message

from streamkit.consume.breaker import BreakerState
from streamkit.consume.history import attempt_history
from streamkit.consume.offsets import PartitionTracker
from streamkit.consume.retry import Forward, RetryLater
from streamkit.consume.retry_topics import RetryTopics, TopicRetry, retry_policy
from streamkit.consume.work import Work
from streamkit.serde.events import Event, header_value
from streamkit.settings import ConsumerSettings
from tests.fakes import message
from tests.unit.consume.conftest import FakeClient, make_harness, messages

DELAYS = ("1s", "2s")


def _work(attempts: int) -> Work:
    """A work of ``t[2]@41`` after ``attempts`` handler calls."""
    work = Work(message(topic="t"), PartitionTracker("t", 2), 41, None)
    work.attempts = attempts
    return work


def _retried(topic: str, offset: int, due_in_s: float, attempt: int = 2) -> Message:
    """A message of ``topic`` (a retry topic) as a retry hop wrote it."""
    due = int((time.time() + due_in_s) * 1000)
    headers = [
        ("event-id", f"r{offset}".encode()),
        ("retry-attempt", str(attempt).encode()),
        ("retry-due-at", str(due).encode()),
        ("retry-source-topic", b"t"),
        ("retry-source-partition", b"0"),
        ("retry-source-offset", str(100 + offset).encode()),
    ]
    return message(
        headers=headers,
        topic=topic,
        partition=0,
        offset=offset,
        key=b"k0",
        value=f"r{offset}".encode(),
    )


def test_a_failed_event_hops_to_the_first_retry_topic_and_its_offset_is_committed() -> None:
    client = FakeClient(messages(10, keys=2))
    handled: list[str] = []

    def handle(event: Event) -> None:
        if event.id == "e4":
            raise TimeoutError("db")
        handled.append(event.id)

    harness = make_harness(client, handle, retry_delays=DELAYS).start()
    harness.wait_for(lambda: client.last_commit().get(("t", 0)) == 10)
    harness.stop()
    assert handled == [f"e{i}" for i in range(10) if i != 4]  # e6, e8 (its key) not held
    [hop] = harness.sink.letters
    assert hop.topic == "t.retry.1s"
    assert header_value(hop.headers, "retry-attempt") == b"2"
    assert header_value(hop.headers, "retry-error-type") == b"builtins.TimeoutError"
    assert header_value(hop.headers, "retry-source-offset") == b"4"
    assert [e.attempt for e in attempt_history(hop.headers)] == [1]
    stats = harness.pipeline.stats
    assert (stats.retries, stats.dead_lettered) == (1, 0)


def test_a_retry_topic_partition_waits_paused_until_its_message_is_due() -> None:
    due_in_s = 0.4
    client = FakeClient([_retried("t.retry.1s", 0, -1.0), _retried("t.retry.1s", 1, due_in_s)])
    seen: list[tuple[Event, float]] = []
    started = time.time()
    harness = make_harness(
        client, lambda event: seen.append((event, time.time())), retry_delays=DELAYS
    ).start()
    harness.wait_for(lambda: len(seen) == 1)
    harness.wait_for(lambda: ("t.retry.1s", 0) in client.paused)
    assert harness.pipeline.due is not None
    assert harness.pipeline.due.waiting == 1
    harness.wait_for(lambda: len(seen) == 2)
    harness.wait_for(lambda: client.last_commit().get(("t.retry.1s", 0)) == 2)
    harness.stop()
    assert [(tp.topic, tp.offset) for tp in client.seeks] == [("t.retry.1s", 1)]
    assert ("t.retry.1s", 0) not in client.paused
    (due_event, _), (late_event, handled_at) = seen
    assert handled_at - started >= due_in_s - 0.05
    # Handed over as the event it was: its source topic, partition and offset.
    assert (late_event.topic, late_event.partition, late_event.offset) == ("t", 0, 101)
    assert due_event.offset == 100


def test_after_the_last_stage_the_event_goes_to_the_source_dead_letter_topic() -> None:
    client = FakeClient([_retried("t.retry.2s", 0, -1.0, attempt=3)])

    def fail(_event: Event) -> None:
        raise ValueError("still refused")

    harness = make_harness(client, fail, retry_delays=DELAYS).start()
    harness.wait_for(lambda: client.last_commit().get(("t.retry.2s", 0)) == 1)
    harness.stop()
    [letter] = harness.sink.letters
    assert letter.topic == "t.dlq"
    headers = dict(letter.headers)
    assert headers["dlq-source-topic"] == b"t"
    assert (headers["dlq-source-partition"], headers["dlq-source-offset"]) == (b"0", b"100")
    assert not [name for name, _ in letter.headers if name.startswith("retry-")]
    assert harness.pipeline.stats.dead_lettered == 1


def test_the_policy_dead_letters_at_once_what_retrying_cannot_help() -> None:
    settings = ConsumerSettings(retry_delays=DELAYS)
    policy = TopicRetry(
        settings, "g", RetryTopics(settings, ["t"]), retriable=lambda e: not isinstance(e, KeyError)
    )
    work = _work(attempts=1)
    decision = policy.on_failure(work, KeyError("schema"))
    assert isinstance(decision, Forward)
    assert (decision.letter.topic, decision.stage) == ("t.dlq", None)
    hop = policy.on_failure(work, OSError("later"))
    assert isinstance(hop, Forward)
    assert hop.stage is not None
    assert (hop.letter.topic, hop.stage.delay) == ("t.retry.1s", "1s")


def test_block_waits_the_delays_in_place_keeping_the_key_in_order() -> None:
    settings = ConsumerSettings(retry_delays=("50ms", "100ms"), retry_policy="block")
    policy, topics = retry_policy(settings, "g", ["t"])
    assert topics is None
    client = FakeClient(messages(6, keys=2))
    calls: list[tuple[str, float]] = []
    failures = {"e2": 2}

    def handle(event: Event) -> None:
        calls.append((event.id, time.monotonic()))
        if failures.get(event.id, 0) > 0:
            failures[event.id] -= 1
            raise TimeoutError("db")

    harness = make_harness(
        client, handle, retry_delays=("50ms", "100ms"), retry_policy="block"
    ).start()
    harness.wait_for(lambda: client.last_commit().get(("t", 0)) == 6)
    harness.stop()
    order = [event_id for event_id, _ in calls]
    assert order.count("e2") == 3
    assert order.index("e4") > len(order) - 1 - order[::-1].index("e2")  # e4 waited for e2
    times = [at for event_id, at in calls if event_id == "e2"]
    assert times[1] - times[0] >= 0.05
    assert times[2] - times[1] >= 0.1
    assert harness.sink.letters == []
    assert isinstance(policy.on_failure(_work(attempts=2), OSError()), RetryLater)
    assert isinstance(policy.on_failure(_work(attempts=3), OSError()), Forward)


def test_the_breaker_stops_taking_messages_then_probes_and_resumes() -> None:
    client = FakeClient(messages(300, keys=50))
    broken = threading.Event()
    broken.set()
    handled: list[str] = []

    def handle(event: Event) -> None:
        if broken.is_set():
            raise ConnectionError("down")
        handled.append(event.id)

    harness = make_harness(
        client,
        handle,
        max_retries=0,
        failure_window=20,
        failure_rate_limit=0.5,
        failure_cooldown_ms=300,
        concurrency=4,
    ).start()
    pipeline = harness.pipeline
    harness.wait_for(lambda: pipeline.breaker.state is BreakerState.OPEN)
    time.sleep(0.1)
    taken = pipeline.stats.consumed
    assert taken < 300
    time.sleep(0.15)
    assert pipeline.stats.consumed == taken, "took messages while open"
    assert set(client.paused) == {("t", 0)}
    broken.clear()
    harness.wait_for(lambda: pipeline.breaker.state is BreakerState.CLOSED)
    harness.wait_for(lambda: client.last_commit().get(("t", 0)) == 300)
    harness.stop()
    assert pipeline.stats.breaker_trips == 1
    assert len(harness.sink.letters) + len(handled) == 300
    assert len(harness.sink.letters) >= 11


def test_a_poison_message_or_two_never_trips_the_default_breaker() -> None:
    client = FakeClient(messages(1_000, keys=50))

    def handle(event: Event) -> None:
        if event.id in {"e10", "e500"}:
            raise ValueError("poison")

    harness = make_harness(client, handle).start(max_messages=1_000)
    harness.join(30)
    assert harness.pipeline.breaker.trips == 0
    assert len(harness.sink.letters) == 2
