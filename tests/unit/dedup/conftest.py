from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamkit.dedup import MemoryDedupStore, SqliteDedupStore


class FakeClock:
    """A clock tests move by hand instead of sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dedup.db"


@pytest.fixture
def memory(clock: FakeClock) -> MemoryDedupStore:
    return MemoryDedupStore(max_entries=100, claim_ttl_s=10, ttl_s=100, owner="a", clock=clock)


@pytest.fixture
def sqlite_store(db_path: Path, clock: FakeClock) -> Iterator[SqliteDedupStore]:
    store = SqliteDedupStore(db_path, claim_ttl_s=10, ttl_s=100, owner="a", clock=clock)
    yield store
    store.close()
