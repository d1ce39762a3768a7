"""Retry topics and the failure breaker against the real broker and registry.

- A handler failing twice then succeeding goes through ``<topic>.retry.1s`` and
  ``<topic>.retry.2s`` while the partition's other events flow on.
- 20 of 2,000 events always failing: exactly those 20 in the dead-letter topic, once
  each, with their whole attempt history; the breaker never trips on them.
- A consumer SIGKILLed while retried events wait in a retry topic: its successor
  handles or dead-letters each of them once.
- 100 % failures trip the breaker; it takes nothing while open, and resumes by itself
  once the handler heals.

Each test prints a ``FIGURES retry ...`` line.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamkit.client.config import client_config
from streamkit.consume.breaker import BreakerState
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.history import attempt_history
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, header_value, int_header
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import ConsumerRunner, consumer_settings, read_raw
from tests.integration.consume.conftest import PacedProducer, Report
from tests.integration.consume.retry_worker import attempt_of

DELAYS = ("1s", "2s")


def retry_topics(
    base: StreamkitSettings, topic: str, partitions: int, **consumer: Any
) -> StreamkitSettings:
    """Settings of a fresh group with retry delays; ``topic``'s retry topics and dead-letter
    topic created as ``streamkit topics ensure`` creates them."""
    settings = consumer_settings(
        base, group_id=f"retry-{uuid.uuid4().hex[:8]}", **{"retry_delays": DELAYS, **consumer}
    )
    StreamkitAdmin(settings).ensure_topics(
        [TopicSpec(topic, partitions=partitions), TopicSpec(f"{topic}.dlq", partitions=partitions)]
    )
    return settings


def send_all(producer: EventProducer, topic: str, keys: list[str]) -> list[str]:
    """Send one order per key, in order; return the event ids."""
    futures = [
        producer.send(topic, order(seq), key=key, schema=ORDER_SCHEMA)
        for seq, key in enumerate(keys)
    ]
    assert producer.flush(60) == 0
    return [future.event_id for future in futures]


def committed(settings: StreamkitSettings, partitions: list[TopicPartition]) -> list[int]:
    """The group's committed offsets of ``partitions``."""
    reader = Consumer(client_config(settings, "consumer"))
    try:
        return [tp.offset for tp in reader.committed(partitions, timeout=30)]
    finally:
        reader.close()


