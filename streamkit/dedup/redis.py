"""Deduplication store in Redis, shared by every member of a consumer group.

``redis://[[user]:password@]host:port/db`` (or ``rediss://`` for TLS) with optional
query parameters ``ttl``, ``claim_ttl``, ``prefix`` (key prefix, default
``streamkit:dedup:``) and any connection option redis-py's ``from_url`` understands
(``socket_timeout``, ``ssl_ca_certs``, ...). Give each consumer group its own prefix
(``?prefix=orders-service:``) when groups share a Redis database, or one group would
skip the events another has completed.

Each dedup key is one Redis string with a server-side expiry: ``c:<owner>`` while
claimed (expiring after ``claim_ttl_s``), ``d`` once done (expiring after ``ttl_s``).
Claim, complete and release are Lua scripts that handle a whole batch atomically in
one round trip; the server's clock decides expiry, so consumers' clocks may disagree.
A single Redis node (or a primary with replicas) is supported, not Redis Cluster.

The ``redis`` package is an optional dependency (``pip install 'streamkit[redis]'``),
imported when a store is opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlunsplit

from streamkit._extras import require
from streamkit.client.config import MASK
from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    StoreBase,
    StoreURL,
    mask_url,
)
from streamkit.errors import DedupStoreError

if TYPE_CHECKING:
    import redis

__all__ = ["DEFAULT_PREFIX", "RedisDedupStore"]

DEFAULT_PREFIX = "streamkit:dedup:"

# ARGV: owner, claim ttl in ms. Returns per key 0 claimed, 1 duplicate, 2 in progress.
# A failed SET NX (a claim exists, ours included, or the key is done) claims nothing,
# so a key repeated in one batch is IN_PROGRESS after its first CLAIMED.
_CLAIM_LUA = """
local claim = 'c:' .. ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, claim, 'NX', 'PX', ARGV[2]) then
    out[i] = 0
  elseif redis.call('GET', key) == 'd' then
    out[i] = 1
  else
    out[i] = 2
  end
end
return out
"""
# ARGV: owner, retention in ms. Marks done unless another owner holds a live claim
# (expired claims have vanished from Redis by then).
_COMPLETE_LUA = """
local claim = 'c:' .. ARGV[1]
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value or value == 'd' or value == claim then
    redis.call('SET', key, 'd', 'PX', ARGV[2])
  end
end
return #KEYS
"""
# ARGV: owner. Deletes only this owner's claims.
_RELEASE_LUA = """
local claim = 'c:' .. ARGV[1]
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == claim then
    redis.call('DEL', key)
  end
end
return #KEYS
"""
_RESULTS = (ClaimResult.CLAIMED, ClaimResult.DUPLICATE, ClaimResult.IN_PROGRESS)


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
        ttl_s: seconds a completed key is remembered.
        owner: id of this instance's claims; a fresh uuid4 hex when None.
        prefix: prepended to every event id to make the Redis key.
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
        self._claim = client.register_script(_CLAIM_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._release = client.register_script(_RELEASE_LUA)

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

    def _keys(self, keys: Sequence[str]) -> list[str]:
        return [self.prefix + key for key in keys]

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Claim keys atomically (one Lua script); see :class:`DedupStore`."""
        self._check_open()
        if not keys:
            return []
        with self._translated("claim"):
            codes: list[Any] = self._claim(
                keys=self._keys(keys), args=[self._owner, _ms(self.claim_ttl_s)]
            )
        return [_RESULTS[int(code)] for code in codes]

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        self._check_open()
        if keys:
            with self._translated("complete"):
                self._complete(keys=self._keys(keys), args=[self._owner, _ms(self.ttl_s)])

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        if keys:
            with self._translated("release"):
                self._release(keys=self._keys(keys), args=[self._owner])

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
