"""Retention at bucket granularity, on the stores whose clock a test can move (memory, SQLite).

A mark completed at time t in the bucket [s, s + ttl/8) is remembered until s + ttl/8 +
ttl: at least ttl, at most ttl * 9/8. The Redis store is checked against real time in
tests/integration/dedup/test_redis_layout.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamkit.dedup import ClaimResult, MemoryDedupStore, SqliteDedupStore
from streamkit.dedup.base import StoreBase
from tests.unit.dedup.conftest import FakeClock

CLAIMED, DUPLICATE = ClaimResult.CLAIMED, ClaimResult.DUPLICATE
TTL_S = 80.0  # buckets of 10 s
START = 1_000_000.0  # a bucket boundary


@dataclass
class Stores:
    """Makes stores (by ttl) over one shared state and one fake clock."""

    backend: str
    path: Path
    clock: FakeClock = field(default_factory=lambda: FakeClock(START))
    made: list[StoreBase] = field(default_factory=list)

    def __call__(self, ttl_s: float) -> StoreBase:
        store: StoreBase
        if self.backend == "sqlite":
            store = SqliteDedupStore(self.path, ttl_s=ttl_s, clock=self.clock)
        elif not self.made:
            store = MemoryDedupStore(ttl_s=ttl_s, clock=self.clock)
        else:
            root = self.made[0]
            assert isinstance(root, MemoryDedupStore)
            store = root.for_owner(ttl_s=ttl_s)
        self.made.append(store)
        return store


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    stores = Stores(request.param, tmp_path / "d.db")
    yield stores
    for store in stores.made:
        store.close()


def test_a_mark_lives_from_ttl_to_the_end_of_its_bucket_plus_ttl(make: Stores) -> None:
    store, clock = make(TTL_S), make.clock
    clock.advance(3)
    store.complete(["e"])
    clock.advance(TTL_S)  # ttl after the completion: still remembered
    assert store.claim(["e"]) == [DUPLICATE]
    clock.now = START + 10 + TTL_S - 0.01  # just before its bucket is forgotten
    assert store.claim(["e"]) == [DUPLICATE]
    clock.now = START + 10 + TTL_S
    assert store.claim(["e"]) == [CLAIMED]


def test_marks_of_one_bucket_are_forgotten_together(make: Stores) -> None:
    store, clock = make(TTL_S), make.clock
    store.complete(["first"])
    clock.advance(9.9)
    store.complete(["last"])
    clock.advance(10)
    store.complete(["next-bucket"])
    assert store.stats().buckets == 2
    clock.now = START + 10 + TTL_S
    assert store.claim(["first", "last", "next-bucket"]) == [CLAIMED, CLAIMED, DUPLICATE]
    assert store.stats().remembered_ids == 1


def test_stores_of_different_retention_share_the_marks(make: Stores) -> None:
    short, long_, clock = make(8.0), make(800.0), make.clock
    short.complete(["s"])
    long_.complete(["l"])
    assert short.claim(["s", "l"]) == [DUPLICATE, DUPLICATE]
    assert long_.claim(["s", "l"]) == [DUPLICATE, DUPLICATE]
    clock.advance(8 + 1)  # past the short series' ttl and bucket (1 s)
    assert long_.claim(["s"]) == [CLAIMED]
    assert short.claim(["l"]) == [DUPLICATE]


def test_stats_count_the_marks_within_retention(make: Stores) -> None:
    store, clock = make(TTL_S), make.clock
    assert store.stats().remembered_ids == 0
    store.complete([f"e{i}" for i in range(30)])
    store.complete(["e0", "e1"])  # completed again: counted once
    stats = store.stats()
    assert (stats.remembered_ids, stats.buckets, stats.ttl_s, stats.bucket_s) == (30, 1, 80, 10)
    assert stats.bytes_used is not None
    assert stats.bytes_used > 0
    clock.advance(10 + TTL_S)
    assert store.stats().remembered_ids == 0