@dataclass
class Calls:
    """Every handler call: event id, key, attempt, when, event age, headers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[str, str, int, float, float, list[tuple[str, Any]]]] = field(
        default_factory=list
    )

    def record(self, event: Event) -> int:
        now = time.time()
        attempt = attempt_of(event)
        with self.lock:
            self.seen.append(
                (
                    event.id,
                    (event.key or b"").decode(),
                    attempt,
                    time.monotonic(),
                    now - event.timestamp / 1000,
                    list(event.headers),
                )
            )
        return attempt

    def of(self, key_prefix: str) -> list[tuple[str, str, int, float, float, list[Any]]]:
        with self.lock:
            return [call for call in self.seen if call[1].startswith(key_prefix)]


def test_fails_twice_then_succeeds_without_holding_the_partition(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    producer: EventProducer,
    consumers: ConsumerRunner,
    report: Report,
) -> None:
    topic = topic_factory(1)
    settings = retry_topics(streamkit_settings, topic, 1)
    calls = Calls()

    def handle(event: Event) -> None:
        if calls.record(event) < 3 and (event.key or b"").startswith(b"flaky"):
            raise RuntimeError("flaky dependency")

    consumer = consumers.start(EventConsumer([topic], handle, settings=settings))
    consumers.wait_for(lambda: bool(consumer.assignment))
    [flaky_id] = send_all(producer, topic, ["flaky-0"])
    paced = PacedProducer(producer, topic, 50, keys=20, max_s=4.5).start()
    consumers.wait_for(lambda: len(calls.of("flaky")) == 3, timeout_s=60)
    others = paced.stop()
    consumers.wait_for(lambda: len(calls.of("key-")) >= len(others), timeout_s=60)
    consumers.stop(consumer)

    flaky = calls.of("flaky")
    assert [(c[0], c[2]) for c in flaky] == [(flaky_id, 1), (flaky_id, 2), (flaky_id, 3)]
    first, second, third = (c[3] for c in flaky)
    assert second - first >= 1.0
    assert third - first >= 3.0
    for (_, _, attempt, _, _, headers), delay in zip(flaky[1:], DELAYS, strict=True):
        values = {name: header_value(headers, name) for name in dict(headers)}
        assert values["retry-attempt"] == str(attempt).encode()
        assert values["retry-delay"] == delay.encode()
        assert values["retry-error-type"] == b"builtins.RuntimeError"
        assert values["retry-error"] == b"RuntimeError: flaky dependency"
        assert values["retry-source-topic"] == topic.encode()
        assert (values["retry-source-partition"], values["retry-source-offset"]) == (b"0", b"0")
        assert int(values["retry-due-at"] or 0) >= int(values["retry-first-failure-at"] or 0)
        history = attempt_history(headers)
        assert [entry.attempt for entry in history] == list(range(1, attempt))
        assert history[0].topic == topic
    first_failures = {header_value(c[5], "retry-first-failure-at") for c in flaky[1:]}
    assert len(first_failures) == 1

    # The partition's other events were handled meanwhile, each once, not held back.
    other_calls = calls.of("key-")
    assert Counter(c[0] for c in other_calls) == Counter(others)
    during = [c[4] for c in other_calls if first <= c[3] <= third]
    assert during, "no other event was handled while the flaky one waited"
    assert max(during) < 3.0  # blocked in place they would wait for both delays

    # Each retry topic's offset is committed past its message.
    stages = [TopicPartition(f"{topic}.retry.{delay}", 0) for delay in DELAYS]
    assert committed(settings, stages) == [1, 1]
    during.sort()
    report(
        "retry stages",
        stage_1s_s=f"{second - first:.2f}",
        stage_2s_s=f"{third - second:.2f}",
        first_to_success_s=f"{third - first:.2f}",
        others_during=len(during),
        others_p50_ms=f"{median(during) * 1000:.0f}",
        others_p99_ms=f"{during[int(len(during) * 0.99) - 1] * 1000:.0f}",
        others_max_ms=f"{during[-1] * 1000:.0f}",
    )


def test_always_failing_events_reach_the_dead_letter_topic_once_with_their_history(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    producer: EventProducer,
    consumers: ConsumerRunner,
    report: Report,
) -> None:
    events, poison = 2000, 20
    topic = topic_factory(3)
    settings = retry_topics(streamkit_settings, topic, 3)
    keys = [f"poison-{i}" if i % (events // poison) == 7 else f"k-{i}" for i in range(events)]
    calls = Calls()

    def handle(event: Event) -> None:
        calls.record(event)
        if (event.key or b"").startswith(b"poison"):
            raise ValueError(f"cannot bill {event.key!r}")

    consumer = consumers.start(EventConsumer([topic], handle, settings=settings))
    started = time.monotonic()
    ids = send_all(producer, topic, keys)
    poison_ids = {i for i, key in zip(ids, keys, strict=True) if key.startswith("poison")}
    letters = read_raw(settings, f"{topic}.dlq", poison, timeout_s=90)
    elapsed = time.monotonic() - started
    consumers.wait_for(lambda: len(calls.of("k-")) >= events - poison)
    breaker = consumer.pipeline.breaker
    consumers.stop(consumer)

    assert len(letters) == poison
    assert Counter(header_value(m.headers(), "event-id").decode() for m in letters) == Counter(
        poison_ids
    )
    for letter in letters:
        headers = letter.headers()
        history = attempt_history(headers)
        assert [(e.attempt, e.topic) for e in history] == [
            (1, topic),
            (2, f"{topic}.retry.1s"),
            (3, f"{topic}.retry.2s"),
        ]
        assert {e.error_type for e in history} == {"builtins.ValueError"}
        assert header_value(headers, "dlq-attempts") == b"3"
        assert header_value(headers, "dlq-source-topic") == topic.encode()
        source = (
            int(header_value(headers, "dlq-source-partition") or -1),
            int(header_value(headers, "dlq-source-offset") or -1),
        )
        assert source == (history[0].partition, history[0].offset)
        assert not [name for name, _ in headers if name.startswith("retry-")]
    handled = Counter(c[0] for c in calls.of("k-"))
    assert set(handled) == set(ids) - poison_ids  # none lost
    assert set(handled.values()) == {1}
    assert Counter(c[0] for c in calls.of("poison")) == dict.fromkeys(poison_ids, 3)
    assert breaker.trips == 0
    assert breaker.state is BreakerState.CLOSED
    report(
        "retry poison",
        events=events,
        poison=poison,
        dead_lettered=len(letters),
        handled=len(handled),
        breaker_trips=breaker.trips,
        all_dead_lettered_after_s=f"{elapsed:.1f}",
    )


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_consumer_killed_while_retries_wait_loses_and_repeats_nothing(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    producer: EventProducer,
    child_env: dict[str, str],
    python: str,
    tmp_path: Path,
    consumers: ConsumerRunner,
    report: Report,
) -> None:
    events, flaky, poison = 300, 30, 10
    topic = topic_factory(3)
    # The second stage waits long enough that the kill below always lands before any
    # of its retries is due: a kill during a handler call that already wrote its effect
    # repeats that call (at-least-once), which is not what this test is about.
    settings = retry_topics(streamkit_settings, topic, 3, retry_delays=("1s", "10s"))
    keys = [
        f"flaky-{i}" if i % 10 == 3 else f"poison-{i}" if i % 30 == 5 else f"k-{i}"
        for i in range(events)
    ]
    assert sum(k.startswith("flaky") for k in keys) == flaky
    assert sum(k.startswith("poison") for k in keys) == poison
    handled_file = tmp_path / "handled.txt"
    env = {
        **child_env,
        "STREAMKIT_CONSUMER__GROUP_ID": settings.consumer.group_id or "",
        "STREAMKIT_CONSUMER__RETRY_DELAYS": "1s,10s",
        "STREAMKIT_CONSUMER__SESSION_TIMEOUT_MS": "6000",
        "STREAMKIT_DEDUP__URL": f"sqlite:///{tmp_path / 'dedup.db'}",
    }
    log = (tmp_path / "worker.log").open("a")
    command = [python, "-m", "tests.integration.consume.retry_worker", topic, str(handled_file)]
    workers: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, text=True, cwd=env["PYTHONPATH"]
        )
        workers.append(worker)
        return worker

    try:
        first = start()
        ids = send_all(producer, topic, keys)
        by_key = dict(zip(keys, ids, strict=True))
        # Every event had its first attempt, and the failing ones their second: all 40
        # wait in <topic>.retry.10s, due 10 s after that second failure. Kill now.
        consumers.wait_for(
            lambda: len(_lines(handled_file)) == events - flaky - poison, timeout_s=90
        )
        second_stage = read_raw(settings, f"{topic}.retry.10s", flaky + poison, timeout_s=60)
        assert len(second_stage) == flaky + poison
        first.kill()
        assert first.wait(30) == -signal.SIGKILL
        killed_at = time.monotonic()
        first_due_ms = min(int_header(m.headers(), "retry-due-at") or 0 for m in second_stage)
        assert time.time() * 1000 < first_due_ms, "killed after a retry was due: not this test"

        start()
        letters = read_raw(settings, f"{topic}.dlq", poison, timeout_s=90)
        consumers.wait_for(lambda: len(_lines(handled_file)) >= events - poison, timeout_s=90)
        recovered_s = time.monotonic() - killed_at
        time.sleep(1.0)  # anything handled twice would show up by now
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
        log.close()

    handled = Counter(line[0] for line in _lines(handled_file))
    expected = {by_key[k] for k in keys if not k.startswith("poison")}
    assert set(handled) == expected  # none lost
    assert set(handled.values()) == {1}, "an event was handled twice"
    retried = {line[0]: int(line[1]) for line in _lines(handled_file)}
    assert {retried[by_key[k]] for k in keys if k.startswith("flaky")} == {3}
    dead = Counter(header_value(m.headers(), "event-id").decode() for m in letters)
    assert dead == Counter(by_key[k] for k in keys if k.startswith("poison"))
    assert all(len(attempt_history(m.headers())) == 3 for m in letters)
    hops = read_raw(settings, f"{topic}.retry.1s", 2 * (flaky + poison), timeout_s=5)
    assert len(hops) == flaky + poison  # no hop sent twice
    report(
        "retry crash",
        events=events,
        pending_at_kill=len(second_stage),
        handled_after_restart=flaky,
        dead_lettered=len(letters),
        handled_twice=0,
        recovered_s=f"{recovered_s:.1f}",
    )


def test_the_breaker_trips_on_total_failure_and_resumes_when_healed(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    producer: EventProducer,
    consumers: ConsumerRunner,
    report: Report,
) -> None:
    events, cooldown_s = 1000, 3.0
    topic = topic_factory(3)
    settings = retry_topics(
        streamkit_settings, topic, 3, retry_delays=("1s",), failure_cooldown_ms=3000
    )
    group = settings.consumer.group_id or ""
    broken = threading.Event()
    broken.set()
    calls = Calls()
    succeeded: set[str] = set()
    metrics = StreamkitMetrics()

    def handle(event: Event) -> None:
        calls.record(event)
        if broken.is_set():
            raise ConnectionError("payments database unreachable")
        with calls.lock:
            succeeded.add(event.id)

    consumer = EventConsumer([topic], handle, settings=settings, metrics=metrics)
    breaker = consumer.pipeline.breaker
    stats = consumer.stats
    changes: list[tuple[float, BreakerState, int]] = []  # when, new state, messages taken
    open_times: list[float] = []  # the breaker's own time of opening
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        last = breaker.state
        deadline = time.monotonic() + 120
        while watching.is_set() and time.monotonic() < deadline:
            if breaker.state is not last:
                last = breaker.state
                changes.append((time.monotonic(), last, stats.consumed))
                if last is BreakerState.OPEN and breaker.opened_at is not None:
                    open_times.append(breaker.opened_at)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    consumers.start(consumer)
    ids = send_all(producer, topic, [f"k-{i}" for i in range(events)])
    consumers.wait_for(lambda: breaker.state is not BreakerState.CLOSED, timeout_s=60)
    with calls.lock:
        first_call = calls.seen[0][3]
    assert not consumer.is_ready()
    assert metrics.registry.get_sample_value("streamkit_breaker_open", {"group": group}) == 1
    time.sleep(cooldown_s * 0.8)
    assert breaker.state is BreakerState.OPEN

    broken.clear()  # the dependency is back: the probes succeed and it closes
    consumers.wait_for(lambda: breaker.state is BreakerState.CLOSED, timeout_s=30)
    consumers.wait_for(lambda: set(ids) <= succeeded, timeout_s=60)
    assert consumer.is_ready()
    assert metrics.registry.get_sample_value("streamkit_breaker_open", {"group": group}) == 0
    watching.clear()
    watcher.join(5)
    consumers.stop(consumer)

    (opened_at, opened, taken_at_trip), (probing_at, probing, taken_at_probe) = changes[:2]
    assert (opened, probing) == (BreakerState.OPEN, BreakerState.PROBING)
    assert taken_at_probe == taken_at_trip  # open: not one message taken
    assert probing_at - opened_at >= cooldown_s - 0.05  # sampled every few ms
    assert changes[-1][1] is BreakerState.CLOSED
    assert breaker.trips == 1
    # Every event failed while broken went through the retry topic and succeeded later.
    assert read_raw(settings, f"{topic}.dlq", 1, timeout_s=2) == []
    report(
        "retry breaker",
        time_to_trip_ms=f"{(open_times[0] - first_call) * 1000:.0f}",
        failures_to_trip=int(breaker.limit * breaker.window) + 1,
        taken_before_trip=taken_at_trip,
        window=settings.consumer.failure_window,
        limit=settings.consumer.failure_rate_limit,
        taken_while_open=taken_at_probe - taken_at_trip,
        open_until_closed_s=f"{changes[-1][0] - opened_at:.1f}",
        trips=breaker.trips,
    )
