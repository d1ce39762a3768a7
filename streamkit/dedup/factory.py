"""Open a deduplication store from its URL (or from ``STREAMKIT_DEDUP__*`` settings).

Backends are chosen by URL with :func:`open_store`::

    memory://?max_entries=100000      bounded LRU + TTL, one process
    sqlite:///var/lib/app/dedup.db    one file, several processes on one host
    redis://:password@host:6379/0     shared by every member of a consumer group
    postgresql://user:pw@host/db?table=streamkit_dedup
                                      shared; and exactly once into the same database

Every URL accepts ``ttl=S`` and ``claim_ttl=S`` (seconds), which override the keyword
arguments.

Backends import lazily, so that an optional client library (``redis``, ``psycopg``) is
loaded only when its scheme is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    DedupStore,
    StoreURL,
    check_ttl,
    mask_url,
)
from streamkit.errors import DedupStoreError

if TYPE_CHECKING:
    from streamkit.settings import DedupSettings

__all__ = ["open_store", "open_store_from_settings", "parse_store_url"]


def parse_store_url(url: str, *, claim_ttl_s: float, ttl_s: float) -> StoreURL:
    """Split a store URL and apply its ``ttl`` / ``claim_ttl`` overrides."""
    try:
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise DedupStoreError(
            f"dedup store URL {mask_url(url)!r} cannot be parsed: {exc} "
            "(hint: use memory://, sqlite:///abs/path.db, redis://host:port/db or "
            "postgresql://user:password@host:port/db)"
        ) from None
    parsed = StoreURL(
        url,
        parts,
        params,
        claim_ttl_s=check_ttl("claim_ttl_s", claim_ttl_s),
        ttl_s=check_ttl("ttl_s", ttl_s),
    )
    parsed.ttl_s = parsed.pop_float("ttl", parsed.ttl_s)
    parsed.claim_ttl_s = parsed.pop_float("claim_ttl", parsed.claim_ttl_s)
    return parsed


def open_store(
    url: str,
    *,
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
    ttl_s: float = DEFAULT_TTL_S,
    owner: str | None = None,
) -> DedupStore:
    """Open the deduplication store a URL names.

    Args:
        url: ``memory://?max_entries=N``, ``sqlite:///abs/path.db``,
            ``redis://[:password@]host:port/db``, ``rediss://...`` or
            ``postgresql://user:password@host:port/db?table=...``; each accepts
            ``ttl=S`` and ``claim_ttl=S`` query parameters, which win over the keywords.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is remembered.
        owner: id of this instance's claims; a fresh uuid4 hex when None.

    Raises:
        DedupStoreError: unknown scheme, bad parameter, unreachable backend, or a
            missing optional dependency; the message never shows a password.
    """
    parsed = parse_store_url(url, claim_ttl_s=claim_ttl_s, ttl_s=ttl_s)
    scheme = parsed.parts.scheme.lower()
    # Backends import lazily: redis is optional and sqlite/memory need not load it.
    if scheme == "memory":
        from streamkit.dedup.memory import MemoryDedupStore

        return MemoryDedupStore.from_url(parsed, owner=owner)
    if scheme == "sqlite":
        from streamkit.dedup.sqlite import SqliteDedupStore

        return SqliteDedupStore.from_url(parsed, owner=owner)
    if scheme in ("redis", "rediss"):
        from streamkit.dedup.redis import RedisDedupStore

        return RedisDedupStore.from_url(parsed, owner=owner)
    if scheme in ("postgresql", "postgres"):
        from streamkit.dedup.postgresql import PostgresDedupStore

        return PostgresDedupStore.from_url(parsed, owner=owner)
    raise parsed.error(
        f"unknown scheme {scheme!r}",
        "use memory://, sqlite:///abs/path.db, redis://host:port/db, rediss:// or "
        "postgresql://user:password@host:port/db",
    )


def open_store_from_settings(
    settings: DedupSettings, *, owner: str | None = None
) -> DedupStore | None:
    """Open the store ``STREAMKIT_DEDUP__*`` settings describe; None when no URL is set."""
    if settings.url is None:
        return None
    return open_store(
        settings.url, claim_ttl_s=settings.claim_ttl_s, ttl_s=settings.ttl_s, owner=owner
    )
