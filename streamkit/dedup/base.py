"""The deduplication store protocol, claim results, and the parsed store URL.

Stores are opened by URL with :func:`streamkit.dedup.factory.open_store`.

A consumer makes its handler idempotent with three calls per batch of event ids:

1. :meth:`DedupStore.claim` — for each id, :attr:`ClaimResult.CLAIMED` (process it),
   :attr:`ClaimResult.DUPLICATE` (done before: skip it) or
   :attr:`ClaimResult.IN_PROGRESS` (someone holds it: retry later).
2. :meth:`DedupStore.complete` — after the handler succeeded: remember the ids as done
   for ``ttl_s`` seconds (retention).
3. :meth:`DedupStore.release` — after the handler failed: drop the claims so that a
   retry can claim the ids again at once.

Claims expire after ``claim_ttl_s`` seconds, so an event whose consumer crashed between
claim and complete is retried, never lost. Owner rules, common to every backend:

- A claim belongs to the store instance that made it (its ``owner``, a uuid4 hex by
  default). Claims are not re-entrant: claiming a key this owner already holds, or the
  same key twice in one batch, answers ``IN_PROGRESS`` after the first ``CLAIMED``.
- ``release`` drops only claims this owner holds, so a zombie consumer whose claim
  expired and was taken over cannot release the new owner's claim.
- ``complete`` marks a key done unless *another* owner holds a live claim on it (that
  owner is processing the event and will complete or release it itself). A stale owner
  whose expired claim nobody took over still marks the key done: the work did happen,
  and recording it avoids a second effect. Completing a key nobody claimed marks it
  done too (useful to seed a store).

A store is one namespace of ids. Consumer groups that must each process an event
need their own (a Redis ``?prefix=`` or an SQLite file per group); sharing one would
make the second group skip events the first has done.

Backend failures raise :class:`~streamkit.errors.DedupStoreError`, whose message
never contains a password.

The built-in stores keep completed marks compactly (16-byte ids in retention buckets,
see :mod:`streamkit.dedup.marks`) and report what they hold with ``stats()``
(:class:`DedupStats`).
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from streamkit.client.closing import Closing
from streamkit.client.config import MASK, is_secret_key
from streamkit.dedup.marks import Retention
from streamkit.errors import DedupStoreError

__all__ = [
    "DEFAULT_CLAIM_TTL_S",
    "DEFAULT_TTL_S",
    "SCHEMES",
    "ClaimResult",
    "DedupStats",
    "DedupStore",
    "StoreBase",
    "StoreURL",
    "claim_one",
    "complete_one",
    "mask_url",
    "release_one",
    "scoped_key",
]

# Same defaults as streamkit.settings.DedupSettings (checked by a unit test).
DEFAULT_CLAIM_TTL_S = 60.0
DEFAULT_TTL_S = 7 * 24 * 3600.0

SCHEMES = ("memory", "sqlite", "redis", "rediss", "postgresql", "postgres")


class ClaimResult(enum.Enum):
    """What :meth:`DedupStore.claim` answered for one key."""

    CLAIMED = "claimed"
    """This owner holds the key now and must complete or release it."""
    DUPLICATE = "duplicate"
    """The key was completed before (within retention): skip the event."""
    IN_PROGRESS = "in_progress"
    """Another claim on the key is live: do not process now, retry later."""


@dataclass(frozen=True)
class DedupStats:
    """What a store remembers and what that costs (``streamkit dedup stats``).

    Attributes:
        backend: ``memory``, ``sqlite``, ``redis`` or ``postgresql``.
        remembered_ids: completed marks held within retention (all retention series).
        bytes_used: what holding them costs: process memory (memory store, estimated
            from object sizes), the database file's used pages (SQLite; tables of your
            own in the same file count too), Redis memory (estimated from
            ``MEMORY USAGE`` of sampled keys), or the table's size on disk with its
            indexes (PostgreSQL). None when unknown.
        buckets: live retention buckets (see :mod:`streamkit.dedup.marks`); 0 where
            marks expire one by one (PostgreSQL).
        ttl_s: this store's retention.
        bucket_s: this store's bucket width: marks live ``ttl_s`` to ``ttl_s + bucket_s``
            (0: exactly ``ttl_s``, until a purge deletes them).
    """

    backend: str
    remembered_ids: int
    bytes_used: int | None
    buckets: int
    ttl_s: float
    bucket_s: float

    @property
    def bytes_per_id(self) -> float | None:
        """``bytes_used / remembered_ids``; None when either is unknown or zero."""
        if not self.bytes_used or not self.remembered_ids:
            return None
        return self.bytes_used / self.remembered_ids

    def as_dict(self) -> dict[str, object]:
        """The figures as a JSON-ready dict (``bytes_per_id`` included)."""
        return {
            "backend": self.backend,
            "remembered_ids": self.remembered_ids,
            "bytes_used": self.bytes_used,
            "bytes_per_id": None if self.bytes_per_id is None else round(self.bytes_per_id, 1),
            "buckets": self.buckets,
            "ttl_s": self.ttl_s,
            "bucket_s": self.bucket_s,
        }


@runtime_checkable
class DedupStore(Protocol):
    """A store of claimed and completed event ids; every operation takes a batch.

    Implementations are thread-safe. Results of :meth:`claim` are in the order of
    ``keys``. Empty batches are allowed and cost nothing. Each instance claims under
    its own owner id (the built-in stores expose it as ``owner``).
    """

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Try to claim each key for ``claim_ttl_s`` seconds, atomically per key.

        Raises:
            DedupStoreError: the backend failed; no result is known.
        """
        ...

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done for ``ttl_s`` seconds (unless another owner holds a live claim)."""
        ...

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys; other owners' claims and done marks stay."""
        ...

    def close(self) -> None:
        """Release connections; further calls raise :class:`DedupStoreError`."""
        ...


