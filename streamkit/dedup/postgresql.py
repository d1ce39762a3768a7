"""Deduplication store and exactly-once inbox in PostgreSQL (``postgresql://``).

``postgresql://user:password@host:5432/database?table=streamkit_dedup`` with optional
``ttl``, ``claim_ttl``, ``pool_size`` (most pooled connections, default 4) and any
parameter libpq understands (``sslmode``, ``connect_timeout``, ``application_name``,
...). psycopg 3 and psycopg-pool are an optional dependency
(``pip install 'streamkit[postgres]'``).

A claim, a recent mark and an :func:`exactly_once` mark is one row (issue 17 budgets
bytes per id)::

    id          uuid         16-byte BLAKE2b hash of the dedup key (primary key)
    expires_at  timestamptz  claim expiry, or the end of retention once done
    owner       text         the claim holder; NULL once done (a NULL costs no space)

Hashing makes every key 16 bytes whatever its length; two different keys share a row
only on a 128-bit collision (probability about n²/2¹²⁹: 10⁻²¹ for a billion ids).
The server's clock (``now()``) decides expiry, so consumers' clocks may disagree.

Such a row costs about 92 bytes on disk with its index entry, so done marks are
**sealed**: once their retention bucket (by expiry, ``ttl / 8`` wide) closed, they move
in id order into rows of 120 sorted ids (``<table>_sealed``, about 18 bytes per id), one
run per bucket (``<table>_runs``); a run's rows never overlap, so finding an id is one
index probe per live run. Sealing is :meth:`PostgresDedupStore.seal`, a bounded batch
run with claims and completes at most every ``purge_interval_s``; it holds the table's
``SHARE ROW EXCLUSIVE`` lock, which claims and marks wait for and take before their
snapshot, so they see a mark either as its row or sealed, never neither.

Claim, complete and release each take the whole batch in one statement (one round
trip): ``INSERT ... SELECT FROM unnest(ids) ON CONFLICT DO UPDATE ... WHERE``, with the
ids sorted so that concurrent batches lock rows in one order and never deadlock; a
claim looks the ids up in the sealed rows in the same statement. Expired rows and
runs are purged in bounded batches at most every ``purge_interval_s``, rows found
through a BRIN index on ``expires_at`` (a few pages whatever the table's size).

The tables are created on first use, or beforehand by ``streamkit db migrate``; beside a
table of the layout before sealing (one row per id, nothing else), the sealed tables
are added and its rows kept: they are this layout's unsealed marks.

Exactly once into the same database
-----------------------------------

:func:`exactly_once` writes the key's done mark in the transaction of the handler's own
writes, so that both commit or neither does; it yields None when the key was done::

    def handle(event: Event) -> None:
        with pool.connection() as conn, exactly_once(conn, scoped_key(GROUP, event.id)) as tx:
            if tx is None:
                return  # handled before
            tx.execute("INSERT INTO orders VALUES (%s, %s)", (event.id, event.payload["total"]))

The mark is written first (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): a
second handler of the same key, on any connection or process, waits on that row until
the first commits (then skips) or rolls back (then goes ahead). The same works with
``async with`` on an ``AsyncConnection``; :func:`mark_once` is the bare mark for code
that manages its own transaction (a SQLAlchemy session: see the docs).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

from streamkit.client.postgres import (
    PostgresURL,
    driver_error,
    ensure_schema,
    execute_in_transaction,
    import_psycopg,
    relation_name,
    schema_block,
    table_identifier,
    translate_pg_error,
)
from streamkit.dedup.base import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStats,
    StoreBase,
    StoreURL,
    check_ttl,
)
from streamkit.errors import DedupStoreError
from streamkit.settings import env_var_name

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TABLE",
    "PostgresDedupStore",
    "create_dedup_table",
    "exactly_once",
    "key_id",
    "mark_once",
]

DEFAULT_TABLE = "streamkit_dedup"
DEFAULT_POOL_SIZE = 4
DEDUP_URL_ENV = env_var_name("dedup", "url")
_CONNECT_TIMEOUT_S = 10.0
_EXACT_COUNT_UP_TO = 1_000_000  # rows (planner estimate) below which stats() counts
# Ids per sealed row: a 1,944-byte array, four rows to a page, each under the 2 kB at
# which PostgreSQL would try to compress it or move it out of line.
SEALED_PER_ROW = 120


def key_id(key: str) -> uuid.UUID:
    """The 16-byte id a dedup key is stored under (BLAKE2b-128 of its UTF-8 bytes)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return uuid.UUID(bytes=digest)


