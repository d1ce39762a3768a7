"""Liveness: polled within max.poll.interval.ms, and the assignment not lost."""

from __future__ import annotations

import time

from streamkit.consume.liveness import Liveness


def test_a_lost_assignment_is_dead_until_the_next_assignment() -> None:
    liveness = Liveness(max_poll_interval_s=10)
    assert liveness.alive()
    liveness.lost()
    assert not liveness.alive()
    liveness.assigned()
    assert liveness.alive()


def test_an_eviction_reported_by_a_poll_that_also_rejoined_is_superseded() -> None:
    """The poll returning the max-poll-exceeded event may serve the new assignment's
    callback too (librdkafka serves callbacks inside ``consume``); the member is alive."""
    liveness = Liveness(max_poll_interval_s=10)
    poll_started = time.monotonic()
    liveness.assigned()  # the callback, inside that poll
    liveness.lost(reported_by_poll_at=poll_started)  # the event, handled after it returned
    assert liveness.alive()


def test_an_eviction_reported_after_the_last_assignment_counts() -> None:
    liveness = Liveness(max_poll_interval_s=10)
    liveness.assigned()
    liveness.lost(reported_by_poll_at=time.monotonic())
    assert not liveness.alive()


def test_a_loop_that_stopped_polling_is_dead() -> None:
    liveness = Liveness(max_poll_interval_s=0.05)
    time.sleep(0.06)
    assert not liveness.alive()
    liveness.polled()
    assert liveness.alive()
