"""The ``backend`` fixture: each contract test runs against memory, SQLite, Redis and
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamkit.dedup import DedupStore, MemoryDedupStore, open_store
from streamkit.testing.postgres import PostgresEndpoint
from streamkit.testing.redis import RedisEndpoint


@dataclass
class Backend:
    """Makes stores (one per owner) over one shared dedup state."""

    name: str
    url: str  # what another process opens to share the state ('' for memory)
    stores: list[DedupStore] = field(default_factory=list)
    _root: MemoryDedupStore | None = None

    def make(
        self, owner: str | None = None, *, claim_ttl_s: float = 60.0, ttl_s: float = 3600.0
    ) -> DedupStore:
        store: DedupStore
        if self.name == "memory":
            if self._root is None:
                self._root = MemoryDedupStore(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
                store = self._root
            else:
                store = self._root.for_owner(owner, claim_ttl_s=claim_ttl_s, ttl_s=ttl_s)
        else:
            store = open_store(self.url, claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        self.stores.append(store)
        return store


def with_param(url: str, name: str, value: str) -> str:
    """``url`` with one more query parameter."""
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        url = ""
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/dedup.db"
    elif request.param == "redis":
        server: RedisEndpoint = request.getfixturevalue("redis_server")
        # A fresh key prefix per test: tests never see each other's keys, and an
        # existing server (STREAMKIT_TEST_REDIS_URL) is never flushed.
        url = with_param(server.url, "prefix", f"test:{uuid.uuid4().hex[:12]}:")
    else:
        postgres: PostgresEndpoint = request.getfixturevalue("postgres_server")
        # Likewise a fresh table per test.
        url = with_param(postgres.url, "table", f"dedup_{uuid.uuid4().hex[:12]}")
    backend = Backend(request.param, url)
    yield backend
    for store in backend.stores:
        store.close()
