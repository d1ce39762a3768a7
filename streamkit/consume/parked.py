"""Parked works: waiting outside the dispatcher, still holding their place in their lane.

A work is parked when it may not run now for a reason other than a busy slot:

- a failed handler call, until its retry's due time;
- a claim another member (or a copy still in flight) holds, until it is claimed again;
- an unreachable registry (not decoded) or dedup store (not claimed), until the
  dependency answers.

The pipeline's poll thread parks and restarts them (it alone touches this object). A
parked work is ``blocked``: the dispatcher keeps its key's later events behind it.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

from streamkit.consume.work import Work

__all__ = ["Parked"]

Timer = tuple[float, int, Work]


class Parked:
    """The parked works of one pipeline."""

    def __init__(self) -> None:
        self._seq = itertools.count()  # ties in due times keep parking order
        self._retries: list[Timer] = []
        self._reclaims: list[Timer] = []
        self.undecoded: list[Work] = []  # waiting for the registry
        self.unclaimed: list[Work] = []  # waiting for the dedup store

    def __repr__(self) -> str:
        return (
            f"Parked(retries={len(self._retries)}, reclaims={len(self._reclaims)}, "
            f"undecoded={len(self.undecoded)}, unclaimed={len(self.unclaimed)})"
        )

    def retry_in(self, work: Work, delay_s: float) -> None:
        """Call ``work``'s handler again in ``delay_s``."""
        work.blocked = True
        heapq.heappush(self._retries, (time.monotonic() + delay_s, next(self._seq), work))

    def reclaim_in(self, work: Work, delay_s: float) -> None:
        """Claim ``work``'s key again in ``delay_s``."""
        work.blocked = True
        heapq.heappush(self._reclaims, (time.monotonic() + delay_s, next(self._seq), work))

    def wait_for_registry(self, works: list[Work]) -> None:
        """Decode these again once the registry answers."""
        for work in works:
            work.blocked = True
        self.undecoded.extend(works)

    def wait_for_store(self, works: list[Work]) -> None:
        """Claim these again once the dedup store answers."""
        for work in works:
            work.blocked = True
        self.unclaimed.extend(works)

    def due_retries(self) -> list[Work]:
        """The works whose retry is due (taken out)."""
        return _due(self._retries)

    def due_reclaims(self) -> list[Work]:
        """The works whose re-claim is due (taken out)."""
        return _due(self._reclaims)

    def next_due_in(self) -> float | None:
        """Seconds until the next retry or re-claim is due (None: none parked)."""
        heads = [timers[0][0] for timers in (self._retries, self._reclaims) if timers]
        return max(0.0, min(heads) - time.monotonic()) if heads else None

    def drop(self, select: Callable[[Work], bool]) -> list[Work]:
        """Take out every parked work ``select`` chooses; return them."""
        dropped: list[Work] = []
        for timers in (self._retries, self._reclaims):
            dropped.extend(timer[2] for timer in timers if select(timer[2]))
            timers[:] = [timer for timer in timers if not select(timer[2])]
            heapq.heapify(timers)
        for waiting in (self.undecoded, self.unclaimed):
            dropped.extend(work for work in waiting if select(work))
            waiting[:] = [work for work in waiting if not select(work)]
        return dropped


def _due(timers: list[Timer]) -> list[Work]:
    now = time.monotonic()
    due = []
    while timers and timers[0][0] <= now:
        due.append(heapq.heappop(timers)[2])
    return due
