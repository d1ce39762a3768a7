"""Deduplication store in one SQLite file (``sqlite:///relative.db``, ``sqlite:////abs/path.db``).

Durable and embedded; safe for several processes on one host sharing the file (not
for a network file system, where SQLite's locks are unreliable). The database runs in
WAL mode, so readers never block the writer, and every operation is one
``BEGIN IMMEDIATE`` transaction: it takes the database write lock up front, which
makes read-check-write (a claim) atomic across processes and lets a waiting process
queue on ``busy_timeout`` instead of failing with ``database is locked`` half-way.
Expired rows are treated as absent when read and deleted in bounded batches during
claims, at most every ``purge_interval_s``.

Exactly once into the same database
-----------------------------------

A dedup store alone is at least once for the handler's effects: a consumer killed
after the effect but before :meth:`~SqliteDedupStore.complete` has the event handled
again once its claim expires. When the effect is a write to SQLite, close that gap: put
the handler's tables in the dedup file and let :meth:`SqliteDedupStore.transaction` (or
:func:`exactly_once` on your own connection) commit the effect and the "done" mark in one
transaction. A crash before the commit leaves neither; a redelivery after it is skipped.
Use the key the consumer claims, :func:`~streamkit.dedup.scoped_key` of its group and
the event id, so that the mark is the consumer's own and a redelivery is skipped before
the handler runs::

    store = SqliteDedupStore("/var/lib/orders/orders.db")

    def handle(event: Event) -> None:
        with store.transaction(scoped_key(GROUP, event.id)) as conn:
            if conn is None:
                return  # done before: skip
            conn.execute("INSERT INTO orders VALUES (?, ?)", (event.id, event.payload["total"]))
        # committed here together with the dedup mark; an exception rolls back both

    EventConsumer(["orders"], handle, dedup=store).run()

With a Redis store shared by a consumer group, run :func:`exactly_once` on the
database's connection with the same key: Redis skips duplicates across the group, and
the database's own mark stops the rare second effect after a crash.

Inside the block, do not commit or roll back, and do not call other methods of the
store. The block holds the database write lock, so keep it short. It checks only
completed marks, not claims: the transaction itself makes check and mark atomic.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    StoreBase,
    StoreURL,
    check_ttl,
)
from streamkit.errors import DedupStoreError

__all__ = ["TABLE", "SqliteDedupStore", "exactly_once"]

TABLE = "streamkit_dedup"  # spelled out in the SQL below (no string-built SQL)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS streamkit_dedup ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " owner TEXT,"  # the claim holder; NULL once done
    " done INTEGER NOT NULL,"  # 0 claimed, 1 completed
    " expires_at REAL NOT NULL"  # unix seconds: claim expiry or end of retention
    ") WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS streamkit_dedup_expires_at ON streamkit_dedup (expires_at)",
)
_UPSERT_CLAIM = (
    "INSERT INTO streamkit_dedup (key, owner, done, expires_at) VALUES (?, ?, 0, ?) "
    "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, done = 0, "
    "expires_at = excluded.expires_at"
)
# Done unless another owner holds a live claim (see streamkit.dedup.base).
_UPSERT_DONE = (
    "INSERT INTO streamkit_dedup (key, owner, done, expires_at) "
    "VALUES (:key, NULL, 1, :expires_at) "
    "ON CONFLICT (key) DO UPDATE SET owner = NULL, done = 1, expires_at = excluded.expires_at "
    "WHERE NOT (streamkit_dedup.done = 0 AND streamkit_dedup.owner <> :owner "
    "AND streamkit_dedup.expires_at > :now)"
)
_MARK_DONE = (
    "INSERT INTO streamkit_dedup (key, owner, done, expires_at) VALUES (?, NULL, 1, ?) "
    "ON CONFLICT (key) DO UPDATE SET owner = NULL, done = 1, expires_at = excluded.expires_at"
)
_RELEASE = "DELETE FROM streamkit_dedup WHERE key = ? AND done = 0 AND owner = ?"
_PURGE = (
    "DELETE FROM streamkit_dedup WHERE key IN "
    "(SELECT key FROM streamkit_dedup WHERE expires_at <= ? LIMIT ?)"
)
_SELECT_LIVE = (
    "SELECT key, done FROM streamkit_dedup "
    "WHERE key IN (SELECT value FROM json_each(?)) AND expires_at > ?"
)
_SELECT_DONE = "SELECT expires_at FROM streamkit_dedup WHERE key = ? AND done = 1"

Synchronous = Literal["NORMAL", "FULL", "EXTRA"]


def _hint(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (
            "another connection held the write lock longer than busy_timeout; raise "
            "busy_timeout (sqlite:///path.db?busy_timeout=S) or shorten transactions"
        )
    if "unable to open" in text or "readonly" in text:
        return "check that the directory exists and this process may write the file"
    if "malformed" in text or "not a database" in text:
        return "the file is not a healthy SQLite database; point the URL at a new file"
    return "check the database file and free disk space"


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn sqlite3 errors into DedupStoreError, saying what failed and a hint."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DedupStoreError(f"{what} failed: {exc} (hint: {_hint(exc)})") from exc


def _rollback(conn: sqlite3.Connection) -> None:
    # Best effort: the error being handled matters more than a failed rollback.
    with suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.rollback()


def _ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


@contextmanager
def _immediate(conn: sqlite3.Connection, what: str) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
    if conn.in_transaction:
        raise DedupStoreError(
            f"{what}: the connection is already inside a transaction "
            "(hint: commit or roll back first; do not call the store inside transaction())"
        )
    with _translated(what):
        conn.execute("BEGIN IMMEDIATE")
    try:
        with _translated(what):
            yield conn
            conn.commit()
    except BaseException:
        _rollback(conn)
        raise


@contextmanager
def exactly_once(
    conn: sqlite3.Connection,
    key: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Callable[[], float] = time.time,
) -> Iterator[sqlite3.Connection | None]:
    """Run a block's writes and the dedup mark of ``key`` in one SQLite transaction.

    Yields None (and writes nothing) when ``key`` was completed within retention;
    otherwise yields ``conn`` inside a ``BEGIN IMMEDIATE`` transaction that commits the
    block's writes together with the mark, or rolls both back when the block raises.
    Creates the dedup table in ``conn``'s database if needed.

    Args:
        conn: a connection not currently in a transaction.
        key: the event's dedup key; under an :class:`~streamkit.consume.consumer.EventConsumer`
            the one it claims, ``scoped_key(group, event.id)``.
        ttl_s: seconds the completed mark is kept.
        clock: unix seconds (injectable for tests).

    Raises:
        DedupStoreError: SQLite failed, the connection was already in a transaction,
            or the block committed or rolled back on its own (then no mark is written).
    """
    ttl_s = check_ttl("ttl_s", ttl_s)
    what = f"exactly_once({key!r})"
    if conn.in_transaction:
        raise DedupStoreError(
            f"{what}: the connection is already inside a transaction "
            "(hint: commit or roll back first; do not nest exactly_once or store calls)"
        )
    # One transaction from the check to the mark: that is what makes it exactly once.
    with _translated(what):
        conn.execute("BEGIN IMMEDIATE")
    duplicate = False
    try:
        with _translated(what):
            _ensure_schema(conn)
            row = conn.execute(_SELECT_DONE, (key,)).fetchone()
        duplicate = row is not None and row[0] > clock()
        if duplicate:
            conn.rollback()  # nothing to write: free the lock before the caller goes on
        else:
            yield conn
            if not conn.in_transaction:
                # Committed or rolled back by the block: marking now could record an
                # effect that was rolled back (a lost event), so report instead.
                raise DedupStoreError(
                    f"{what}: the block ended the transaction itself, so its writes and "
                    "the dedup mark were not committed together (hint: do not call "
                    "conn.commit() or conn.rollback() inside the block)"
                )
            with _translated(what):
                conn.execute(_MARK_DONE, (key, clock() + ttl_s))
                conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    if duplicate:
        yield None


class SqliteDedupStore(StoreBase):
    """Deduplication store in an SQLite file, shared by processes on one host.

    Args:
        path: the database file (created if missing; its directory must exist); a
            relative path is resolved against the working directory once, here.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is remembered.
        owner: id of this instance's claims; a fresh uuid4 hex when None.
        busy_timeout_s: how long to wait for another process's write lock.
        synchronous: SQLite ``synchronous`` pragma; ``FULL`` (default) makes every
            committed mark survive power loss, ``NORMAL`` is faster under WAL but may
            lose the last marks on power loss (never on a process crash).
        clock: unix seconds, shared by all processes (tests inject a fake clock).
        purge_interval_s: least time between two purges of expired rows.
        purge_batch: most rows one purge deletes, so a purge never holds the lock long.

    Open one store per process (connections must not cross ``fork``). An instance is
    thread-safe; its threads share one connection.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
        ttl_s: float = DEFAULT_TTL_S,
        owner: str | None = None,
        busy_timeout_s: float = 5.0,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], float] = time.time,
        purge_interval_s: float = 60.0,
        purge_batch: int = 1000,
    ) -> None:
        super().__init__(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        self.path = Path(path).absolute()  # a later chdir must not move the store
        self.busy_timeout_s = check_ttl("busy_timeout_s", busy_timeout_s)
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise DedupStoreError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        if not self.path.parent.is_dir():
            raise DedupStoreError(
                f"sqlite dedup store {str(self.path)!r}: directory {str(self.path.parent)!r} "
                "does not exist (hint: create it, or point the URL at an existing directory)"
            )
        self._clock = clock
        self._purge_interval_s = purge_interval_s
        self._purge_batch = purge_batch
        self._next_purge_at = float("-inf")
        # RLock: a store call made inside transaction() on the same thread gets a clear
        # error from _immediate() instead of deadlocking.
        self._lock = threading.RLock()
        self._conn = self._connect(synchronous)

    def _connect(self, synchronous: Synchronous) -> sqlite3.Connection:
        what = f"opening sqlite dedup store {str(self.path)!r}"
        with _translated(what):
            # isolation_level=None: no implicit transactions; every one is explicit.
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        try:
            with _translated(what):
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise DedupStoreError(
                        f"{what}: SQLite refused WAL mode (journal_mode={mode}) (hint: use a "
                        "local file system; WAL needs shared memory between processes)"
                    )
                conn.execute(f"PRAGMA synchronous = {synchronous}")
            with _immediate(conn, what):
                _ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @classmethod
    def from_url(cls, url: StoreURL, *, owner: str | None = None) -> SqliteDedupStore:
        """Open from a parsed ``sqlite:///billing.db?busy_timeout=S&synchronous=FULL``.

        SQLAlchemy's convention: ``sqlite:///billing.db`` is relative to the working
        directory, ``sqlite:////var/lib/app/billing.db`` (four slashes) absolute.
        """
        parts = url.parts
        if parts.netloc or not parts.path.startswith("/"):
            raise url.error(
                "the path must follow three slashes",
                "write sqlite:///relative/file.db (relative to the working directory) or "
                "sqlite:////abs/path/file.db",
            )
        path = unquote(parts.path)[1:]  # the third slash ends the empty host part
        if not path:
            raise url.error("names no database file", "e.g. sqlite:///dedup.db")
        if path == ":memory:":
            raise url.error(
                "in-memory SQLite is not supported", "use memory:// for a store in this process"
            )
        busy_timeout_s = url.pop_float("busy_timeout", 5.0)
        synchronous = url.params.pop("synchronous", "FULL").upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise url.error(f"synchronous={synchronous!r} is not allowed", "use FULL or NORMAL")
        url.reject_unknown("ttl, claim_ttl, busy_timeout, synchronous")
        return cls(
            path,
            claim_ttl_s=url.claim_ttl_s,
            ttl_s=url.ttl_s,
            owner=owner,
            busy_timeout_s=busy_timeout_s,
            synchronous=synchronous,  # type: ignore[arg-type]  # checked just above
        )

    @contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        self._check_open()
        with self._lock, _immediate(self._conn, f"sqlite dedup store {operation}") as conn:
            yield conn

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Claim keys atomically across processes; see :class:`DedupStore`."""
        if not keys:
            self._check_open()
            return []
        with self._write("claim") as conn:
            now = self._clock()
            self._maybe_purge(conn, now)
            # One query for the whole batch: the keys travel as a JSON array.
            rows = conn.execute(_SELECT_LIVE, (json.dumps(list(keys)), now))
            live = {key: bool(done) for key, done in rows}  # unexpired rows only
            results: list[ClaimResult] = []
            new: dict[str, None] = {}
            for key in keys:
                if key in new:
                    results.append(ClaimResult.IN_PROGRESS)
                elif key not in live:
                    new[key] = None
                    results.append(ClaimResult.CLAIMED)
                else:
                    results.append(ClaimResult.DUPLICATE if live[key] else ClaimResult.IN_PROGRESS)
            expires_at = now + self.claim_ttl_s
            conn.executemany(_UPSERT_CLAIM, ((key, self._owner, expires_at) for key in new))
        return results

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_purge_at:
            return
        deleted = conn.execute(_PURGE, (now, self._purge_batch)).rowcount
        # A full batch means more may be waiting: purge again on the next claim.
        self._next_purge_at = now if deleted >= self._purge_batch else now + self._purge_interval_s

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        if not keys:
            self._check_open()
            return
        with self._write("complete") as conn:
            now = self._clock()
            params = {"owner": self._owner, "now": now, "expires_at": now + self.ttl_s}
            conn.executemany(_UPSERT_DONE, ({**params, "key": key} for key in keys))

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        if not keys:
            self._check_open()
            return
        with self._write("release") as conn:
            conn.executemany(_RELEASE, ((key, self._owner) for key in keys))

    @contextmanager
    def transaction(self, key: str) -> Iterator[sqlite3.Connection | None]:
        """:func:`exactly_once` on this store's connection: effect and mark commit together.

        Yields None when ``key`` is already done, else the connection to write with.
        """
        self._check_open()
        with self._lock, exactly_once(self._conn, key, ttl_s=self.ttl_s, clock=self._clock) as c:
            yield c

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if not self._closed:
                super().close()
                self._conn.close()

    def __repr__(self) -> str:
        return (
            f"SqliteDedupStore(path={str(self.path)!r}, claim_ttl_s={self.claim_ttl_s}, "
            f"ttl_s={self.ttl_s}, owner={self._owner!r})"
        )
