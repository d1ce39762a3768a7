"""Deduplication store in Redis, shared by every member of a consumer group.

``redis://[[user]:password@]host:port/db`` (or ``rediss://`` for TLS) with optional
query parameters ``ttl``, ``claim_ttl``, ``prefix`` (key prefix, default
``streamkit:dedup:``) and any connection option redis-py's ``from_url`` understands
(``socket_timeout``, ``ssl_ca_certs``, ...). Give each consumer group its own prefix
(``?prefix=orders-service:``) when groups share a Redis database and do not use
:func:`~streamkit.dedup.scoped_key`, or one group would skip the events another has
completed.

Layout (all under ``<prefix>#v2:``; ids are 16 bytes, see :mod:`streamkit.dedup.marks`):

- ``c:<id>``: a claim, a string holding the owner, expiring after ``claim_ttl_s``.
- ``d:<ttl>:<start>:<n>``: completed marks of one retention bucket, spread over small
  hashes (field: the id, value empty) that Redis stores as listpacks, about 20 bytes per
  id plus a share of the key. A bucket grows by linear hashing: when its ids exceed
  ``load`` per hash on average, one hash is split in two, so every hash stays below
  ``hash-max-listpack-entries`` (read at start, 128 if ``CONFIG`` is not allowed). Every
  key of a bucket expires at once, ``ttl`` after the bucket closes.
- ``m:<ttl>:<start>``: a bucket's level, split pointer and id count; ``idx``: the live
  buckets by expiry (what a claim checks, and what ``stats()`` sums without a scan);
  ``meta``: the hash key of the ids and the end of the legacy window.

Claim, complete, release and stats are Lua scripts that handle a whole batch atomically
in one round trip; a claim checks the done marks of every live bucket and takes the
claim in the same script. The server's clock decides expiry, so consumers' clocks may
disagree. A single Redis node (or a primary with replicas) is supported, not Redis
Cluster (the scripts build key names).

Marks of earlier streamkit versions (one string per key, ``<prefix><key>`` = ``d``) are
honoured: when a prefix is first opened with this layout, a bounded ``SCAN`` looks for
such keys, and if any exist, claims also read them for one retention period (they
expire by themselves). Run every member on the new version within that period; a
member still on the old version does not see the new marks.

The ``redis`` package is an optional dependency (``pip install 'streamkit[redis]'``),
imported when a store is opened.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlunsplit

from streamkit._extras import require
from streamkit.client.config import MASK
from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStats,
    StoreBase,
    StoreURL,
    mask_url,
)
from streamkit.dedup.marks import HASH_KEY_BYTES, IdCodec
from streamkit.errors import DedupStoreError

if TYPE_CHECKING:
    import redis

__all__ = ["DEFAULT_PREFIX", "LAYOUT", "RedisDedupStore"]

DEFAULT_PREFIX = "streamkit:dedup:"
LAYOUT = "#v2:"  # after the prefix: every key of the compact layout starts so
_DEFAULT_LISTPACK_ENTRIES = 128  # Redis's default hash-max-listpack-entries
_MAX_LOAD = 64  # average ids per hash before a split (longer listpacks: slower lookups)
_LEGACY_SCAN_S = 5.0  # bound on the one-time search for legacy keys
_LEGACY_MARGIN_MS = 60_000  # client clocks may run behind the server's
_STATS_SAMPLES = 8  # hashes per bucket whose MEMORY USAGE estimates the bytes

# Shared by every script. ARGV[1] is the key prefix (with LAYOUT).
_PRELUDE = """
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The shard hash of an id: its first and last 4 bytes mixed, uniform even for
-- time-ordered uuids (v1, v7) whose first bytes barely change.
local function hash(id)
  local a = struct.unpack('>I4', id)
  local b = struct.unpack('>I4', id, 13)
  return bit.bxor(a, b) % 4294967296
end
-- Linear hashing: the hash of a bucket at level L with split pointer p.
local function shard(h, L, p)
  local s = h % 2 ^ L
  if s < p then s = h % 2 ^ (L + 1) end
  return s
end
"""
# ARGV: prefix, owner, claim ttl ms, legacy (0/1), the n ids, then (legacy) their n old
# key names. Returns per id 0 claimed, 1 duplicate, 2 in progress. The done marks are
# checked first; a failed SET NX (a claim exists, ours included) claims nothing, so an
# id repeated in one batch is IN_PROGRESS after its first CLAIMED.
_CLAIM_LUA = (
    _PRELUDE
    + """
