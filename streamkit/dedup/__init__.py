"""Deduplication stores that make consumers idempotent.

See :mod:`streamkit.dedup.base` for the claim → complete / release protocol and
:func:`~streamkit.dedup.factory.open_store` for the URL schemes (``memory://``, ``sqlite:///``, ``redis://``,
``postgresql://``). The redis and PostgreSQL backends import their optional client
packages only when opened.
"""

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStore,
    claim_one,
    complete_one,
    mask_url,
    release_one,
    scoped_key,
)
from streamkit.dedup.factory import open_store, open_store_from_settings
from streamkit.dedup.inbox import exactly_once
from streamkit.dedup.memory import MemoryDedupStore
from streamkit.dedup.postgresql import PostgresDedupStore, mark_once
from streamkit.dedup.redis import RedisDedupStore
from streamkit.dedup.sqlite import SqliteDedupStore

__all__ = [
    "DEFAULT_CLAIM_TTL_S",
    "DEFAULT_TTL_S",
    "ClaimResult",
    "DedupStore",
    "MemoryDedupStore",
    "PostgresDedupStore",
    "RedisDedupStore",
    "SqliteDedupStore",
    "claim_one",
    "complete_one",
    "exactly_once",
    "mark_once",
    "mask_url",
    "open_store",
    "open_store_from_settings",
    "release_one",
    "scoped_key",
]
