"""In-process deduplication store: a bounded LRU with TTLs (``memory://``).

For tests and single-process services that accept forgetting everything on restart.
It is thread-safe; views made with :meth:`MemoryDedupStore.for_owner` share one table,
so worker threads can each claim under their own owner id.

Bounding (``max_entries``) counts live claims and completed marks together:

- Completed marks are evicted least recently used first (a duplicate hit counts as a
  use). An evicted mark means a later redelivery of that event is processed again —
  the store degrades to at-least-once, never to loss.
- Live claims are never evicted: dropping one would let a second consumer process an
  event that is still being handled, silently. When live claims alone would exceed
  ``max_entries``, :meth:`~MemoryDedupStore.claim` raises
  :class:`~streamkit.errors.DedupStoreError` and claims none of the batch; the consumer
  retries later, by which time in-flight claims have completed, been released, or
  expired.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    StoreBase,
    StoreURL,
)
from streamkit.errors import DedupStoreError

__all__ = ["DEFAULT_MAX_ENTRIES", "MemoryDedupStore"]

DEFAULT_MAX_ENTRIES = 100_000


@dataclass(slots=True)
class _Claim:
    owner: str
    expires_at: float


class _Table:
    """The state shared by every view: live claims and completed marks, one lock."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.lock = threading.Lock()
        self.max_entries = max_entries
        self.clock = clock
        # A key is in at most one of the two maps. Claims are in creation order, which
        # is expiry order when every view uses the same claim_ttl_s.
        self.claims: OrderedDict[str, _Claim] = OrderedDict()
        # key -> expiry time, least recently used first.
        self.done: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self.claims) + len(self.done)

    def drop_expired_claims(self, now: float, *, full: bool) -> None:
        if full:
            for key in [k for k, c in self.claims.items() if c.expires_at <= now]:
                del self.claims[key]
            return
        while self.claims:
            key, claim = next(iter(self.claims.items()))
            if claim.expires_at > now:
                break
            del self.claims[key]

    def trim_done(self, now: float) -> None:
        # Expired marks at the cold end go first; then LRU eviction down to the bound.
        while self.done:
            key, expires_at = next(iter(self.done.items()))
            if expires_at > now:
                break
            del self.done[key]
        while self.done and len(self) > self.max_entries:
            self.done.popitem(last=False)


class MemoryDedupStore(StoreBase):
    """Bounded LRU + TTL store in this process's memory.

    Args:
        max_entries: bound on live claims plus completed marks.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is remembered (unless evicted earlier).
        owner: id of this instance's claims; a fresh uuid4 hex when None.
        clock: monotonic seconds; tests inject a fake clock.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
        ttl_s: float = DEFAULT_TTL_S,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        _table: _Table | None = None,
    ) -> None:
        super().__init__(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        if _table is None:
            if isinstance(max_entries, bool) or not isinstance(max_entries, int):
                raise DedupStoreError(f"max_entries must be an int, got {max_entries!r}")
            if max_entries <= 0:
                raise DedupStoreError(f"max_entries must be positive, got {max_entries}")
            _table = _Table(max_entries, clock)
        self._table = _table

    @classmethod
    def from_url(cls, url: StoreURL, *, owner: str | None = None) -> MemoryDedupStore:
        """Open from a parsed ``memory://?max_entries=N&ttl=S&claim_ttl=S`` URL."""
        if url.parts.netloc or url.parts.path not in ("", "/"):
            raise url.error("a memory store has no host or path", "write memory://?max_entries=N")
        max_entries = url.pop_int("max_entries", DEFAULT_MAX_ENTRIES)
        url.reject_unknown("max_entries, ttl, claim_ttl")
        return cls(
            max_entries=max_entries, claim_ttl_s=url.claim_ttl_s, ttl_s=url.ttl_s, owner=owner
        )

    def for_owner(
        self,
        owner: str | None = None,
        *,
        claim_ttl_s: float | None = None,
        ttl_s: float | None = None,
    ) -> MemoryDedupStore:
        """Another store over the same table with its own owner id (e.g. per thread).

        The TTLs default to this store's.
        """
        self._check_open()
        return MemoryDedupStore(
            claim_ttl_s=self.claim_ttl_s if claim_ttl_s is None else claim_ttl_s,
            ttl_s=self.ttl_s if ttl_s is None else ttl_s,
            owner=owner,
            _table=self._table,
        )

    @property
    def max_entries(self) -> int:
        """Bound on live claims plus completed marks."""
        return self._table.max_entries

    @property
    def entries(self) -> int:
        """Live claims plus completed marks held, including expired ones not yet dropped."""
        return len(self._table)

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Claim keys; see :class:`~streamkit.dedup.base.DedupStore`.

        Raises:
            DedupStoreError: live claims would exceed ``max_entries``; nothing was claimed.
        """
        self._check_open()
        table = self._table
        results: list[ClaimResult] = []
        with table.lock:
            now = table.clock()
            new: dict[str, None] = {}  # ordered set of the keys this batch claims
            for key in keys:
                claim = table.claims.get(key)
                done_until = table.done.get(key)
                if key in new or (claim is not None and claim.expires_at > now):
                    results.append(ClaimResult.IN_PROGRESS)
                elif done_until is not None and done_until > now:
                    table.done.move_to_end(key)
                    results.append(ClaimResult.DUPLICATE)
                else:
                    new[key] = None
                    results.append(ClaimResult.CLAIMED)
            if new:
                self._make_room(len(new), now)
                expires_at = now + self.claim_ttl_s
                for key in new:
                    table.done.pop(key, None)
                    table.claims.pop(key, None)
                    table.claims[key] = _Claim(self._owner, expires_at)
                table.trim_done(now)
        return results

    def _make_room(self, wanted: int, now: float) -> None:
        table = self._table
        table.drop_expired_claims(now, full=False)
        if len(table.claims) + wanted <= table.max_entries:
            return
        table.drop_expired_claims(now, full=True)
        if len(table.claims) + wanted <= table.max_entries:
            return
        raise DedupStoreError(
            f"memory dedup store is full: {len(table.claims)} live claims plus {wanted} "
            f"new ones exceed max_entries={table.max_entries}; nothing was claimed "
            "(hint: raise max_entries in the memory:// URL above the number of events "
            "in flight, or complete/release claims sooner)"
        )

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`~streamkit.dedup.base.DedupStore`."""
        self._check_open()
        table = self._table
        with table.lock:
            now = table.clock()
            expires_at = now + self.ttl_s
            for key in keys:
                claim = table.claims.get(key)
                if claim is not None:
                    if claim.owner != self._owner and claim.expires_at > now:
                        continue  # another owner's live claim: it decides
                    del table.claims[key]
                table.done[key] = expires_at
                table.done.move_to_end(key)
            table.trim_done(now)

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        table = self._table
        with table.lock:
            for key in keys:
                claim = table.claims.get(key)
                if claim is not None and claim.owner == self._owner:
                    del table.claims[key]

    def __repr__(self) -> str:
        return (
            f"MemoryDedupStore(max_entries={self._table.max_entries}, "
            f"entries={len(self._table)}, claim_ttl_s={self.claim_ttl_s}, "
            f"ttl_s={self.ttl_s}, owner={self._owner!r})"
        )
