from __future__ import annotations

import logging
import random

import pytest

from streamkit.consume.breaker import PROBES_TO_CLOSE, BreakerState, FailureBreaker
from streamkit.settings import ConsumerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _breaker(clock: Clock, **kwargs: float) -> FailureBreaker:
    options = {"limit": 0.5, "window": 200, "cooldown_s": 30.0, **kwargs}
    return FailureBreaker(clock=clock, who="consumer g", **options)  # type: ignore[arg-type]


def test_all_failures_trip_it_past_the_limit_within_the_window(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = _breaker(clock)
    for _ in range(100):
        breaker.record("builtins.TimeoutError")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.room(held=5) is None
    with caplog.at_level(logging.ERROR):
        breaker.record("builtins.TimeoutError")
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 1
    assert breaker.room(held=0) == 0
    assert "most frequent: builtins.TimeoutError (101)" in caplog.text


@pytest.mark.parametrize("poison_rate", [0.01, 0.05, 0.25])
def test_a_share_of_poison_below_the_limit_never_trips_it(clock: Clock, poison_rate: float) -> None:
    breaker = _breaker(clock)
    draw = random.Random(7)
    for _ in range(20_000):
        breaker.record("builtins.ValueError" if draw.random() < poison_rate else None)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.trips == 0


def test_the_window_forgets_old_failures(clock: Clock) -> None:
    breaker = _breaker(clock, window=10)
    for _ in range(5):
        breaker.record("E")
    for _ in range(10):
        breaker.record(None)
    assert breaker.failure_rate == 0.0
    for _ in range(5):
        breaker.record("E")
    assert breaker.state is BreakerState.CLOSED  # 5 of 10 is not more than half
    breaker.record("E")
    assert breaker.state is BreakerState.OPEN


def test_cooldown_then_probes_one_at_a_time_then_closes(clock: Clock) -> None:
    changes: list[BreakerState] = []
    breaker = _breaker(clock, window=4)
    breaker._on_change = lambda b: changes.append(b.state)
    for _ in range(3):
        breaker.record("E")
    assert breaker.state is BreakerState.OPEN
    clock.now += 29.9
    assert breaker.room(held=0) == 0
    assert breaker.reopen_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.room(held=2) == 0  # probes wait for what is held
    assert breaker.state is BreakerState.PROBING
    assert breaker.room(held=0) == 1
    for _ in range(PROBES_TO_CLOSE):
        assert breaker.room(held=0) == 1
        breaker.record(None)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.room(held=9) is None
    assert breaker.failure_rate == 0
    assert changes == [BreakerState.OPEN, BreakerState.PROBING, BreakerState.CLOSED]


def test_a_failed_probe_opens_it_again(clock: Clock) -> None:
    breaker = _breaker(clock, window=2, cooldown_s=5)
    breaker.record("E")
    breaker.record("E")
    clock.now += 5
    assert breaker.room(held=0) == 1
    breaker.record(None)
    breaker.record("E")
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 1
    assert breaker.room(held=0) == 0
    clock.now += 5
    assert breaker.room(held=0) == 1


def test_limit_one_switches_it_off(clock: Clock) -> None:
    breaker = _breaker(clock, limit=1.0, window=10)
    for _ in range(100):
        breaker.record("E")
    assert not breaker.enabled
    assert breaker.state is BreakerState.CLOSED


def test_from_settings() -> None:
    breaker = FailureBreaker.from_settings(
        ConsumerSettings(failure_rate_limit=0.2, failure_window=50, failure_cooldown_ms=1500)
    )
    assert (breaker.limit, breaker.window, breaker.cooldown_s) == (0.2, 50, 1.5)


def test_a_batch_of_successes_counts_like_single_ones(clock: Clock) -> None:
    one_by_one, batched = _breaker(clock, window=10), _breaker(clock, window=10)
    for breaker in (one_by_one, batched):
        for _ in range(4):
            breaker.record("builtins.ValueError")
    for _ in range(8):
        one_by_one.record(None)
    batched.succeeded(8)
    assert batched.failure_rate == one_by_one.failure_rate == 0.2
    batched.succeeded(500)
    assert batched.failure_rate == 0.0
