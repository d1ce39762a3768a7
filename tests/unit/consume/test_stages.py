"""The pipeline's small stages with fakes: dependency gate, backpressure, dedup gate,
retry policy, liveness."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from streamkit.consume.backpressure import PAUSE_AFTER_S, Backpressure
from streamkit.consume.dedup_gate import DedupGate
from streamkit.consume.dependencies import DEDUP_STORE, SCHEMA_REGISTRY, DependencyGate
from streamkit.consume.liveness import Liveness
from streamkit.consume.offsets import PartitionTracker
from streamkit.consume.processing import ConsumerStats
from streamkit.consume.retry import Forward, InPlaceRetry, RetryLater
from streamkit.consume.work import Work
from streamkit.dedup import MemoryDedupStore, scoped_key
from streamkit.errors import DedupStoreError
from streamkit.observability.metrics import ConsumerMetrics, StreamkitMetrics
from streamkit.settings import ConsumerSettings
from tests.fakes import message


def _work(record: Message) -> Work:
    return Work(record, PartitionTracker("orders", 2), record.offset(), None)


# Dependency gate ----------------------------------------------------------------------


def test_dependency_gate_logs_once_per_change_and_backs_off_capped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = StreamkitMetrics()
    stats = ConsumerStats()
    settings = ConsumerSettings(retry_backoff_ms=100, retry_backoff_max_ms=400)
    gate = DependencyGate(settings, "consumer g", metrics.consumer("g"), stats)

    def up(name: str) -> float | None:
        return metrics.registry.get_sample_value(
            "streamkit_dependency_up", {"group": "g", "dependency": name}
        )

    assert up(DEDUP_STORE) == 1.0
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            gate.failed(DEDUP_STORE, DedupStoreError("refused"))
        assert gate.is_down()
        assert gate.is_down(DEDUP_STORE)
        assert not gate.is_down(SCHEMA_REGISTRY)
        assert not gate.due(DEDUP_STORE)
        assert gate.due(SCHEMA_REGISTRY)
        wait = gate.next_attempt_in()
        assert wait is not None
        assert 0.3 < wait <= 0.4, "100, 200, 400, 400, 400 ms: capped"
        assert up(DEDUP_STORE) == 0.0
        gate.ok(DEDUP_STORE)
        gate.ok(DEDUP_STORE)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "dedup_store is down" in messages[0]
    assert "is back" in messages[1]
    assert "5 failed attempts" in messages[1]
    assert up(DEDUP_STORE) == 1.0
    assert stats.dependency_outages == 1
    assert gate.next_attempt_in() is None


# Backpressure ---------------------------------------------------------------------------


class FakePauses:
    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.calls = 0

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls += 1
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls += 1
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}


def test_room_stops_at_the_limit_and_returns_at_the_low_water_mark() -> None:
    flow = Backpressure(FakePauses(), 10)
    assert flow.room(0) == 10
    assert flow.room(7) == 3
    assert flow.room(10) == 0
    assert flow.room(8) == 0, "still full until half of it is free"
    assert flow.room(5) == 5


def test_a_barrier_takes_nothing_while_anything_is_held() -> None:
    flow = Backpressure(FakePauses(), 100, barrier=True)
    assert flow.room(0) == 100
    assert flow.room(1) == 0
    assert flow.room(0) == 100


def test_pause_and_resume_leave_the_applications_own_pauses_alone() -> None:
    client = FakePauses()
    flow = Backpressure(client, 10)
    assigned = {("t", 0), ("t", 1), ("t", 2)}
    flow.pause_by_user([("t", 2)])
    flow.apply(assigned, pause=True)
    assert client.paused == assigned
    calls = client.calls
    flow.apply(assigned, pause=True)
    assert client.calls == calls, "already paused: no call"
    flow.apply(assigned, pause=False)
    assert client.paused == {("t", 2)}, "the application's pause stays"
    flow.resume_by_user([("t", 2)])
    assert client.paused == set()
    assert flow.paused == 0


def test_revoked_partitions_are_resumed_before_they_go() -> None:
    client = FakePauses()
    flow = Backpressure(client, 10)
    flow.apply({("t", 0), ("t", 1)}, pause=True)
    flow.forget({("t", 0)})
    assert client.paused == {("t", 1)}
    assert flow.paused == 1
    assert PAUSE_AFTER_S < 1


# Dedup gate -----------------------------------------------------------------------------


def test_one_claim_round_trip_sorts_claimed_duplicates_and_conflicts() -> None:
    store = MemoryDedupStore()
    calls: list[int] = []
    claim = store.claim

    def counting_claim(keys: Any) -> Any:
        calls.append(len(keys))
        return claim(keys)

    store.claim = counting_claim  # type: ignore[method-assign]
    store.complete([scoped_key("g", "done")])
    store.for_owner("other").claim([scoped_key("g", "busy")])
    works = [
        _work(message(offset=offset, headers=[("event-id", event_id.encode())]))
        for offset, event_id in enumerate(["new", "done", "busy", "new"])
    ]
    gate = DedupGate(store, "g")
    outcome = gate.claim(works)
    assert calls == [3], "one call, each key once"
    assert [w.offset for w in outcome.claimed] == [0]
    assert [w.offset for w in outcome.duplicates] == [1, 3], "a second copy in the batch too"
    assert [w.offset for w in outcome.conflicts] == [2]
    assert works[0].claim == scoped_key("g", "new")
    gate.complete(outcome.claimed)
    assert store.claim([scoped_key("g", "new")])[0].name == "DUPLICATE"
    assert 0 < gate.claim_retry_s <= 1


def test_release_failures_are_left_to_the_claim_ttl(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryDedupStore()
    store.close()
    with caplog.at_level(logging.INFO):
        DedupGate(store, "g").release(["g:x"])
    assert "expire by themselves" in caplog.text


# Retry policy and liveness -------------------------------------------------------------


def test_in_place_retry_backs_off_then_forwards_to_the_dead_letter_topic() -> None:
    settings = ConsumerSettings(max_retries=3, retry_backoff_ms=100, retry_backoff_max_ms=250)
    policy = InPlaceRetry(settings, "g", retriable=lambda error: not isinstance(error, KeyError))
    work = _work(message())
    delays = []
    for attempts in (1, 2, 3):
        work.attempts = attempts
        decision = policy.on_failure(work, RuntimeError("x"))
        assert isinstance(decision, RetryLater)
        delays.append(decision.delay_s)
    assert delays == [0.1, 0.2, 0.25]
    work.attempts = 4
    forward = policy.on_failure(work, RuntimeError("x"))
    assert isinstance(forward, Forward)
    assert forward.letter.topic == "orders.dlq"
    assert forward.reason == "handler_failed"
    work.attempts = 1
    assert isinstance(policy.on_failure(work, KeyError("k")), Forward), "not retriable"
    assert policy.on_undecodable(work, ValueError("bytes")).reason == "undecodable"


def test_liveness_fails_when_the_loop_stalls_or_the_assignment_is_lost() -> None:
    liveness = Liveness(max_poll_interval_s=0.05)
    assert liveness.alive()
    time.sleep(0.06)
    assert not liveness.alive(), "no poll within the interval"
    liveness.polled()
    assert liveness.alive()
    liveness.lost()
    assert not liveness.alive()
    liveness.assigned()
    assert liveness.alive()


def test_the_null_observer_overrides_every_method() -> None:
    from streamkit.observability.metrics import NullConsumerMetrics

    public = {
        name
        for name in vars(ConsumerMetrics)
        if not name.startswith("_") and callable(vars(ConsumerMetrics)[name])
    }
    assert public <= set(vars(NullConsumerMetrics))
