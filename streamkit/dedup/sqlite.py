"""Deduplication store in one SQLite file (``sqlite:///relative.db``, ``sqlite:////abs/path.db``).

Durable and embedded; safe for several processes on one host sharing the file (not
for a network file system, where SQLite's locks are unreliable). The database runs in
WAL mode, so readers never block the writer, and every operation is one
``BEGIN IMMEDIATE`` transaction: it takes the database write lock up front, which
makes read-check-write (a claim) atomic across processes and lets a waiting process
queue on ``busy_timeout`` instead of failing with ``database is locked`` half-way.
Expired rows are treated as absent when read and deleted in bounded batches during
claims, at most every ``purge_interval_s``.

Layout: a completed mark is one row ``(bucket, 16-byte id)`` of ``streamkit_dedup_done``
(about 25 bytes on disk; see :mod:`streamkit.dedup.marks` for ids and retention
buckets), claims are rows of ``streamkit_dedup_claims`` with their own expiry, and
``streamkit_dedup_buckets`` lists the retention buckets with their mark counts. A file
written by an earlier streamkit (table ``streamkit_dedup``, one text row per key) is
converted when a store or :func:`exactly_once` first opens it: its live marks and
claims move into the new tables in one transaction and the old table is dropped.
Upgrade every process that uses the file together: one still running the old version
then fails with "no such table: streamkit_dedup" (nothing is lost; it retries).

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

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStats,
    StoreBase,
    StoreURL,
    check_ttl,
)
from streamkit.dedup.marks import HASH_KEY_BYTES, IdCodec, Retention
from streamkit.errors import DedupStoreError

__all__ = [
    "BUCKETS_TABLE",
    "CLAIMS_TABLE",
    "DONE_TABLE",
    "LEGACY_TABLE",
    "META_TABLE",
    "SqliteDedupStore",
    "exactly_once",
]

# Table names, spelled out in the SQL below (no string-built SQL).
DONE_TABLE = "streamkit_dedup_done"
BUCKETS_TABLE = "streamkit_dedup_buckets"
CLAIMS_TABLE = "streamkit_dedup_claims"
META_TABLE = "streamkit_dedup_meta"
LEGACY_TABLE = "streamkit_dedup"  # one text row per key, before streamkit 0.x's compact marks

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS streamkit_dedup_meta ("
    " name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
    # The hash key of non-uuid dedup keys (streamkit.dedup.marks), made once per file.
    "INSERT OR IGNORE INTO streamkit_dedup_meta VALUES ('hash_key', randomblob(16))",
    "CREATE TABLE IF NOT EXISTS streamkit_dedup_buckets ("
    " bucket INTEGER PRIMARY KEY,"  # a small number, repeated in every mark of the bucket
    " ttl_ms INTEGER NOT NULL,"  # the retention series
    " start_ms INTEGER NOT NULL,"  # unix ms: marks completed from then on, for width_ms
    " expires_at REAL NOT NULL,"  # unix s: the whole bucket is forgotten then
    " ids INTEGER NOT NULL DEFAULT 0,"  # marks written into it (stats without a scan)
    " UNIQUE (ttl_ms, start_ms))",
    # ~25 bytes per mark on disk: (bucket, 16-byte id), clustered by bucket, so that an
    # expired bucket is one contiguous range to delete.
    "CREATE TABLE IF NOT EXISTS streamkit_dedup_done ("
    " bucket INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (bucket, id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS streamkit_dedup_claims ("
    " id BLOB PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL"
    ") WITHOUT ROWID",
)
_HASH_KEY = "SELECT value FROM streamkit_dedup_meta WHERE name = 'hash_key'"
# A batch of ids travels as one blob of 16-byte ids, split here into rows.
_BATCH = (
    "WITH RECURSIVE batch(i, id) AS (SELECT 0, substr(:ids, 1, 16) UNION ALL "
    "SELECT i + 16, substr(:ids, i + 17, 16) FROM batch WHERE i + 16 < length(:ids)) "
)
# CROSS JOIN keeps the batch outside: one primary-key probe per id and live bucket.
# (S608: only constant text is joined here.)
_SELECT_DONE = (
    _BATCH  # noqa: S608
    + "SELECT DISTINCT d.id FROM batch CROSS JOIN streamkit_dedup_done AS d "
    "ON d.id = batch.id WHERE d.bucket IN "
    "(SELECT bucket FROM streamkit_dedup_buckets WHERE expires_at > :now)"
)
_SELECT_CLAIMS = (
    _BATCH  # noqa: S608
    + "SELECT c.id, c.owner, c.expires_at FROM batch CROSS JOIN "
    "streamkit_dedup_claims AS c ON c.id = batch.id"
)
_UPSERT_CLAIM = (
    "INSERT INTO streamkit_dedup_claims (id, owner, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
)
_DELETE_CLAIM = "DELETE FROM streamkit_dedup_claims WHERE id = ?"
_RELEASE = "DELETE FROM streamkit_dedup_claims WHERE id = ? AND owner = ?"
_NEW_BUCKET = (
    "INSERT OR IGNORE INTO streamkit_dedup_buckets (ttl_ms, start_ms, expires_at) VALUES (?, ?, ?)"
)
_BUCKET = "SELECT bucket FROM streamkit_dedup_buckets WHERE ttl_ms = ? AND start_ms = ?"
_INSERT_MARK = "INSERT OR IGNORE INTO streamkit_dedup_done (bucket, id) VALUES (?, ?)"
_COUNT_MARKS = "UPDATE streamkit_dedup_buckets SET ids = ids + ? WHERE bucket = ?"
_EXPIRED_BUCKETS = (
    "SELECT bucket FROM streamkit_dedup_buckets WHERE expires_at <= ? ORDER BY bucket"
)
_PURGE_MARKS = (
    "DELETE FROM streamkit_dedup_done WHERE bucket = ?1 AND id IN "
    "(SELECT id FROM streamkit_dedup_done WHERE bucket = ?1 LIMIT ?2)"
)
_DROP_BUCKET = "DELETE FROM streamkit_dedup_buckets WHERE bucket = ?"
_PURGE_CLAIMS = (
    "DELETE FROM streamkit_dedup_claims WHERE id IN "
    "(SELECT id FROM streamkit_dedup_claims WHERE expires_at <= ? LIMIT ?)"
)
_STATS = "SELECT coalesce(sum(ids), 0), count(*) FROM streamkit_dedup_buckets WHERE expires_at > ?"
_LEGACY_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'streamkit_dedup'"
_LEGACY_ROWS = "SELECT key, owner, done, expires_at FROM streamkit_dedup WHERE expires_at > ?"
_LEGACY_DROP = "DROP TABLE streamkit_dedup"
_LEGACY_CHUNK = 10_000

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


_codecs: dict[bytes, IdCodec] = {}  # per hash key: codecs cache their namespace masks


def _ensure_schema(conn: sqlite3.Connection, retention: Retention, now: float) -> IdCodec:
    """Create the tables if needed, move legacy rows over, and return the file's codec.

    Runs inside the caller's write transaction.
    """
    for statement in _SCHEMA:
        conn.execute(statement)
    (hash_key,) = conn.execute(_HASH_KEY).fetchone()
    if len(hash_key) != HASH_KEY_BYTES:
        raise DedupStoreError(
            f"the {META_TABLE} table holds a hash key of {len(hash_key)} bytes, not "
            f"{HASH_KEY_BYTES} (hint: the table was edited by hand; restore it)"
        )
    codec = _codecs.get(hash_key)
    if codec is None:
        codec = _codecs[hash_key] = IdCodec(hash_key)
    if conn.execute(_LEGACY_EXISTS).fetchone():
        _migrate_legacy(conn, codec, retention, now)
    return codec


def _migrate_legacy(
    conn: sqlite3.Connection, codec: IdCodec, retention: Retention, now: float
) -> None:
    """Move the live rows of the one-row-per-key table into the compact layout, then drop it.

    A done row goes into the bucket of the completion its expiry implies (``expires_at
    - ttl``), which is forgotten no earlier than the row would have been; a claim keeps
    its owner and expiry.
    """
    rows = conn.execute(_LEGACY_ROWS, (now,))
    while chunk := rows.fetchmany(_LEGACY_CHUNK):
        by_start: dict[int, list[bytes]] = {}
        claims: list[tuple[bytes, str, float]] = []
        for key, owner, done, expires_at in chunk:
            id_ = codec.id_of(key).to_bytes(16, "big")
            if done:
                start = retention.start_ms((expires_at * 1000) - retention.ttl_ms)
                by_start.setdefault(start, []).append(id_)
            else:
                claims.append((id_, owner, expires_at))
        for start, ids in by_start.items():
            _insert_marks(conn, _bucket(conn, retention, start), ids)
        conn.executemany(_UPSERT_CLAIM, claims)
    conn.execute(_LEGACY_DROP)


def _bucket(conn: sqlite3.Connection, retention: Retention, start_ms: int) -> int:
    """The number of the bucket ``(ttl, start_ms)``, created if needed."""
    expires_at = retention.expires_ms(start_ms) / 1000
    conn.execute(_NEW_BUCKET, (retention.ttl_ms, start_ms, expires_at))
    bucket: int = conn.execute(_BUCKET, (retention.ttl_ms, start_ms)).fetchone()[0]
    return bucket


def _insert_marks(conn: sqlite3.Connection, bucket: int, ids: Iterable[bytes]) -> None:
    before = conn.total_changes
    conn.executemany(_INSERT_MARK, ((bucket, id_) for id_ in ids))
    added = conn.total_changes - before
    if added:
        conn.execute(_COUNT_MARKS, (added, bucket))


def _mark_done(
    conn: sqlite3.Connection, retention: Retention, now: float, ids: Iterable[bytes]
) -> None:
    """Remember ids as completed now (in the current bucket of ``retention``)."""
    _insert_marks(conn, _bucket(conn, retention, retention.start_ms(now * 1000)), ids)


def _done(conn: sqlite3.Connection, ids: list[bytes], now: float) -> set[bytes]:
    """The ids among ``ids`` that a live bucket remembers as completed."""
    rows = conn.execute(_SELECT_DONE, {"ids": b"".join(ids), "now": now})
    return {row[0] for row in rows}


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
    Creates the dedup tables in ``conn``'s database if needed (and moves marks of the
    legacy one-row-per-key table into them).

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
    retention = Retention.of(check_ttl("ttl_s", ttl_s))
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
            now = clock()
            id_ = _ensure_schema(conn, retention, now).id_of(key).to_bytes(16, "big")
            duplicate = bool(_done(conn, [id_], now))
        if duplicate:
            # Nothing to write: free the lock before the caller goes on (committing
            # keeps a schema creation or legacy migration this transaction made).
            with _translated(what):
                conn.commit()
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
                # The mark replaces a claim on the key, as complete() would.
                conn.execute(_DELETE_CLAIM, (id_,))
                _mark_done(conn, retention, clock(), [id_])
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
        self._conn, self._codec = self._connect(synchronous)

    def _connect(self, synchronous: Synchronous) -> tuple[sqlite3.Connection, IdCodec]:
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
                codec = _ensure_schema(conn, self.retention, self._clock())
        except BaseException:
            conn.close()
            raise
        return conn, codec

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
        ids = self._codec.id_bytes(keys, remember=True)
        with self._write("claim") as conn:
            now = self._clock()
            self._maybe_purge(conn, now)
            done = _done(conn, ids, now)
            held = {id_ for id_, _, expires_at in self._claims(conn, ids) if expires_at > now}
            results: list[ClaimResult] = []
            new: dict[bytes, None] = {}
            for id_ in ids:
                if id_ in done:
                    results.append(ClaimResult.DUPLICATE)
                elif id_ in held or id_ in new:
                    results.append(ClaimResult.IN_PROGRESS)
                else:
                    new[id_] = None
                    results.append(ClaimResult.CLAIMED)
            expires_at = now + self.claim_ttl_s
            conn.executemany(_UPSERT_CLAIM, ((id_, self._owner, expires_at) for id_ in new))
        return results

    @staticmethod
    def _claims(conn: sqlite3.Connection, ids: list[bytes]) -> list[tuple[bytes, str, float]]:
        rows: list[tuple[bytes, str, float]] = conn.execute(
            _SELECT_CLAIMS, {"ids": b"".join(ids)}
        ).fetchall()
        return rows

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_purge_at:
            return
        budget = self._purge_batch
        deleted = 0
        for (bucket,) in conn.execute(_EXPIRED_BUCKETS, (now,)).fetchall():
            left = budget - deleted
            removed = conn.execute(_PURGE_MARKS, (bucket, left)).rowcount
            deleted += removed
            if removed < left:  # the bucket is empty now
                conn.execute(_DROP_BUCKET, (bucket,))
            if deleted >= budget:
                break
        if deleted < budget:
            deleted += conn.execute(_PURGE_CLAIMS, (now, budget - deleted)).rowcount
        # A full batch means more may be waiting: purge again on the next claim.
        self._next_purge_at = now if deleted >= budget else now + self._purge_interval_s

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        if not keys:
            self._check_open()
            return
        ids = self._codec.id_bytes(keys)
        with self._write("complete") as conn:
            now = self._clock()
            claims = {id_: (owner, until) for id_, owner, until in self._claims(conn, ids)}
            accepted: dict[bytes, None] = {}
            for id_ in ids:
                owner, expires_at = claims.get(id_, (self._owner, 0.0))
                if owner == self._owner or expires_at <= now:
                    accepted[id_] = None  # else another owner's live claim: it decides
            conn.executemany(_DELETE_CLAIM, ((id_,) for id_ in accepted if id_ in claims))
            _mark_done(conn, self.retention, now, accepted)

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        if not keys:
            self._check_open()
            return
        ids = self._codec.id_bytes(keys)
        with self._write("release") as conn:
            conn.executemany(_RELEASE, ((id_, self._owner) for id_ in ids))

    def stats(self) -> DedupStats:
        """Marks within retention (from the bucket table) and the file's used bytes."""
        with self._write("stats") as conn:
            ids, buckets = conn.execute(_STATS, (self._clock(),)).fetchone()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return self._stats("sqlite", ids, (pages - free) * page_size, buckets)

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
