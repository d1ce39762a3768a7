"""In-process deduplication store: bounded, with retention buckets (``memory://``).

For tests and single-process services that accept forgetting everything on restart.
It is thread-safe; views made with :meth:`MemoryDedupStore.for_owner` share one table,
so worker threads can each claim under their own owner id.

Completed marks are 128-bit ints (:class:`~streamkit.dedup.marks.IdCodec`) in one set
per retention bucket; a bucket is dropped whole once its retention has passed, so a
mark lives ``ttl_s`` to ``ttl_s * 9 / 8`` (see :mod:`streamkit.dedup.marks`). About 90
bytes per remembered id, against about 190 for a dict of key strings.

Bounding (``max_entries``) counts live claims and completed marks together:

- Completed marks are evicted oldest bucket first. An evicted mark means a later
  redelivery of that event is processed again — the store degrades to at-least-once,
  never to loss.
- Live claims are never evicted: dropping one would let a second consumer process an
  event that is still being handled, silently. When live claims alone would exceed
  ``max_entries``, :meth:`~MemoryDedupStore.claim` raises
  :class:`~streamkit.errors.DedupStoreError` and claims none of the batch; the consumer
  retries later, by which time in-flight claims have completed, been released, or
  expired.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import inf

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStats,
    StoreBase,
    StoreURL,
)
from streamkit.dedup.marks import HASH_KEY_BYTES, IdCodec, Retention
from streamkit.errors import DedupStoreError

__all__ = ["DEFAULT_MAX_ENTRIES", "MemoryDedupStore"]

DEFAULT_MAX_ENTRIES = 100_000
_ID_OBJECT_BYTES = 48  # a 128-bit int: 44 bytes, in a 48-byte allocator block


@dataclass(slots=True)
class _Claim:
    owner: str
    expires_at: float


@dataclass(slots=True)
class _Bucket:
    start: float  # seconds: marks completed from start to end go in
    end: float
    expires_at: float
    ids: set[int] = field(default_factory=set)


class _Table:
    """The state shared by every view: live claims, bucketed marks, one lock."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.lock = threading.Lock()
        self.max_entries = max_entries
        self.clock = clock
        self.codec = IdCodec(os.urandom(HASH_KEY_BYTES))
        # An id is a live claim or a mark, not both. Claims are in creation order,
        # which is expiry order when every view uses the same claim_ttl_s.
        self.claims: OrderedDict[int, _Claim] = OrderedDict()
        # (ttl_ms, start_ms) -> bucket, in creation order (oldest marks first).
        self.buckets: dict[tuple[int, int], _Bucket] = {}
        self.marks = 0  # ids in all buckets
        self.next_expiry = inf  # when the first bucket expires
        self.current: dict[int, _Bucket] = {}  # ttl_ms -> the bucket last written

    def __len__(self) -> int:
        return len(self.claims) + self.marks

    def live_buckets(self, now: float) -> list[set[int]]:
        """The id sets of unexpired buckets, newest first (a duplicate is usually recent)."""
        return [b.ids for b in reversed(self.buckets.values()) if b.expires_at > now]

    def bucket(self, retention: Retention, now: float) -> _Bucket:
        """The bucket that marks completed now go into (created if needed)."""
        bucket = self.current.get(retention.ttl_ms)
        if bucket is not None and bucket.start <= now < bucket.end:
            return bucket  # the common case: completions within one bucket's time
        start = retention.start_ms(now * 1000)
        bucket = self.buckets.get((retention.ttl_ms, start))
        if bucket is None:
            end, expires_at = start + retention.width_ms, retention.expires_ms(start)
            bucket = _Bucket(start / 1000, end / 1000, expires_at / 1000)
            self.buckets[(retention.ttl_ms, start)] = bucket
            self.next_expiry = min(self.next_expiry, bucket.expires_at)
        self.current[retention.ttl_ms] = bucket
        return bucket

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

    def trim_marks(self, now: float) -> None:
        # Expired buckets go whole; then the oldest marks, down to the bound.
        if now >= self.next_expiry:
            for name, bucket in list(self.buckets.items()):
                if bucket.expires_at <= now:
                    self.marks -= len(bucket.ids)
                    self._drop(name, bucket)
            self.next_expiry = min((b.expires_at for b in self.buckets.values()), default=inf)
        while self.buckets and len(self) > self.max_entries:
            name, bucket = next(iter(self.buckets.items()))
            excess = min(len(self) - self.max_entries, len(bucket.ids))
            for _ in range(excess):
                bucket.ids.pop()
            self.marks -= excess
            if not bucket.ids:
                self._drop(name, bucket)

    def _drop(self, name: tuple[int, int], bucket: _Bucket) -> None:
        del self.buckets[name]
        if self.current.get(name[0]) is bucket:
            del self.current[name[0]]

    def bytes_used(self) -> int:
        sets = sum(sys.getsizeof(b.ids) for b in self.buckets.values())
        claims = sys.getsizeof(self.claims) + len(self.claims) * 200  # node, int, _Claim
        return sets + self.marks * _ID_OBJECT_BYTES + claims


