"""The dispatcher: which work may run now, under an ordering and a number of slots.

Every work has a *lane*: under ``ordering="key"`` its ``(topic, partition, key)``
(null keys share one lane per partition), under ``"partition"`` its
``(topic, partition)``, under ``"none"`` no lane at all. Works of one lane run one after
the other, in the order they were submitted (poll order, hence offset order); works of
different lanes run side by side, at most ``slots`` at once. A lane whose first work is
*blocked* (waiting for a retry's due time, a claim another member holds, a dependency)
holds its followers back while other lanes go on.

The dispatcher only decides; executors run what it hands out. When a work finishes,
:meth:`Dispatcher.finish` returns the next work for the freed slot at once, so the
finishing thread starts it without a round trip through the poll thread. It is
thread-safe: the poll thread submits, handler threads (or the event loop) finish.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Literal

from streamkit.consume.work import Work

__all__ = ["Dispatcher", "Ordering", "lane_of"]

Ordering = Literal["key", "partition", "none"]


def lane_of(ordering: Ordering) -> Callable[[str, int, bytes | None], Hashable]:
    """The function giving the lane of a message ``(topic, partition, key)``."""
    if ordering == "key":
        return lambda topic, partition, key: (topic, partition, key)
    if ordering == "partition":
        return lambda topic, partition, _key: (topic, partition)
    return lambda _topic, _partition, _key: None


class Dispatcher:
    """Hands out works to run: one per lane at a time, at most ``slots`` at once.

    Args:
        slots: most works running at once (the concurrency).
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a dispatcher needs at least one slot")
        self.slots = slots
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, deque[Work]] = {}  # lane -> followers of its head
        self._ready: deque[Work] = deque()  # lane heads, not blocked, waiting for a slot
        self._running = 0

    def __repr__(self) -> str:
        return (
            f"Dispatcher(slots={self.slots}, running={self._running}, "
            f"ready={len(self._ready)}, lanes={len(self._lanes)})"
        )

    @property
    def running(self) -> int:
        """Works handed out and not finished."""
        return self._running

    @property
    def queued(self) -> int:
        """Works waiting for a slot (not counting lane followers)."""
        return len(self._ready)

    def idle(self) -> bool:
        """Nothing running, waiting or holding a lane."""
        return not (self._running or self._ready or self._lanes)

    def _fill(self, started: list[Work]) -> None:
        ready = self._ready
        while ready and self._running < self.slots:
            self._running += 1
            started.append(ready.popleft())

    def _enter(self, work: Work) -> None:
        """Append ``work`` to its lane; a new lane head that is not blocked gets ready."""
        lane = work.lane
        if lane is not None:
            followers = self._lanes.get(lane)
            if followers is not None:
                work.head = False
                followers.append(work)
                return
            self._lanes[lane] = deque()
        work.head = True
        if not work.blocked:
            self._ready.append(work)

    def _advance(self, work: Work) -> None:
        """``work`` left its lane: its first follower becomes the head."""
        lane = work.lane
        if lane is None:
            return
        followers = self._lanes.get(lane)
        if followers is None:
            return
        while followers:
            following = followers.popleft()
            if following.dropped:
                continue
            following.head = True
            if not following.blocked:
                self._ready.append(following)
            return
        del self._lanes[lane]

    def submit(self, works: Iterable[Work]) -> list[Work]:
        """Queue works in their lanes; return those to start now (slots were free)."""
        started: list[Work] = []
        with self._lock:
            for work in works:
                self._enter(work)
            self._fill(started)
        return started

    def finish(self, work: Work, *, advance: bool = True) -> Work | None:
        """A started work ended; return the work to start in its slot, if any.

        Args:
            work: the work that ran.
            advance: the work is done with its lane (it succeeded); False keeps the
                lane held by it (it failed: a retry or its dead letter decides later,
                see :meth:`release` and :meth:`unblock`).
        """
        with self._lock:
            if advance:
                self._advance(work)
            if self._ready:
                return self._ready.popleft()
            self._running -= 1
            return None

    def release(self, work: Work) -> list[Work]:
        """A work that is not running leaves its lane (skipped, dead-lettered, dropped);
        return the works to start now. A follower is skipped when its turn comes."""
        started: list[Work] = []
        with self._lock:
            work.blocked = False
            if work.head:
                work.head = False
                self._advance(work)
            elif work.lane is not None:
                work.dropped = True
            self._fill(started)
        return started

    def unblock(self, work: Work) -> list[Work]:
        """A blocked work may run again; return the works to start now."""
        started: list[Work] = []
        with self._lock:
            work.blocked = False
            if work.head:
                self._ready.append(work)
            self._fill(started)
        return started

    def give_back(self, work: Work) -> None:
        """A work handed out was not started after all: first in line again, slot freed."""
        with self._lock:
            self._ready.appendleft(work)
            self._running -= 1

    def discard(self, drop: Callable[[Work], bool]) -> list[Work]:
        """Remove the waiting works (ready or following) for which ``drop`` is true and
        return them; running works stay, and so do blocked lane heads (whoever blocked
        them lets them go with :meth:`release`)."""
        with self._lock:
            heads: list[Work] = []
            kept: deque[Work] = deque()
            for work in self._ready:
                (heads if drop(work) else kept).append(work)
            self._ready = kept
            removed = list(heads)
            for lane, followers in self._lanes.items():
                staying: deque[Work] = deque()
                for work in followers:
                    (removed if drop(work) else staying).append(work)
                if len(staying) != len(followers):
                    self._lanes[lane] = staying
            for work in heads:  # their lanes lost their head
                self._advance(work)
                work.head = False
        return removed