def sealed_tables(table: str) -> tuple[str, str]:
    """The tables beside ``table`` holding sealed marks: (runs, sealed rows)."""
    return f"{table}_runs", f"{table}_sealed"


def _sealed_lookup(ids: str) -> str:
    """SQL selecting the ids of ``ids`` (a set-returning expression) found in sealed rows.

    One index probe per id and live run: the row whose ``lo`` is the greatest not above
    the id is the only one whose sorted ids may hold it (a run's rows never overlap).
    """
    return (  # (S608: constant text only; the tables are quoted by sql.Identifier)
        "SELECT DISTINCT i.id FROM " + ids + " AS i(id) CROSS JOIN {runs} r"  # noqa: S608
        " CROSS JOIN LATERAL (SELECT s.ids FROM {sealed} s WHERE s.run = r.run"
        " AND s.lo <= i.id ORDER BY s.lo DESC LIMIT 1) s"
        " WHERE r.expires_at > now() AND i.id = ANY(s.ids)"
    )


@lru_cache(maxsize=64)
def _statements(table: str) -> dict[str, Any]:
    """The store's SQL for one table (validated and quoted once)."""
    from psycopg import sql

    t = table_identifier(table)
    runs_name, sealed_name = sealed_tables(table)
    names = {"t": t, "runs": table_identifier(runs_name), "sealed": table_identifier(sealed_name)}
    expires = sql.Identifier(f"{relation_name(table)}_expires_at")
    schema = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (id uuid PRIMARY KEY, "
            "expires_at timestamptz NOT NULL, owner text)"
        ).format(t=t),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {i} ON {t} USING brin (expires_at) "
            "WITH (autosummarize = on)"
        ).format(i=expires, t=t),
        # A run: the done marks of one retention bucket (expiring in [starts_at,
        # expires_at)), sealed in id order; sealed_to is how far, complete when all.
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {runs} (run serial PRIMARY KEY,"
            " starts_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,"
            " sealed_to uuid, complete boolean NOT NULL DEFAULT false,"
            " ids bigint NOT NULL DEFAULT 0, UNIQUE (starts_at, expires_at))"
        ).format(**names),
        # SEALED_PER_ROW sorted ids per row: ~18 bytes per id with its index entry.
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {sealed} (run integer NOT NULL, lo uuid NOT NULL,"
            " ids uuid[] NOT NULL, PRIMARY KEY (run, lo))"
        ).format(**names),
    ]
    sealed_ids = sql.SQL(_sealed_lookup("unnest(%(ids)s::uuid[])")).format(**names)
    sealed_one = sql.SQL(_sealed_lookup("(VALUES (%(id)s::uuid))")).format(**names)
    return {
        # Created when the sealed table is missing: a new table, or one of the layout
        # before sealing (whose rows are the unsealed marks of this one, as they are).
        "schema": schema_block(sealed_name, schema),
        "sealed_name": sealed_name,
        # Rows the statement's snapshot shows decide DUPLICATE vs IN_PROGRESS for the
        # keys not claimed; a row committed meanwhile reads as IN_PROGRESS (retry later).
        # Sealed ids are never claimed. The statement locks the table before taking its
        # snapshot, and sealing holds a conflicting lock, so a claim sees a mark either
        # in its row or sealed, never neither.
        "claim": sql.SQL(
            "WITH sealed AS ({sealed_ids}), claimed AS ("
            " INSERT INTO {t} AS d (id, expires_at, owner)"
            " SELECT id, now() + make_interval(secs => %(ttl)s), %(owner)s"
            " FROM unnest(%(ids)s::uuid[]) AS id WHERE id NOT IN (SELECT id FROM sealed)"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at,"
            " owner = excluded.owner WHERE d.expires_at <= now()"
            " RETURNING d.id)"
            " SELECT c.id IS NOT NULL,"
            " (d.owner IS NULL AND d.expires_at > now()) OR s.id IS NOT NULL"
            " FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS i(id, n)"
            " LEFT JOIN claimed c ON c.id = i.id LEFT JOIN {t} d ON d.id = i.id"
            " LEFT JOIN sealed s ON s.id = i.id ORDER BY i.n"
        ).format(sealed_ids=sealed_ids, **names),
        # Done unless another owner holds a live claim (see streamkit.dedup.base).
        "complete": sql.SQL(
            "INSERT INTO {t} AS d (id, expires_at, owner)"
            " SELECT id, now() + make_interval(secs => %(ttl)s), NULL"
            " FROM unnest(%(ids)s::uuid[]) AS id"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, owner = NULL"
            " WHERE d.owner IS NULL OR d.owner = %(owner)s OR d.expires_at <= now()"
        ).format(**names),
        # Done marks within retention: the unsealed ones counted exactly up to a size
        # where the planner's estimate (kept by autovacuum) is used instead of a scan per
        # call; the sealed ones from their runs' counts.
        "stats": sql.SQL(
            "SELECT CASE WHEN c.reltuples < %(exact_up_to)s THEN"
            " (SELECT count(*) FROM {t} WHERE owner IS NULL AND expires_at > now())"
            " ELSE c.reltuples::bigint END"
            " + (SELECT coalesce(sum(ids), 0) FROM {runs} WHERE expires_at > now()),"
            " pg_total_relation_size(c.oid) + pg_total_relation_size(%(runs)s::regclass)"
            " + pg_total_relation_size(%(sealed)s::regclass),"
            " (SELECT count(*) FROM {runs} WHERE expires_at > now() AND ids > 0)"
            " FROM pg_class c WHERE c.oid = %(table)s::regclass"
        ).format(**names),
        "release": sql.SQL(
            "DELETE FROM {t} WHERE id = ANY(%(ids)s::uuid[]) AND owner = %(owner)s"
        ).format(**names),
        # The expiry is checked again on the row deleted: a claim that took over an
        # expired row meanwhile stays.
        "purge": sql.SQL(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= now()"
            " LIMIT %(limit)s) AND expires_at <= now()"
        ).format(**names),
        "purge_sealed": sql.SQL(
            "DELETE FROM {sealed} WHERE (run, lo) IN (SELECT s.run, s.lo FROM {sealed} s"
            " JOIN {runs} r ON r.run = s.run WHERE r.expires_at <= now() LIMIT %(limit)s)"
        ).format(**names),
        "purge_runs": sql.SQL(
            "DELETE FROM {runs} r WHERE r.expires_at <= now()"
            " AND NOT EXISTS (SELECT 1 FROM {sealed} s WHERE s.run = r.run)"
        ).format(**names),
        # Sealing: one bounded batch per transaction, under a lock that waits for
        # running claims and holds new ones back until the batch commits.
        "seal_lock": sql.SQL("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE").format(**names),
        "seal_now": sql.SQL("SELECT extract(epoch FROM now())::float8"),
        "seal_select": sql.SQL(
            "SELECT id FROM {t} WHERE owner IS NULL AND expires_at > now()"
            " AND expires_at >= to_timestamp(%(start)s) AND expires_at < to_timestamp(%(end)s)"
            " AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)"
            " ORDER BY id LIMIT %(limit)s"
        ).format(**names),
        "seal_find_run": sql.SQL(
            "SELECT run, sealed_to, complete FROM {runs} WHERE"
            " starts_at = to_timestamp(%(start)s) AND expires_at = to_timestamp(%(end)s)"
        ).format(**names),
        "seal_run": sql.SQL(
            "INSERT INTO {runs} (starts_at, expires_at)"
            " VALUES (to_timestamp(%(start)s), to_timestamp(%(end)s)) RETURNING run"
        ).format(**names),
        "seal_move": sql.SQL(
            "WITH moved AS (DELETE FROM {t} WHERE id = ANY(%(ids)s::uuid[]) AND owner IS NULL"
            " RETURNING id), numbered AS (SELECT id,"
            " (row_number() OVER (ORDER BY id) - 1) / %(per_row)s AS chunk FROM moved)"
            " INSERT INTO {sealed} (run, lo, ids) SELECT %(run)s, (array_agg(id ORDER BY id))[1],"
            " array_agg(id ORDER BY id) FROM numbered GROUP BY chunk"
        ).format(**names),
        "seal_progress": sql.SQL(
            "UPDATE {runs} SET sealed_to = %(last)s, ids = ids + %(count)s,"
            " complete = %(complete)s WHERE run = %(run)s"
        ).format(**names),
        "seal_complete": sql.SQL("UPDATE {runs} SET complete = true WHERE run = %(run)s").format(
            **names
        ),
        # The inbox mark: a row back means this transaction marked the key (go ahead);
        # none means it was done within retention (in its row or sealed). The row stays
        # locked to the commit.
        "mark": sql.SQL(
            "INSERT INTO {t} AS d (id, expires_at, owner)"
            " SELECT %(id)s, now() + make_interval(secs => %(ttl)s), NULL"
            " WHERE NOT EXISTS ({sealed_one})"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, owner = NULL"
            " WHERE d.owner IS NOT NULL OR d.expires_at <= now() RETURNING true"
        ).format(sealed_one=sealed_one, **names),
    }