class MemoryDedupStore(StoreBase):
    """Bounded store of claims and bucketed marks in this process's memory.

    Args:
        max_entries: bound on live claims plus completed marks.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is at least remembered (unless evicted earlier).
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
        ids = table.codec.ids(keys, remember=True)
        results: list[ClaimResult] = []
        with table.lock:
            now = table.clock()
            live = table.live_buckets(now)
            new: dict[int, None] = {}  # ordered set of the ids this batch claims
            for id_ in ids:
                claim = table.claims.get(id_)
                if id_ in new or (claim is not None and claim.expires_at > now):
                    results.append(ClaimResult.IN_PROGRESS)
                elif any(id_ in marks for marks in live):
                    results.append(ClaimResult.DUPLICATE)
                else:
                    new[id_] = None
                    results.append(ClaimResult.CLAIMED)
            if new:
                self._make_room(len(new), now)
                expires_at = now + self.claim_ttl_s
                for id_ in new:
                    table.claims.pop(id_, None)
                    table.claims[id_] = _Claim(self._owner, expires_at)
                table.trim_marks(now)
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
        ids = table.codec.ids(keys)
        with table.lock:
            now = table.clock()
            target = table.bucket(self.retention, now)
            older: list[set[int]] | None = None
            for id_ in ids:
                claim = table.claims.get(id_)
                if claim is not None:
                    if claim.owner != self._owner and claim.expires_at > now:
                        continue  # another owner's live claim: it decides
                    del table.claims[id_]
                if id_ in target.ids:
                    continue
                # Completed again: remembered from now on, and counted once.
                if older is None:
                    older = [b.ids for b in table.buckets.values() if b is not target]
                for marks in older:
                    if id_ in marks:
                        marks.discard(id_)
                        table.marks -= 1
                target.ids.add(id_)
                table.marks += 1
            table.trim_marks(now)

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        table = self._table
        ids = table.codec.ids(keys)
        with table.lock:
            for id_ in ids:
                claim = table.claims.get(id_)
                if claim is not None and claim.owner == self._owner:
                    del table.claims[id_]

    def stats(self) -> DedupStats:
        """Marks held within retention and their estimated size in this process."""
        self._check_open()
        table = self._table
        with table.lock:
            now = table.clock()
            table.trim_marks(now)
            return self._stats("memory", table.marks, table.bytes_used(), len(table.buckets))

    def __repr__(self) -> str:
        return (
            f"MemoryDedupStore(max_entries={self._table.max_entries}, "
            f"entries={len(self._table)}, claim_ttl_s={self.claim_ttl_s}, "
            f"ttl_s={self.ttl_s}, owner={self._owner!r})"
        )
