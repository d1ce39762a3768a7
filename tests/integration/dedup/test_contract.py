"""The DedupStore contract, run against every backend (memory, SQLite file, real Redis)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from streamkit.dedup import ClaimResult, DedupStore
from streamkit.errors import DedupStoreError
from tests.integration.dedup._race import claim_all
from tests.integration.dedup.conftest import Backend

pytestmark = pytest.mark.integration

CLAIMED, DUPLICATE, IN_PROGRESS = (
    ClaimResult.CLAIMED,
    ClaimResult.DUPLICATE,
    ClaimResult.IN_PROGRESS,
)
SHORT_S = 0.5
PAST_SHORT_S = 0.75  # sleep this long to be sure a SHORT_S expiry has passed


def test_claim_complete_then_duplicate(backend: Backend) -> None:
    a, b = backend.make("a"), backend.make("b")
    assert a.claim(["e1"]) == [CLAIMED]
    a.complete(["e1"])
    assert a.claim(["e1"]) == [DUPLICATE]
    assert b.claim(["e1"]) == [DUPLICATE]


def test_claim_release_then_claim_again(backend: Backend) -> None:
    a, b = backend.make("a"), backend.make("b")
    assert a.claim(["e1"]) == [CLAIMED]
    a.release(["e1"])
    assert b.claim(["e1"]) == [CLAIMED]
    b.release(["e1"])
    assert a.claim(["e1"]) == [CLAIMED]


def test_in_progress_while_another_owner_holds_the_claim(backend: Backend) -> None:
    a, b = backend.make("a"), backend.make("b")
    assert a.claim(["e1"]) == [CLAIMED]
    assert b.claim(["e1"]) == [IN_PROGRESS]
    assert a.claim(["e1"]) == [IN_PROGRESS]  # not re-entrant, for the owner either
    a.complete(["e1"])
    assert b.claim(["e1"]) == [DUPLICATE]


def test_expired_claim_is_taken_over_and_the_zombie_cannot_touch_it(backend: Backend) -> None:
    zombie = backend.make("zombie", claim_ttl_s=SHORT_S)
    b, c = backend.make("b"), backend.make("c")
    assert zombie.claim(["e1"]) == [CLAIMED]
    assert b.claim(["e1"]) == [IN_PROGRESS]
    time.sleep(PAST_SHORT_S)
    assert b.claim(["e1"]) == [CLAIMED]
    zombie.release(["e1"])
    zombie.complete(["e1"])  # b holds a live claim: b decides
    assert c.claim(["e1"]) == [IN_PROGRESS]
    b.release(["e1"])
    assert c.claim(["e1"]) == [CLAIMED]


def test_stale_owner_completes_when_nobody_took_over(backend: Backend) -> None:
    stale, b = backend.make("stale", claim_ttl_s=SHORT_S), backend.make("b")
    assert stale.claim(["e1"]) == [CLAIMED]
    time.sleep(PAST_SHORT_S)
    stale.complete(["e1"])  # the work was done: recording it avoids a second effect
    assert b.claim(["e1"]) == [DUPLICATE]


def test_completed_mark_expires_after_retention(backend: Backend) -> None:
    a, b = backend.make("a", ttl_s=SHORT_S), backend.make("b")
    assert a.claim(["e1"]) == [CLAIMED]
    a.complete(["e1"])
    assert b.claim(["e1"]) == [DUPLICATE]
    time.sleep(PAST_SHORT_S)
    assert b.claim(["e1"]) == [CLAIMED]


def test_batch_of_mixed_keys(backend: Backend) -> None:
    a, b = backend.make("a"), backend.make("b")
    assert a.claim(["done", "held"]) == [CLAIMED, CLAIMED]
    a.complete(["done"])
    batch = ["new1", "done", "held", "new2", "new1"]
    assert b.claim(batch) == [CLAIMED, DUPLICATE, IN_PROGRESS, CLAIMED, IN_PROGRESS]
    b.complete(["new1", "new2"])
    assert a.claim(batch) == [DUPLICATE, DUPLICATE, IN_PROGRESS, DUPLICATE, DUPLICATE]


def test_release_and_complete_by_a_non_owner_do_nothing(backend: Backend) -> None:
    a, b, c = backend.make("a"), backend.make("b"), backend.make("c")
    assert a.claim(["e1"]) == [CLAIMED]
    b.release(["e1"])
    b.complete(["e1"])
    assert c.claim(["e1"]) == [IN_PROGRESS]
    a.complete(["e1"])  # the owner still can
    b.release(["e1"])  # and a release never undoes a completion
    assert c.claim(["e1"]) == [DUPLICATE]


def test_complete_of_an_unclaimed_key_marks_it_done(backend: Backend) -> None:
    a, b = backend.make("a"), backend.make("b")
    a.complete(["seeded"])
    assert b.claim(["seeded"]) == [DUPLICATE]


def test_empty_batches_and_unusual_keys(backend: Backend) -> None:
    a = backend.make("a")
    assert a.claim([]) == []
    a.complete([])
    a.release([])
    keys = ["", "ü-ñ-✓", "with space", "a" * 1000, "'; DROP TABLE x; --"]
    assert a.claim(keys) == [CLAIMED] * len(keys)
    a.complete(keys)
    assert backend.make("b").claim(keys) == [DUPLICATE] * len(keys)


def test_closed_store_refuses_calls(backend: Backend) -> None:
    a = backend.make("a")
    a.close()
    with pytest.raises(DedupStoreError, match="closed"):
        a.claim(["e1"])


def _race_threads(backend: Backend, keys: list[str]) -> list[list[str]]:
    stores = [backend.make() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    won: list[list[str]] = [[] for _ in stores]

    def race(index: int, store: DedupStore) -> None:
        barrier.wait()
        for start in range(0, len(keys), 4):
            batch = keys[start : start + 4]
            results = store.claim(batch)
            claimed = [k for k, r in zip(batch, results, strict=True) if r is CLAIMED]
            store.complete(claimed)
            won[index].extend(claimed)

    threads = [threading.Thread(target=race, args=item) for item in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return won


def _race_processes(backend: Backend, keys: list[str]) -> list[list[str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(target=claim_all, args=(backend.url, keys, seed, barrier, results))
        for seed in range(2)
    ]
    for process in processes:
        process.start()
    try:
        won: list[list[str]] = [results.get(timeout=30) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0, 0]
    return won


def test_racing_claimers_get_exactly_one_winner_per_id(backend: Backend) -> None:
    """Two processes (threads for the in-process memory store) claim the same 200 ids."""
    keys = [f"race-{i}" for i in range(200)]
    race = _race_threads if backend.name == "memory" else _race_processes
    won = race(backend, keys)
    assert sorted(key for keys_won in won for key in keys_won) == sorted(keys)
    assert backend.make().claim(keys) == [DUPLICATE] * len(keys)