def claim_one(store: DedupStore, key: str) -> ClaimResult:
    """Claim a single key: ``store.claim([key])[0]``."""
    return store.claim([key])[0]


def complete_one(store: DedupStore, key: str) -> None:
    """Complete a single key: ``store.complete([key])``."""
    store.complete([key])


def release_one(store: DedupStore, key: str) -> None:
    """Release a single key: ``store.release([key])``."""
    store.release([key])


def scoped_key(group: str, key: str) -> str:
    """The dedup key a consumer group uses for an event key: ``"<group>:<key>"``.

    :class:`~streamkit.consume.consumer.EventConsumer` claims and completes this key, so two
    groups reading one topic each handle every event once. A handler that records its
    own effects with :func:`~streamkit.dedup.exactly_once` passes the same key, so that
    its mark and the consumer's are one row.
    """
    return f"{group}:{key}"


def check_ttl(name: str, value: float) -> float:
    """Validate a TTL in seconds (positive and finite)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise DedupStoreError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class StoreBase(Closing):
    """Shared plumbing of the built-in stores (package-internal).

    Owner id, validated TTLs and their retention series, closing, use as a context
    manager, and :meth:`stats`.
    """

    def __init__(self, *, claim_ttl_s: float, ttl_s: float, owner: str | None) -> None:
        self.claim_ttl_s = check_ttl("claim_ttl_s", claim_ttl_s)
        self.ttl_s = check_ttl("ttl_s", ttl_s)
        self.retention = Retention.of(self.ttl_s)
        if owner is not None and not owner:
            raise DedupStoreError("owner must be a non-empty string")
        self._owner = owner or uuid.uuid4().hex
        self._closed = False

    @property
    def owner(self) -> str:
        """The id under which this instance claims keys."""
        return self._owner

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DedupStoreError(f"{self!r} is closed (hint: open a new store with open_store())")

    def close(self) -> None:
        """Mark the store closed; subclasses release their resources too."""
        self._closed = True

    def stats(self) -> DedupStats:
        """Ids remembered and bytes used; cheap (no scan over the marks).

        Raises:
            DedupStoreError: the backend failed.
        """
        raise NotImplementedError

    def _stats(self, backend: str, ids: int, bytes_used: int | None, buckets: int) -> DedupStats:
        return DedupStats(
            backend=backend,
            remembered_ids=ids,
            bytes_used=bytes_used,
            buckets=buckets,
            ttl_s=self.ttl_s,
            bucket_s=self.retention.width_ms / 1000,
        )


def mask_url(url: str) -> str:
    """The URL with its password (and any secret-looking query value) masked."""
    try:
        parts = urlsplit(url)
        # Edit the text in place: urlunsplit would turn sqlite:///x into sqlite:/x.
        head, sep, query = url.partition("?")
        if parts.password is not None:
            user = parts.netloc.rpartition("@")[0].partition(":")[0]
            hostport = parts.netloc.rpartition("@")[2]
            head = head.replace(parts.netloc, f"{user}:{MASK}@{hostport}", 1)
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(is_secret_key(name) for name, _ in pairs):
                masked = [(k, MASK if is_secret_key(k) else v) for k, v in pairs]
                query = urlencode(masked, safe="*/:")
        return head + sep + query
    except ValueError:
        return "<unparseable URL>"


@dataclass
class StoreURL:
    """A parsed store URL; backends pop the query parameters they understand."""

    raw: str
    parts: SplitResult
    params: dict[str, str]
    claim_ttl_s: float
    ttl_s: float
    masked: str = field(init=False)

    def __post_init__(self) -> None:
        self.masked = mask_url(self.raw)

    def error(self, message: str, hint: str) -> DedupStoreError:
        """A :class:`DedupStoreError` about this URL (masked) with a hint."""
        return DedupStoreError(f"dedup store URL {self.masked!r}: {message} (hint: {hint})")

    def pop_float(self, name: str, default: float) -> float:
        """Pop a positive float query parameter."""
        raw = self.params.pop(name, None)
        if raw is None:
            return default
        try:
            return check_ttl(name, float(raw))
        except (ValueError, DedupStoreError):
            raise self.error(
                f"query parameter {name}={raw!r} is not a positive number",
                f"write {name} in seconds, e.g. {name}=60",
            ) from None

    def pop_int(self, name: str, default: int) -> int:
        """Pop a positive integer query parameter."""
        raw = self.params.pop(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise self.error(
                f"query parameter {name}={raw!r} is not a positive integer",
                f"e.g. {name}=100000",
            )
        return value

    def reject_unknown(self, known: str) -> None:
        """Fail on query parameters no one popped, naming the ones this backend knows."""
        if self.params:
            names = ", ".join(sorted(self.params))
            raise self.error(f"unknown query parameter(s): {names}", f"known here: {known}")