local owner, claim_ms, legacy = ARGV[2], ARGV[3], ARGV[4] == '1'
local n = (#ARGV - 4) / (legacy and 2 or 1)
local now = now_ms()
local names = redis.call('ZRANGEBYSCORE', P .. 'idx', '(' .. now, '+inf')
local live = {}
for i = #names, 1, -1 do  -- newest first: a duplicate is most often recent
  local m = redis.call('HMGET', P .. 'm:' .. names[i], 'L', 'p')
  if m[1] then
    live[#live + 1] = {P .. 'd:' .. names[i] .. ':', tonumber(m[1]), tonumber(m[2])}
  end
end
local out = {}
for i = 1, n do
  local id = ARGV[4 + i]
  local h = hash(id)
  local done = false
  for _, b in ipairs(live) do
    if redis.call('HEXISTS', b[1] .. shard(h, b[2], b[3]), id) == 1 then
      done = true
      break
    end
  end
  local old = (not done) and legacy and redis.call('GET', ARGV[4 + n + i])
  if done or old == 'd' then
    out[i] = 1
  elseif old then
    out[i] = 2  -- an old-version member holds it
  elseif redis.call('SET', P .. 'c:' .. id, owner, 'NX', 'PX', claim_ms) then
    out[i] = 0
  else
    out[i] = 2
  end
end
return out
"""
)
# ARGV: prefix, owner, ttl ms, bucket width ms, load, the ids. Marks an id done unless
# another owner holds a live claim (expired claims have vanished from Redis by then).
_COMPLETE_LUA = (
    _PRELUDE
    + """
local owner, ttl, width, load = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local start = math.floor(now / width) * width
local name = ttl .. ':' .. start
local expires = start + width + ttl
local meta = P .. 'm:' .. name
local data = P .. 'd:' .. name .. ':'
local m = redis.call('HMGET', meta, 'L', 'p', 'n')
local L, p, count = tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0
if not m[1] then  -- a new bucket
  redis.call('ZREMRANGEBYSCORE', P .. 'idx', '-inf', now)
  redis.call('ZADD', P .. 'idx', expires, name)
end
local function split()
  -- Move the ids of hash p whose next hash bit is set to the new hash p + 2^L.
  local src, dst = data .. p, data .. (p + 2 ^ L)
  local moved, fields = {}, {}
  for _, id in ipairs(redis.call('HKEYS', src)) do
    if hash(id) % 2 ^ (L + 1) ~= p then
      moved[#moved + 1] = id
      fields[#fields + 1] = id
      fields[#fields + 1] = ''
    end
  end
  if #moved > 0 then
    redis.call('HDEL', src, unpack(moved))
    redis.call('HSET', dst, unpack(fields))
    redis.call('PEXPIREAT', dst, expires)
  end
  p = p + 1
  if p == 2 ^ L then
    L, p = L + 1, 0
  end
end
for i = 6, #ARGV do
  local id = ARGV[i]
  local claim = P .. 'c:' .. id
  local holder = redis.call('GET', claim)
  if not holder or holder == owner then
    if holder then
      redis.call('DEL', claim)
    end
    local key = data .. shard(hash(id), L, p)
    if redis.call('HSET', key, id, '') == 1 then
      count = count + 1
      if redis.call('HLEN', key) == 1 then
        redis.call('PEXPIREAT', key, expires)
      end
      while count > load * (2 ^ L + p) do
        split()
      end
    end
  end
end
redis.call('HSET', meta, 'L', L, 'p', p, 'n', count)
redis.call('PEXPIREAT', meta, expires)
return count
"""
)
# ARGV: prefix, owner, the ids. Deletes only this owner's claims.
_RELEASE_LUA = """
local P, owner = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local claim = P .. 'c:' .. ARGV[i]
  if redis.call('GET', claim) == owner then
    redis.call('DEL', claim)
  end
end
return #ARGV - 2
"""
# ARGV: prefix, samples per bucket. Returns ids, hashes, and the keys to size:
# every bucket's meta key and up to `samples` of its hashes, spread over it.
_STATS_LUA = (
    _PRELUDE
    + """
local samples = tonumber(ARGV[2])
local names = redis.call('ZRANGEBYSCORE', P .. 'idx', '(' .. now_ms(), '+inf')
local ids, hashes, keys = 0, 0, {P .. 'idx', P .. 'meta'}
for _, name in ipairs(names) do
  local m = redis.call('HMGET', P .. 'm:' .. name, 'L', 'p', 'n')
  if m[1] then
    local size = 2 ^ tonumber(m[1]) + tonumber(m[2])
    ids, hashes = ids + tonumber(m[3]), hashes + size
    keys[#keys + 1] = P .. 'm:' .. name
    local step = math.max(1, math.floor(size / samples))
    for s = 0, size - 1, step do
      keys[#keys + 1] = P .. 'd:' .. name .. ':' .. s
    end
  end
end
return {ids, hashes, #names, keys}
"""
)
_RESULTS = (ClaimResult.CLAIMED, ClaimResult.DUPLICATE, ClaimResult.IN_PROGRESS)


@dataclass(frozen=True)
class _Layout:
    """What a store learns from Redis once: the id codec, the split load, legacy window."""

    codec: IdCodec
    load: int
    legacy_until_ms: int


def import_redis() -> ModuleType:
    """The redis-py module, or a :class:`MissingExtraError` naming the extra to install."""
    return require("redis", "redis")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _hint(exc: Exception) -> str:
    text = str(exc).upper()
    name = type(exc).__name__
    if "AUTH" in name.upper() or "NOAUTH" in text or "WRONGPASS" in text:
        return "check the user and password in the redis URL (STREAMKIT_DEDUP__URL)"
    if "CERTIFICATE" in text or "SSL" in text:
        return (
            "the TLS handshake failed; trust the server's CA with "
            "rediss://host:port/db?ssl_ca_certs=/path/ca.pem"
        )
    if name in ("ConnectionError", "TimeoutError"):
        return (
            "check that redis is running and reachable at this URL (STREAMKIT_DEDUP__URL), "
            "and rediss:// for a TLS port"
        )
    if "CROSSSLOT" in text or "MOVED" in text:
        return "Redis Cluster is not supported; point the URL at a single node or primary"
    if "READONLY" in text:
        return "the URL names a read-only replica; point it at the primary"
    if "OOM" in text:
        return "redis is out of memory; raise maxmemory or lower the dedup ttl"
    return "check the redis server and its logs"


class RedisDedupStore(StoreBase):
    """Deduplication store in Redis (one round trip per batch).

    Args:
        client: a ``redis.Redis`` client; :func:`~streamkit.dedup.open_store` makes one.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is at least remembered.
        owner: id of this instance's claims; a fresh uuid4 hex when None.
        prefix: prepended to every Redis key of the store (then ``#v2:``).
        url: the URL to show in repr and errors; it is masked here, and derived from
            the client (without credentials) when None.
        close_client: whether :meth:`close` closes ``client``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
        ttl_s: float = DEFAULT_TTL_S,
        owner: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        url: str | None = None,
        close_client: bool = False,
    ) -> None:
        super().__init__(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        self._redis = import_redis()
        self._client = client
        self._close_client = close_client
        self.prefix = prefix
        if url is None:
            kwargs = client.connection_pool.connection_kwargs
            url = (
                f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
            )
        self._display = mask_url(url)
        self._password = client.connection_pool.connection_kwargs.get("password")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise DedupStoreError(
                f"redis dedup store {self._display!r}: the client decodes responses, but "
                "ids are binary (hint: pass a client made without decode_responses=True)"
            )
        self._base = prefix + LAYOUT
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._stats_script = client.register_script(_STATS_LUA)
        # Learnt from Redis on first use, so that making a store needs no round trip.
        self._layout_lock = threading.Lock()
        self._layout_cache: _Layout | None = None

    @classmethod
    def from_url(cls, url: StoreURL, *, owner: str | None = None) -> RedisDedupStore:
        """Connect to a parsed ``redis://`` / ``rediss://`` URL and check it answers PING."""
        module = import_redis()
        prefix = url.params.pop("prefix", DEFAULT_PREFIX)
        parts = url.parts
        # Our own parameters are gone from url.params; the rest is redis-py's business.
        client_url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(url.params), parts.fragment)
        )
        try:
            client = module.Redis.from_url(
                client_url, socket_timeout=5.0, socket_connect_timeout=5.0
            )
        except (ValueError, TypeError) as exc:
            # Messages name the option, never its value, but the chain may: cut it.
            raise url.error(f"redis-py refused it: {exc}", "check the URL's options") from None
        store = cls(
            client,
            claim_ttl_s=url.claim_ttl_s,
            ttl_s=url.ttl_s,
            owner=owner,
            prefix=prefix,
            url=url.raw,
            close_client=True,
        )
        try:
            with store._translated("connect (PING)"):
                client.ping()
        except TypeError as exc:
            # redis-py only builds the connection now: an unknown URL option fails here.
            store.close()
            raise url.error(f"redis-py refused it: {exc}", "check the URL's options") from None
        except DedupStoreError:
            store.close()
            raise
        return store

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._redis.RedisError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            leaked = bool(self._password) and str(self._password) in detail
            if leaked:
                detail = detail.replace(str(self._password), MASK)
            error = DedupStoreError(
                f"redis dedup store {self._display!r}: {operation} failed: {detail} "
                f"(hint: {_hint(exc)})"
            )
            # Never chain an upstream message that carries the password.
            raise error from (None if leaked else exc)

    def _layout(self) -> _Layout:
        layout = self._layout_cache
        if layout is None:
            with self._layout_lock:
                if self._layout_cache is None:
                    self._layout_cache = self._load_layout()
                layout = self._layout_cache
        return layout

    def _load_layout(self) -> _Layout:
        client, meta = self._client, self._base + "meta"
        client.hsetnx(meta, "hk", os.urandom(HASH_KEY_BYTES))
        hash_key, legacy_until = client.hmget(meta, ["hk", "legacy_until"])
        if legacy_until is None:
            # The first store of the new layout under this prefix decides, once.
            seconds, micros = client.time()
            server_ms = seconds * 1000 + micros // 1000
            window = _ms(self.ttl_s) + _ms(self.claim_ttl_s)
            client.hsetnx(meta, "legacy_until", server_ms + window if self._legacy_keys() else 0)
            legacy_until = client.hget(meta, "legacy_until")
        if not isinstance(hash_key, bytes) or len(hash_key) != HASH_KEY_BYTES:
            raise DedupStoreError(
                f"redis dedup store {self._display!r}: {meta!r} holds no valid hash key "
                "(hint: the key was edited by hand; delete it and every key under "
                f"{self._base!r} to start afresh)"
            )
        return _Layout(IdCodec(hash_key), self._load_factor(), int(legacy_until or 0))

    def _legacy_keys(self) -> bool:
        """Whether strings of the one-key-per-id layout exist under the prefix.

        Bounded in time: a search that cannot finish says yes, so that old marks are
        honoured (at the cost of one more read per claimed id for a retention period).
        """
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        ours = self._base.encode()
        deadline = time.monotonic() + _LEGACY_SCAN_S
        cursor = 0
        while True:
            found: tuple[int, list[Any]] = self._client.scan(
                cursor, match=pattern, count=1000, _type="string"
            )
            cursor, names = found
            if any(not name.startswith(ours) for name in names):
                return True
            if cursor == 0:
                return False
            if time.monotonic() > deadline:
                return True

    def _load_factor(self) -> int:
        """Average ids per hash before a split: a quarter of hash-max-listpack-entries,
        so that the fullest hash (up to twice the average, plus chance) stays a listpack."""
        try:
            config: dict[Any, Any] = self._client.config_get("hash-max-listpack-entries")
            entries = int(next(iter(config.values())))
        except (self._redis.ResponseError, StopIteration, TypeError, ValueError):
            entries = _DEFAULT_LISTPACK_ENTRIES  # CONFIG refused (managed Redis, ACLs)
        return max(1, min(_MAX_LOAD, entries // 4))

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Claim keys atomically (one Lua script); see :class:`DedupStore`."""
        self._check_open()
        if not keys:
            return []
        with self._translated("claim"):
            layout = self._layout()
            legacy = layout.legacy_until_ms > time.time() * 1000 - _LEGACY_MARGIN_MS
            args: list[Any] = [self._base, self._owner, _ms(self.claim_ttl_s), int(legacy)]
            args += layout.codec.id_bytes(keys, remember=True)
            if legacy:
                args += [self.prefix + key for key in keys]
            codes: list[Any] = self._claim(args=args)
        return [_RESULTS[int(code)] for code in codes]

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        self._check_open()
        if keys:
            with self._translated("complete"):
                layout = self._layout()
                retention = self.retention
                args: list[Any] = [self._base, self._owner, retention.ttl_ms, retention.width_ms]
                args.append(layout.load)
                self._complete(args=args + layout.codec.id_bytes(keys))

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        if keys:
            with self._translated("release"):
                ids = self._layout().codec.id_bytes(keys)
                self._release(args=[self._base, self._owner, *ids])

    def stats(self) -> DedupStats:
        """Marks within retention (bucket counts) and their Redis memory, estimated from
        ``MEMORY USAGE`` of each bucket's meta key and a sample of its hashes."""
        self._check_open()
        with self._translated("stats"):
            ids, hashes, buckets, keys = self._stats_script(args=[self._base, _STATS_SAMPLES])
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        data = (self._base + "d:").encode()
        overhead = samples = total = 0
        for key, size in zip(keys, sizes, strict=True):
            if key.startswith(data):  # a sampled hash of marks
                samples, total = samples + 1, total + (size or 0)
            else:  # the index, the meta hash, a bucket's meta key
                overhead += size or 0
        per_hash = total / samples if samples else 0.0
        return self._stats(
            "redis", int(ids), overhead + round(per_hash * int(hashes)), int(buckets)
        )

    def close(self) -> None:
        """Close the client when this store created it; idempotent."""
        if not self._closed:
            super().close()
            if self._close_client:
                with self._translated("close"):
                    self._client.close()

    def __repr__(self) -> str:
        return (
            f"RedisDedupStore(url={self._display!r}, prefix={self.prefix!r}, "
            f"claim_ttl_s={self.claim_ttl_s}, ttl_s={self.ttl_s}, owner={self._owner!r})"
        )
