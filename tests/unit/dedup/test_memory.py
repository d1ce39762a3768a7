from __future__ import annotations

import threading

import pytest

from streamkit.dedup import ClaimResult, MemoryDedupStore
from streamkit.errors import DedupStoreError
from tests.unit.dedup.conftest import FakeClock

CLAIMED, DUPLICATE, IN_PROGRESS = (
    ClaimResult.CLAIMED,
    ClaimResult.DUPLICATE,
    ClaimResult.IN_PROGRESS,
)


def test_claim_expires_after_claim_ttl(memory: MemoryDedupStore, clock: FakeClock) -> None:
    other = memory.for_owner("b")
    assert memory.claim(["k"]) == [CLAIMED]
    clock.advance(9.9)
    assert other.claim(["k"]) == [IN_PROGRESS]
    clock.advance(0.1)
    assert other.claim(["k"]) == [CLAIMED]


def test_stale_owner_completes_only_if_nobody_took_over(
    memory: MemoryDedupStore, clock: FakeClock
) -> None:
    other, third = memory.for_owner("b"), memory.for_owner("c")
    memory.claim(["taken", "untaken"])
    clock.advance(11)  # both claims expired
    assert other.claim(["taken"]) == [CLAIMED]
    memory.complete(["taken", "untaken"])
    assert third.claim(["taken", "untaken"]) == [IN_PROGRESS, DUPLICATE]
    memory.release(["taken"])  # the zombie cannot release b's claim
    assert third.claim(["taken"]) == [IN_PROGRESS]
    other.complete(["taken"])
    assert third.claim(["taken"]) == [DUPLICATE]


def test_the_oldest_completed_marks_are_evicted_first(clock: FakeClock) -> None:
    store = MemoryDedupStore(max_entries=3, ttl_s=80, clock=clock)  # buckets of 10 s
    store.complete(["a"])
    clock.advance(10)
    store.complete(["b", "c"])
    assert store.claim(["a"]) == [DUPLICATE]  # a hit does not make a mark younger
    store.claim(["d"])  # over the bound: "a", in the oldest bucket, goes
    assert store.entries == 3
    assert store.claim(["b", "c"]) == [DUPLICATE, DUPLICATE]
    store.release(["d"])
    assert store.claim(["a"]) == [CLAIMED]  # forgotten: processed again, not lost


def test_live_claims_are_never_evicted_and_a_full_store_claims_nothing(
    clock: FakeClock,
) -> None:
    store = MemoryDedupStore(max_entries=3, clock=clock)
    other = store.for_owner()
    assert store.claim(["a", "b"]) == [CLAIMED, CLAIMED]
    store.complete(["done"])
    # A third claim evicts the completed mark, never a live claim.
    assert store.claim(["c"]) == [CLAIMED]
    with pytest.raises(DedupStoreError, match=r"full: 3 live claims plus 2 new.*max_entries"):
        store.claim(["d", "e"])
    # Nothing of the refused batch was claimed; the live claims still hold.
    assert other.claim(["a", "b", "c"]) == [IN_PROGRESS] * 3
    store.complete(["a"])
    assert other.claim(["d"]) == [CLAIMED]  # "a" (now a mark) was evicted to make room


def test_expired_claims_make_room(clock: FakeClock) -> None:
    store = MemoryDedupStore(max_entries=2, claim_ttl_s=1, clock=clock)
    long_lived = store.for_owner(claim_ttl_s=100)
    long_lived.claim(["x"])  # expires last but was created first
    store.claim(["y"])
    clock.advance(2)  # "y" expired, "x" is live
    assert store.claim(["z"]) == [CLAIMED]
    assert store.claim(["x"]) == [IN_PROGRESS]


def test_keys_repeated_in_a_batch_are_claimed_once(memory: MemoryDedupStore) -> None:
    assert memory.claim(["k", "k", "j"]) == [CLAIMED, IN_PROGRESS, CLAIMED]
    assert memory.claim(["k"]) == [IN_PROGRESS]  # claims are not re-entrant


def test_complete_of_an_unclaimed_key_marks_it_done(memory: MemoryDedupStore) -> None:
    memory.complete(["seeded"])
    assert memory.for_owner().claim(["seeded"]) == [DUPLICATE]


def test_views_share_the_table_but_not_the_owner(memory: MemoryDedupStore) -> None:
    view = memory.for_owner("v", ttl_s=5)
    assert (view.owner, view.ttl_s, view.claim_ttl_s) == ("v", 5.0, memory.claim_ttl_s)
    assert view.max_entries == memory.max_entries
    view.claim(["k"])
    assert memory.entries == 1
    view.close()
    assert memory.claim(["k"]) == [IN_PROGRESS]  # closing a view keeps the table


@pytest.mark.parametrize("max_entries", [0, -3, 1.5, True])
def test_bad_max_entries(max_entries: int) -> None:
    with pytest.raises(DedupStoreError, match="max_entries"):
        MemoryDedupStore(max_entries=max_entries)


def test_threads_racing_claim_each_key_once() -> None:
    store = MemoryDedupStore()
    keys = [f"id-{i}" for i in range(200)]
    barrier = threading.Barrier(4)
    won: list[list[str]] = [[] for _ in range(4)]

    def race(index: int) -> None:
        view = store.for_owner()
        barrier.wait()
        for key in keys:
            if view.claim([key]) == [CLAIMED]:
                won[index].append(key)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(key for keys_won in won for key in keys_won) == sorted(keys)
