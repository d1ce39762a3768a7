"""Liveness of a consumer: its loop polls, and the member holds its assignment.

A member that does not poll within ``max.poll.interval.ms`` is evicted from its group
by librdkafka; one whose assignment was lost (evicted, fenced) no longer consumes until
it rejoins. Either way it is not alive: ``/livez`` answers 503 and an orchestrator can
restart it. At concurrency 1 the handler runs on the poll thread, so a handler stuck
past the interval shows here; at higher concurrency the loop keeps polling.
"""

from __future__ import annotations

import time

__all__ = ["Liveness"]


class Liveness:
    """Tracks the last poll and whether the assignment was lost.

    Args:
        max_poll_interval_s: the consumer's ``max.poll.interval.ms``, in seconds.
    """

    def __init__(self, max_poll_interval_s: float) -> None:
        self.max_poll_interval_s = max_poll_interval_s
        self.last_poll = time.monotonic()
        self._lost = False
        self._assigned_at = float("-inf")

    def __repr__(self) -> str:
        return f"Liveness(alive={self.alive()}, since_poll_s={self.since_poll_s():.1f})"

    def polled(self) -> None:
        """The loop just polled."""
        self.last_poll = time.monotonic()

    def since_poll_s(self) -> float:
        """Seconds since the last poll."""
        return time.monotonic() - self.last_poll

    def lost(self, reported_by_poll_at: float | None = None) -> None:
        """The assignment was lost (eviction, fencing).

        ``reported_by_poll_at``: when the poll that returned the report began (an error
        event). The same poll may already have rejoined the group and served the new
        assignment's callback: an assignment since then supersedes the report.
        """
        if reported_by_poll_at is None or self._assigned_at < reported_by_poll_at:
            self._lost = True

    def assigned(self) -> None:
        """Partitions were assigned: the member is back in its group."""
        self._lost = False
        self._assigned_at = time.monotonic()

    def alive(self) -> bool:
        """Polled within ``max.poll.interval.ms`` and the assignment not lost."""
        return not self._lost and self.since_poll_s() < self.max_poll_interval_s