def _checked_statements(table: str, error: type[Exception] = DedupStoreError) -> dict[str, Any]:
    try:
        return _statements(table)
    except ValueError as exc:
        raise error(str(exc)) from None


def create_dedup_table(conn: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> bool:
    """Create the dedup tables unless they exist; True when any was created.

    On a table of the layout before sealing, adds the tables of sealed marks (its rows
    stay as they are: they are the unsealed marks of this layout).
    """
    statements = _checked_statements(table)
    return ensure_schema(conn, statements["sealed_name"], statements["schema"])


class PostgresDedupStore(StoreBase):
    """Deduplication store in a PostgreSQL table (one round trip per batch).

    Args:
        pool: a ``psycopg_pool.ConnectionPool``; :func:`~streamkit.dedup.open_store`
            makes one (autocommit connections, ``pool_size`` of them at most).
        table: the table's name (``name`` or ``schema.name``); created if missing.
        claim_ttl_s: seconds after which an uncompleted claim expires.
        ttl_s: seconds a completed key is remembered.
        owner: id of this instance's claims; a fresh uuid4 hex when None.
        url: the URL (masked in repr and errors) and the setting it came from.
        close_pool: whether :meth:`close` closes ``pool``.
        purge_interval_s: least time between two purges of expired rows.
        purge_batch: most rows one purge deletes.
        seal_batch: most marks one :meth:`seal` packs.
        seal_lock_timeout_s: longest :meth:`seal` waits for the table's lock.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        table: str = DEFAULT_TABLE,
        claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
        ttl_s: float = DEFAULT_TTL_S,
        owner: str | None = None,
        url: PostgresURL | None = None,
        close_pool: bool = False,
        purge_interval_s: float = 60.0,
        purge_batch: int = 1000,
        seal_batch: int = 10_000,
        seal_lock_timeout_s: float = 0.2,
    ) -> None:
        super().__init__(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        self._psycopg = import_psycopg()
        self.table = table
        self._sql = _checked_statements(table)
        self._pool = pool
        self._close_pool = close_pool
        self._url = url
        self._purge_interval_s = purge_interval_s
        self._purge_batch = purge_batch
        self._seal_batch = seal_batch
        self._seal_lock_timeout_s = seal_lock_timeout_s
        self._next_purge_at = float("-inf")
        self._sealed_slots: set[float] = set()  # closed buckets found fully sealed
        with self._connection("create table") as conn:
            ensure_schema(conn, self._sql["sealed_name"], self._sql["schema"])

    @classmethod
    def from_url(cls, url: StoreURL, *, owner: str | None = None) -> PostgresDedupStore:
        """Connect to a parsed ``postgresql://`` URL (failing now, naming the cause)."""
        psycopg = import_psycopg()
        from psycopg_pool import ConnectionPool

        table = url.params.pop("table", DEFAULT_TABLE)
        pool_size = url.pop_int("pool_size", DEFAULT_POOL_SIZE)
        try:
            table_identifier(table)
        except ValueError as exc:
            raise url.error(str(exc), "e.g. ?table=orders_dedup") from None
        pg_url = PostgresURL(url.raw, DEDUP_URL_ENV)
        pg_url.params = dict(url.params)  # ttl, claim_ttl, table, pool_size are ours
        # One direct connection first: a wrong password or host fails here with libpq's
        # reason, where the pool would only time out.
        try:
            psycopg.connect(pg_url.conninfo, connect_timeout=_CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise translate_pg_error(exc, "connect", DedupStoreError, pg_url) from None
        pool = ConnectionPool(
            pg_url.conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True},
            open=False,
            name=f"streamkit-dedup-{table}",
        )
        pool.open(wait=False)
        try:
            return cls(
                pool,
                table=table,
                claim_ttl_s=url.claim_ttl_s,
                ttl_s=url.ttl_s,
                owner=owner,
                url=pg_url,
                close_pool=True,
            )
        except BaseException:
            pool.close()
            raise

    def _connection(self, operation: str) -> _PooledConnection:
        self._check_open()
        return _PooledConnection(self, operation)

    def _run(self, operation: str, ids: list[uuid.UUID], params: dict[str, Any]) -> list[Any]:
        with self._connection(operation) as conn:
            cursor = conn.execute(self._sql[operation], {"ids": ids, **params})
            return cursor.fetchall() if cursor.description else []

    def claim(self, keys: Sequence[str]) -> list[ClaimResult]:
        """Claim keys atomically (one statement); see :class:`DedupStore`."""
        self._check_open()
        if not keys:
            return []
        ids = [key_id(key) for key in keys]
        unique = sorted(set(ids))  # one lock order for every batch: no deadlock
        self._maybe_purge()
        rows = self._run("claim", unique, {"owner": self._owner, "ttl": self.claim_ttl_s})
        state = {id_: _result(*row) for id_, row in zip(unique, rows, strict=True)}
        results: list[ClaimResult] = []
        seen: set[uuid.UUID] = set()
        for id_ in ids:
            result = state[id_]
            if id_ in seen and result is ClaimResult.CLAIMED:
                result = ClaimResult.IN_PROGRESS  # not re-entrant within a batch either
            seen.add(id_)
            results.append(result)
        return results

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge_at:
            return
        with self._connection("purge") as conn:
            limit = {"limit": self._purge_batch}
            deleted = conn.execute(self._sql["purge"], limit).rowcount
            deleted += conn.execute(self._sql["purge_sealed"], limit).rowcount
            conn.execute(self._sql["purge_runs"])
        sealed = self.seal()
        # A full batch means more may be waiting: purge (and seal) again on the next claim.
        full = deleted >= self._purge_batch or sealed >= self._seal_batch
        self._next_purge_at = now if full else now + self._purge_interval_s

    def seal(self) -> int:
        """Pack one bounded batch of done marks of closed buckets into sealed rows.

        A bucket (``ttl / 8`` wide, by expiry) is closed once marks completed now expire
        after it; the two that closed last are sealed. Their marks move, in id order,
        into rows of ``SEALED_PER_ROW`` sorted ids, at most ``seal_batch`` per call, in
        one transaction that locks the table against claims for its duration; when a
        claim or an open transaction of :func:`exactly_once` holds the table longer than
        ``seal_lock_timeout_s``, nothing is sealed this time. Runs with claims and
        completes, at most every ``purge_interval_s``. Returns the number of marks sealed
        (0: nothing to seal, or the table was busy).
        """
        lock_not_available = self._psycopg.errors.LockNotAvailable
        timeout = f"{round(self._seal_lock_timeout_s * 1000)}ms"
        with self._connection("seal") as conn:
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                    conn.execute(self._sql["seal_lock"])
                    return self._seal_batch_locked(conn)
            except lock_not_available:
                return 0  # the table is busy: seal next time

    def _seal_batch_locked(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(self._sql["seal_now"]).fetchone()
        assert row is not None
        now_s = float(row[0])
        width = self.retention.width_ms / 1000
        # The two buckets that closed last: no mark completed now joins them, and their
        # marks expire at least ttl - 2 buckets from now, so that marks of a much
        # shorter retention (another store's) are never held a bucket of this one longer.
        open_slot = math.floor((now_s + self.ttl_s) / width)
        for slot in (open_slot - 2, open_slot - 1):
            start, end = slot * width, (slot + 1) * width
            if start in self._sealed_slots:
                continue
            bounds = {"start": start, "end": end}
            run_row = conn.execute(self._sql["seal_find_run"], bounds).fetchone()
            run, sealed_to, complete = run_row or (None, None, False)
            params = {**bounds, "after": sealed_to, "limit": self._seal_batch}
            ids = [] if complete else [r[0] for r in conn.execute(self._sql["seal_select"], params)]
            if not ids:
                if run is not None and not complete:
                    conn.execute(self._sql["seal_complete"], {"run": run})
                self._sealed_slots.add(start)
                continue
            if run is None:
                run_row = conn.execute(self._sql["seal_run"], bounds).fetchone()
                assert run_row is not None
                run = run_row[0]
            moved = {"ids": ids, "run": run, "per_row": SEALED_PER_ROW}
            conn.execute(self._sql["seal_move"], moved)
            done = len(ids) < self._seal_batch
            progress = {"last": ids[-1], "count": len(ids), "complete": done, "run": run}
            conn.execute(self._sql["seal_progress"], progress)
            if done:
                self._sealed_slots.add(start)
            return len(ids)
        return 0

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        self._check_open()
        if keys:
            ids = sorted({key_id(key) for key in keys})
            self._run("complete", ids, {"owner": self._owner, "ttl": self.ttl_s})
            self._maybe_purge()

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        if keys:
            self._run("release", sorted({key_id(key) for key in keys}), {"owner": self._owner})

    def stats(self) -> DedupStats:
        """Done marks within retention and the tables' bytes on disk (indexes included).

        Unsealed marks are counted exactly below a million rows; above, the planner's
        row estimate (claims and expired rows not yet purged included), so that a scrape
        never scans the table. Sealed marks come from their runs' counts; ``buckets`` is
        the number of live sealed runs.
        """
        runs, sealed = sealed_tables(self.table)
        with self._connection("stats") as conn:
            params = {
                "exact_up_to": _EXACT_COUNT_UP_TO,
                "table": self.table,
                "runs": runs,
                "sealed": sealed,
            }
            row = conn.execute(self._sql["stats"], params).fetchone()
        assert row is not None  # one row for the table, which the store created
        ids, bytes_used, buckets = row
        return self._stats("postgresql", int(ids), int(bytes_used), int(buckets))

    def close(self) -> None:
        """Close the pool when this store opened it; idempotent."""
        if not self._closed:
            super().close()
            if self._close_pool:
                self._pool.close()

    def __repr__(self) -> str:
        where = self._url.masked if self._url else f"<pool {self._pool.name}>"
        return (
            f"PostgresDedupStore(url={where!r}, table={self.table!r}, "
            f"claim_ttl_s={self.claim_ttl_s}, ttl_s={self.ttl_s}, owner={self._owner!r})"
        )


def _result(claimed: bool, done: bool) -> ClaimResult:
    if claimed:
        return ClaimResult.CLAIMED
    return ClaimResult.DUPLICATE if done else ClaimResult.IN_PROGRESS


class _PooledConnection:
    """A pooled connection for one store operation; errors become DedupStoreError."""

    def __init__(self, store: PostgresDedupStore, operation: str) -> None:
        self._store = store
        self._operation = operation
        self._context: Any = None

    def __enter__(self) -> psycopg.Connection[Any]:
        from psycopg_pool import PoolTimeout

        self._context = self._store._pool.connection(timeout=_CONNECT_TIMEOUT_S)
        try:
            conn: psycopg.Connection[Any] = self._context.__enter__()
        except PoolTimeout as exc:
            raise self._translated(exc) from None
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The pool drops a connection left broken by the error and opens a new one.
        self._context.__exit__(exc_type, exc, tb)
        if isinstance(exc, self._store._psycopg.Error):
            raise self._translated(exc) from None

    def _translated(self, exc: BaseException) -> DedupStoreError:
        store = self._store
        operation = f"dedup {self._operation} ({store.table})"
        error = translate_pg_error(exc, operation, DedupStoreError, store._url)
        assert isinstance(error, DedupStoreError)
        return error


# Exactly once ---------------------------------------------------------------------


def _mark_params(key: str, ttl_s: float) -> dict[str, Any]:
    return {"id": key_id(key), "ttl": check_ttl("ttl_s", ttl_s)}


def _mark_error(cause: BaseException, key: str, table: str) -> DedupStoreError:
    missing = type(cause).__name__ == "UndefinedTable"
    hint = (
        f"create the table first: `streamkit db migrate`, create_dedup_table(conn, {table!r}), "
        "or open the dedup store once"
        if missing
        else "check the connection and the database log"
    )
    detail = f"{type(cause).__name__}: {str(cause).strip()}"
    return DedupStoreError(f"marking {key!r} done in {table} failed: {detail} (hint: {hint})")


def mark_once(
    conn: Any, key: str, *, table: str = DEFAULT_TABLE, ttl_s: float = DEFAULT_TTL_S
) -> bool:
    """Write ``key``'s done mark in the connection's current transaction.

    True when this transaction marked the key: do the work, and commit it together with
    the mark. False when the key was done within retention: skip it. The row stays
    locked until the transaction ends, so a concurrent handler of the same key waits
    for this one's outcome. The table must exist (it is not created inside your
    transaction): ``streamkit db migrate`` or :func:`create_dedup_table`.

    Args:
        conn: a psycopg ``Connection``, or a SQLAlchemy ``Connection`` or ``Session``
            (``session.connection()`` is used: the session's transaction).
        key: the event's dedup key, ``scoped_key(group, event.id)``.
        table: the dedup table.
        ttl_s: seconds the mark is kept.

    Raises:
        DedupStoreError: the mark could not be written (the transaction is then
            aborted: roll it back).
    """
    statement = _checked_statements(table)["mark"]
    try:
        return execute_in_transaction(conn, statement, _mark_params(key, ttl_s)) is not None
    except Exception as exc:
        cause = driver_error(exc)
        if cause is None:
            raise
        raise _mark_error(cause, key, table) from exc


class exactly_once:  # noqa: N801 - a context manager used like a function
    """Run a block's writes and the dedup mark of ``key`` in one PostgreSQL transaction.

    ``with exactly_once(conn, key) as tx:`` on a psycopg ``Connection``, or
    ``async with exactly_once(aconn, key) as tx:`` on an ``AsyncConnection``. ``tx`` is
    None (and nothing is written) when ``key`` was done within retention; otherwise it
    is ``conn``, inside ``conn.transaction()``, which commits the block's writes with the
    mark, or rolls both back when the block raises. Inside an open transaction (autocommit
    off, a statement already run) the block is a savepoint and commits with it. Creates
    the dedup table on first use.

    Args:
        conn: the connection the block writes with.
        key: the event's dedup key; under an :class:`~streamkit.consume.consumer.EventConsumer`
            the one it claims, ``scoped_key(group, event.id)``.
        table: the dedup table (shared with a :class:`PostgresDedupStore` on it).
        ttl_s: seconds the completed mark is kept.

    Raises:
        DedupStoreError: the mark could not be written; the transaction was rolled back.
    """

    def __init__(
        self, conn: Any, key: str, *, table: str = DEFAULT_TABLE, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self._conn = conn
        self._key = key
        self._table = table
        self._sql = _checked_statements(table)
        self._params = _mark_params(key, ttl_s)
        self._transaction: Any = None
        self._created = False

    def _create_or_raise(self, exc: BaseException) -> None:
        """After the mark failed: return to create the missing table and retry, or raise."""
        psycopg = import_psycopg()
        if isinstance(exc, psycopg.errors.UndefinedTable) and not self._created:
            self._created = True
            return
        if isinstance(exc, psycopg.Error):
            raise _mark_error(exc, self._key, self._table) from exc
        raise exc

    def __enter__(self) -> Any:
        conn = self._conn
        while True:
            transaction = conn.transaction()
            transaction.__enter__()
            try:
                marked = conn.execute(self._sql["mark"], self._params).fetchone() is not None
            except BaseException as exc:
                transaction.__exit__(type(exc), exc, exc.__traceback__)
                self._create_or_raise(exc)
                # In a transaction of its own (or a savepoint of the caller's).
                ensure_schema(conn, self._sql["sealed_name"], self._sql["schema"])
                continue
            if not marked:
                transaction.__exit__(None, None, None)  # nothing to write: end it now
                return None
            self._transaction = transaction
            return conn

    async def __aenter__(self) -> Any:
        conn = self._conn
        while True:
            transaction = conn.transaction()
            await transaction.__aenter__()
            try:
                cursor = await conn.execute(self._sql["mark"], self._params)
                marked = await cursor.fetchone() is not None
            except BaseException as exc:
                await transaction.__aexit__(type(exc), exc, exc.__traceback__)
                self._create_or_raise(exc)
                async with conn.transaction():
                    await conn.execute(self._sql["schema"])
                continue
            if not marked:
                await transaction.__aexit__(None, None, None)
                return None
            self._transaction = transaction
            return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return False
        return bool(transaction.__exit__(exc_type, exc, tb))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return False
        return bool(await transaction.__aexit__(exc_type, exc, tb))
