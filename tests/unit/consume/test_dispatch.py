"""The dispatcher: one work per lane at a time, in submission order, within the slots."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Hashable

import pytest

from streamkit.consume.dispatch import Dispatcher, lane_of
from streamkit.consume.executors import Completions, ThreadExecutor
from streamkit.consume.offsets import PartitionTracker
from streamkit.consume.work import Work

TRACKER = PartitionTracker("t", 0)


def _work(offset: int, lane: Hashable) -> Work:
    return Work(None, TRACKER, offset, lane)  # type: ignore[arg-type]


def _offsets(works: list[Work]) -> list[int]:
    return [work.offset for work in works]


def test_lanes_by_ordering() -> None:
    assert lane_of("key")("t", 1, b"k") == ("t", 1, b"k")
    assert lane_of("key")("t", 1, None) == ("t", 1, None)  # null keys: one lane per partition
    assert lane_of("partition")("t", 1, b"k") == ("t", 1)
    assert lane_of("none")("t", 1, b"k") is None


def test_one_work_per_lane_and_no_more_than_the_slots() -> None:
    dispatcher = Dispatcher(slots=2)
    works = [_work(0, "a"), _work(1, "a"), _work(2, "b"), _work(3, "c")]
    started = dispatcher.submit(works)
    assert _offsets(started) == [0, 2], "a's follower waits; c waits for a slot"
    assert dispatcher.running == 2
    nxt = dispatcher.finish(works[0])
    assert nxt is works[3], "the freed slot goes to the oldest ready lane head"
    nxt = dispatcher.finish(works[2])
    assert nxt is works[1], "a's follower became ready when its head finished"
    assert dispatcher.finish(works[3]) is None
    assert dispatcher.finish(works[1]) is None
    assert dispatcher.idle()


def test_a_failed_head_keeps_its_lane_until_released_or_unblocked() -> None:
    dispatcher = Dispatcher(slots=4)
    head, follower, other = _work(0, "a"), _work(1, "a"), _work(2, "b")
    assert dispatcher.submit([head, follower, other]) == [head, other]
    assert dispatcher.finish(head, advance=False) is None  # failed: lane held, slot freed
    head.blocked = True  # waiting for its retry's due time
    assert dispatcher.finish(other) is None
    assert dispatcher.running == 0, "the follower may not overtake its failed head"
    assert dispatcher.unblock(head) == [head], "retry due: the head runs again"
    assert dispatcher.finish(head, advance=False) is None
    assert dispatcher.release(head) == [follower], "dead-lettered: the lane moves on"


def test_blocked_heads_hold_only_their_own_lane() -> None:
    dispatcher = Dispatcher(slots=1)
    parked = _work(0, "a")
    parked.blocked = True  # e.g. its claim is held by another member
    follower, other = _work(1, "a"), _work(2, "b")
    assert dispatcher.submit([parked, follower, other]) == [other]
    assert dispatcher.finish(other) is None
    assert dispatcher.unblock(parked) == [parked]
    assert dispatcher.finish(parked) is follower


def test_a_follower_that_leaves_is_skipped() -> None:
    dispatcher = Dispatcher(slots=2)
    head, duplicate, last = _work(0, "a"), _work(1, "a"), _work(2, "a")
    duplicate.blocked = True
    assert dispatcher.submit([head, duplicate, last]) == [head]
    assert dispatcher.release(duplicate) == []  # found a duplicate while following
    assert dispatcher.finish(head) is last


def test_discard_drops_waiting_works_and_frees_their_lanes() -> None:
    dispatcher = Dispatcher(slots=1)
    running, queued, follower = _work(0, "a"), _work(1, "b"), _work(2, "b")
    kept = _work(3, "c")
    assert dispatcher.submit([running, queued, follower, kept]) == [running]
    removed = dispatcher.discard(lambda work: work.lane == "b")
    assert set(_offsets(removed)) == {1, 2}
    assert dispatcher.finish(running) is kept
    assert dispatcher.finish(kept) is None
    assert dispatcher.idle()


def test_unordered_works_only_wait_for_slots() -> None:
    dispatcher = Dispatcher(slots=3)
    works = [_work(i, None) for i in range(5)]
    assert _offsets(dispatcher.submit(works)) == [0, 1, 2]
    assert dispatcher.finish(works[1]) is works[3]


def test_give_back_puts_a_work_first_in_line() -> None:
    dispatcher = Dispatcher(slots=1)
    first, second = _work(0, "a"), _work(1, "b")
    assert dispatcher.submit([first, second]) == [first]
    dispatcher.give_back(first)
    assert dispatcher.running == 0
    assert dispatcher.unblock(second) == [first]  # any refill starts the oldest first


@pytest.mark.parametrize("slots", [1, 4, 32])
def test_threads_finishing_at_random_keep_every_lane_in_order(slots: int) -> None:
    rng = random.Random(slots)
    dispatcher = Dispatcher(slots)
    lanes = [f"k{i}" for i in range(20)]
    works = [_work(offset, rng.choice(lanes)) for offset in range(2_000)]
    seen: dict[Hashable, list[int]] = defaultdict(list)
    running: set[Hashable] = set()
    lock = threading.Lock()
    peak = [0]

    def run(work: Work | None) -> None:
        while work is not None:
            with lock:
                assert work.lane not in running, "two works of one lane at once"
                running.add(work.lane)
                peak[0] = max(peak[0], len(running))
                seen[work.lane].append(work.offset)
            with lock:
                running.discard(work.lane)
            work = dispatcher.finish(work)

    threads = []
    for start in range(0, len(works), 100):
        for work in dispatcher.submit(works[start : start + 100]):
            thread = threading.Thread(target=run, args=(work,))
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join(30)
    assert dispatcher.idle()
    assert sum(len(v) for v in seen.values()) == len(works)
    for offsets in seen.values():
        assert offsets == sorted(offsets)
    assert peak[0] <= slots


class _RetriedBeforeFinish(Completions):
    """The poll thread books a failed call, and its retry succeeds, before the runner
    that reported the failure has asked the dispatcher for its next work."""

    def put(self, work: Work) -> None:
        super().put(work)
        if work.error is not None and work.attempts == 1:
            work.attempts, work.error = 2, None  # the retry, run meanwhile, succeeded


def test_a_runner_frees_the_lane_by_the_outcome_it_reported_not_a_later_one() -> None:
    dispatcher = Dispatcher(2)
    first, follower = _work(0, "a"), _work(1, "a")
    assert dispatcher.submit([first, follower]) == [first]
    finished: list[bool] = []
    finish = dispatcher.finish

    def spy(work: Work, *, advance: bool = True) -> Work | None:
        finished.append(advance)
        return finish(work, advance=advance)

    dispatcher.finish = spy  # type: ignore[method-assign]

    def handler(work: Work) -> None:
        if work is first:
            raise ValueError("fails once")

    executor = ThreadExecutor(
        handler,
        dispatcher,
        _RetriedBeforeFinish(),
        lambda _work, _seconds: None,
        name="t",
        decode=lambda _work: None,
    )
    first.event = follower.event = object()  # type: ignore[assignment]
    executor.start([first])
    executor.close(5)
    assert finished == [False], "the failed call keeps its lane for the retry's decision"
    assert not follower.head
