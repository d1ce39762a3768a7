"""The dedup gate: one claim round trip per polled batch, marks written in batches.

Before handlers run, every event id of a batch is claimed in the store at once
(:meth:`DedupGate.claim`): a claimed event is handled; one completed before (within
retention), or a second copy within the batch, is a duplicate and is finished at once;
one whose claim another member (or this one, for a copy still in flight) holds is
*parked*: it and its key's followers wait while other keys flow, and it is claimed
again with backoff until that claim is completed (then it is a duplicate) or expires.

After a handler succeeded, its mark is not written at once: the poll thread completes
the marks of every event handled since its last turn in one call
(:meth:`DedupGate.complete`), and only then finishes their offsets. The crash window
this opens (a mark unwritten although its handler succeeded) lasts until that turn's
call returns; the README states the figure measured.

Keys are scoped by group (:func:`~streamkit.dedup.scoped_key`), so two services reading
one topic each handle every event once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamkit.consume.processing import dedup_key
from streamkit.consume.work import Work
from streamkit.dedup import ClaimResult, DedupStore, scoped_key
from streamkit.dedup.base import DEFAULT_CLAIM_TTL_S
from streamkit.errors import DedupStoreError

__all__ = ["ClaimOutcome", "DedupGate"]

log = logging.getLogger(__name__)

CLAIM_RETRY_MAX_S = 1.0


@dataclass
class ClaimOutcome:
    """What one claim round trip decided for each work."""

    claimed: list[Work] = field(default_factory=list)
    duplicates: list[Work] = field(default_factory=list)
    conflicts: list[Work] = field(default_factory=list)


class DedupGate:
    """Claims, completes and releases event ids in ``store`` for consumer ``group``.

    Args:
        store: the dedup store (thread-safe, batch operations).
        group: the consumer group (scopes the keys).
        key_fn: ``(message) -> str``; default: the ``event-id`` header.
    """

    def __init__(
        self, store: DedupStore, group: str, key_fn: Callable[[Any], str] | None = None
    ) -> None:
        self.store = store
        self._group = group
        self._key_fn = key_fn

    def __repr__(self) -> str:
        return f"DedupGate({self.store!r})"

    @property
    def claim_retry_s(self) -> float:
        """How long a parked event waits before it is claimed again: a quarter of the
        store's claim TTL, at most one second."""
        ttl = float(getattr(self.store, "claim_ttl_s", DEFAULT_CLAIM_TTL_S))
        return min(CLAIM_RETRY_MAX_S, ttl / 4)

    def claim(self, works: Sequence[Work]) -> ClaimOutcome:
        """Claim every work's key in one round trip.

        Raises:
            DedupStoreError: the store failed; nothing is known about any key.
        """
        keys = [scoped_key(self._group, dedup_key(work.message, self._key_fn)) for work in works]
        unique = list(dict.fromkeys(keys))
        results = dict(zip(unique, self.store.claim(unique), strict=True))
        outcome = ClaimOutcome()
        seen: set[str] = set()
        for work, key in zip(works, keys, strict=True):
            result = results[key]
            if result is ClaimResult.DUPLICATE or key in seen:
                outcome.duplicates.append(work)
            elif result is ClaimResult.IN_PROGRESS:
                outcome.conflicts.append(work)
            else:
                work.claim = key
                outcome.claimed.append(work)
            seen.add(key)
        return outcome

    def complete(self, works: Sequence[Work]) -> None:
        """Mark the works' keys done, in one call.

        Raises:
            DedupStoreError: the store failed; no mark is known to be written.
        """
        self.store.complete([work.claim for work in works if work.claim is not None])

    def release(self, keys: Sequence[str]) -> None:
        """Drop this member's claims on ``keys`` so another attempt may claim them at once.

        Best effort: a claim that cannot be released expires after the claim TTL.
        """
        if not keys:
            return
        try:
            self.store.release(list(keys))
        except DedupStoreError as exc:
            log.info("could not release %d claims (they expire by themselves): %s", len(keys), exc)
