"""``exactly_once(conn, key)``: the inbox for the connection you write with.

One name for both databases streamkit supports: an ``sqlite3.Connection`` goes to
:func:`streamkit.dedup.sqlite.exactly_once`; anything else (a psycopg ``Connection`` or
``AsyncConnection``) to :class:`streamkit.dedup.postgresql.exactly_once`.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from streamkit.dedup import postgresql

__all__ = ["exactly_once"]


@overload
def exactly_once(
    conn: sqlite3.Connection, key: str, **options: Any
) -> AbstractContextManager[sqlite3.Connection | None]: ...


@overload
def exactly_once(conn: Any, key: str, **options: Any) -> postgresql.exactly_once: ...


def exactly_once(conn: Any, key: str, **options: Any) -> Any:
    """Run a block's writes and ``key``'s dedup mark in one transaction of ``conn``.

    The block gets None, and writes nothing, when ``key`` was done within retention.
    ``options`` are the keywords of the database's own function (``ttl_s``; ``table``
    for PostgreSQL; ``clock`` for SQLite).
    """
    if isinstance(conn, sqlite3.Connection):
        from streamkit.dedup import sqlite

        return sqlite.exactly_once(conn, key, **options)
    from streamkit.dedup import postgresql

    return postgresql.exactly_once(conn, key, **options)
