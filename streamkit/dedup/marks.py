"""The compact layout every built-in store shares: 16-byte ids and retention buckets.

**Ids.** A dedup key becomes a 128-bit id (an ``int``; 16 bytes in Redis and SQLite):

- ``"<namespace>:<uuid>"`` (what :func:`~streamkit.dedup.scoped_key` makes of an event id)
  and a bare ``"<uuid>"``: the uuid's 128 bits XOR a mask drawn from the namespace with
  the store's hash key. Within one namespace (one consumer group) this is a bijection:
  two different event ids never share an id. Only the canonical lowercase text of a
  uuid takes this path, so every distinct key string keeps a distinct meaning.
- anything else (keys of a custom ``dedup_key_fn``): BLAKE2b of the whole key, keyed
  with the store's hash key, 16 bytes.

The hash key is 16 random bytes kept in the store itself (so every process of a group
agrees, and a producer of events cannot aim at a collision without it). Collision
bound: two distinct keys outside the bijective case share an id with probability
2**-128; with ``n`` ids remembered at once the chance of any collision is at most
``n * (n - 1) / 2**129``, e.g. below 6e-20 for 6e9 ids (10,000 events/s for 7 days).
A collision would make one event look like a duplicate of another.

**Retention buckets.** Completed marks are kept in time buckets of ``ttl / 8``
(:data:`BUCKETS_PER_TTL`); a whole bucket is dropped ``ttl`` after it closes, so a mark
is remembered for at least ``ttl`` and at most ``ttl * 9 / 8`` after its completion.
Buckets are per retention series (their ``ttl``), so stores of different ``ttl`` can
share a backend; a claim checks the live buckets of every series.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BUCKETS_PER_TTL", "HASH_KEY_BYTES", "ID_BYTES", "IdCodec", "Retention"]

ID_BYTES = 16
HASH_KEY_BYTES = 16
BUCKETS_PER_TTL = 8
_MASK_CACHE = 4096  # namespaces whose mask is kept; a service has one or a few groups
_MEMO = 16_384  # ids kept from claim to complete (a few batches in flight)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class IdCodec:
    """Turns dedup keys into 128-bit ids under one store's hash key (see the module doc).

    Args:
        hash_key: the store's 16-byte secret.
    """

    __slots__ = ("_hash_key", "_masks", "_memo")

    def __init__(self, hash_key: bytes) -> None:
        if len(hash_key) != HASH_KEY_BYTES:
            raise ValueError(f"hash key must be {HASH_KEY_BYTES} bytes, got {len(hash_key)}")
        self._hash_key = hash_key
        self._masks: dict[str, int] = {}
        # Ids of claimed keys, so that completing or releasing them computes nothing.
        self._memo: dict[str, int] = {}

    def __repr__(self) -> str:
        return "IdCodec(hash_key=<hidden>)"

    def _digest(self, data: bytes) -> int:
        digest = hashlib.blake2b(data, key=self._hash_key, digest_size=ID_BYTES).digest()
        return int.from_bytes(digest, "big")

    def _mask(self, namespace: str) -> int:
        mask = self._masks.get(namespace)
        if mask is None:
            if len(self._masks) >= _MASK_CACHE:
                self._masks.clear()
            # Domain-separated from whole-key hashes ("k") below.
            data = b"n" + namespace.encode("utf-8", "surrogatepass")
            mask = self._masks[namespace] = self._digest(data)
        return mask

    def id_of(self, key: str) -> int:
        """The 128-bit id of one key."""
        head, sep, tail = key.rpartition(":")
        if len(tail) == 36 and _UUID.fullmatch(tail):
            # "\0" marks a bare uuid, so that "<uuid>" and ":<uuid>" stay apart.
            namespace = head if sep else "\0"
            return int(tail.replace("-", ""), 16) ^ self._mask(namespace)
        return self._digest(b"k" + key.encode("utf-8", "surrogatepass"))

    def ids(self, keys: Sequence[str], *, remember: bool = False) -> list[int]:
        """The ids of keys, in order.

        ``remember=True`` (a claim) keeps them for the next call about the same keys (its
        complete or release), which takes them back instead of computing them again.
        """
        memo = self._memo
        if remember:
            if len(memo) > _MEMO:
                memo.clear()
            id_of = self.id_of
            ids = [id_of(key) for key in keys]
            memo.update(zip(keys, ids, strict=True))
            return ids
        pop, id_of = memo.pop, self.id_of
        return [pop(key, 0) or id_of(key) for key in keys]

    def id_bytes(self, keys: Sequence[str], *, remember: bool = False) -> list[bytes]:
        """:meth:`ids` as 16 big-endian bytes each."""
        return [id_.to_bytes(ID_BYTES, "big") for id_ in self.ids(keys, remember=remember)]


@dataclass(frozen=True)
class Retention:
    """The retention series of a ttl: bucket width and bucket expiry, in milliseconds."""

    ttl_ms: int
    width_ms: int

    @classmethod
    def of(cls, ttl_s: float) -> Retention:
        """The series of a ttl in seconds (buckets of ``ttl / BUCKETS_PER_TTL``)."""
        ttl_ms = max(1, round(ttl_s * 1000))
        return cls(ttl_ms, max(1, math.ceil(ttl_ms / BUCKETS_PER_TTL)))

    def start_ms(self, now_ms: float) -> int:
        """Start of the bucket that marks completed at ``now_ms`` go into."""
        return int(now_ms // self.width_ms) * self.width_ms

    def expires_ms(self, start_ms: int) -> int:
        """When the bucket starting at ``start_ms`` is forgotten: closed, plus the ttl."""
        return start_ms + self.width_ms + self.ttl_ms
