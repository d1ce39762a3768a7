"""Deduplication store and exactly-once inbox in PostgreSQL (``postgresql://``).

``postgresql://user:password@host:5432/database?table=streamkit_dedup`` with optional
``ttl``, ``claim_ttl``, ``pool_size`` (most pooled connections, default 4) and any
parameter libpq understands (``sslmode``, ``connect_timeout``, ``application_name``,
...). psycopg 3 and psycopg-pool are an optional dependency
(``pip install 'streamkit[postgres]'``).

One row per remembered id, compact from the start (issue 17 budgets bytes per id)::

    id          uuid         16-byte BLAKE2b hash of the dedup key (primary key)
    expires_at  timestamptz  claim expiry, or the end of retention once done
    owner       text         the claim holder; NULL once done (a NULL costs no space)

Hashing makes every key 16 bytes whatever its length; two different keys share a row
only on a 128-bit collision (probability about n²/2¹²⁹: 10⁻²¹ for a billion ids).
The server's clock (``now()``) decides expiry, so consumers' clocks may disagree.
Claim, complete and release each take the whole batch in one statement (one round
trip): ``INSERT ... SELECT FROM unnest(ids) ON CONFLICT DO UPDATE ... WHERE``, with the
ids sorted so that concurrent batches lock rows in one order and never deadlock.
Expired rows are purged in bounded batches during claims, at most every
``purge_interval_s``, found through a BRIN index on ``expires_at`` (a few pages
whatever the table's size).

The table is created on first use, or beforehand by ``streamkit db migrate``.

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
    StoreBase,
    StoreURL,
    check_ttl,
)
from streamkit.errors import DedupStoreError
from streamkit.settings import env_var_name

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
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


def key_id(key: str) -> uuid.UUID:
    """The 16-byte id a dedup key is stored under (BLAKE2b-128 of its UTF-8 bytes)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return uuid.UUID(bytes=digest)


@lru_cache(maxsize=64)
def _statements(table: str) -> dict[str, sql.Composed]:
    """The store's SQL for one table (validated and quoted once)."""
    from psycopg import sql

    t = table_identifier(table)
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
    ]
    return {
        "schema": schema_block(table, schema),
        # Rows the statement's snapshot shows decide DUPLICATE vs IN_PROGRESS for the
        # keys not claimed; a row committed meanwhile reads as IN_PROGRESS (retry later).
        "claim": sql.SQL(
            "WITH claimed AS ("
            " INSERT INTO {t} AS d (id, expires_at, owner)"
            " SELECT id, now() + make_interval(secs => %(ttl)s), %(owner)s"
            " FROM unnest(%(ids)s::uuid[]) AS id"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at,"
            " owner = excluded.owner WHERE d.expires_at <= now()"
            " RETURNING d.id)"
            " SELECT c.id IS NOT NULL, d.owner IS NULL AND d.expires_at > now()"
            " FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS i(id, n)"
            " LEFT JOIN claimed c ON c.id = i.id LEFT JOIN {t} d ON d.id = i.id"
            " ORDER BY i.n"
        ).format(t=t),
        # Done unless another owner holds a live claim (see streamkit.dedup.base).
        "complete": sql.SQL(
            "INSERT INTO {t} AS d (id, expires_at, owner)"
            " SELECT id, now() + make_interval(secs => %(ttl)s), NULL"
            " FROM unnest(%(ids)s::uuid[]) AS id"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, owner = NULL"
            " WHERE d.owner IS NULL OR d.owner = %(owner)s OR d.expires_at <= now()"
        ).format(t=t),
        "release": sql.SQL(
            "DELETE FROM {t} WHERE id = ANY(%(ids)s::uuid[]) AND owner = %(owner)s"
        ).format(t=t),
        # The expiry is checked again on the row deleted: a claim that took over an
        # expired row meanwhile stays.
        "purge": sql.SQL(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= now()"
            " LIMIT %(limit)s) AND expires_at <= now()"
        ).format(t=t),
        # The inbox mark: a row back means this transaction marked the key (go ahead);
        # none means it was done within retention. The row stays locked to the commit.
        "mark": sql.SQL(
            "INSERT INTO {t} AS d (id, expires_at, owner)"
            " VALUES (%(id)s, now() + make_interval(secs => %(ttl)s), NULL)"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, owner = NULL"
            " WHERE d.owner IS NOT NULL OR d.expires_at <= now() RETURNING true"
        ).format(t=t),
    }


def _checked_statements(table: str, error: type[Exception] = DedupStoreError) -> dict[str, Any]:
    try:
        return _statements(table)
    except ValueError as exc:
        raise error(str(exc)) from None


def create_dedup_table(conn: psycopg.Connection[Any], table: str = DEFAULT_TABLE) -> bool:
    """Create the dedup table (and its index) unless it exists; True when created."""
    return ensure_schema(conn, table, _checked_statements(table)["schema"])


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
    ) -> None:
        super().__init__(claim_ttl_s=claim_ttl_s, ttl_s=ttl_s, owner=owner)
        self._psycopg = import_psycopg(DedupStoreError)
        self.table = table
        self._sql = _checked_statements(table)
        self._pool = pool
        self._close_pool = close_pool
        self._url = url
        self._purge_interval_s = purge_interval_s
        self._purge_batch = purge_batch
        self._next_purge_at = float("-inf")
        with self._connection("create table") as conn:
            ensure_schema(conn, table, self._sql["schema"])

    @classmethod
    def from_url(cls, url: StoreURL, *, owner: str | None = None) -> PostgresDedupStore:
        """Connect to a parsed ``postgresql://`` URL (failing now, naming the cause)."""
        psycopg = import_psycopg(DedupStoreError)
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
            deleted = conn.execute(self._sql["purge"], {"limit": self._purge_batch}).rowcount
        # A full batch means more may be waiting: purge again on the next claim.
        full = deleted >= self._purge_batch
        self._next_purge_at = now if full else now + self._purge_interval_s

    def complete(self, keys: Sequence[str]) -> None:
        """Mark keys done; see :class:`DedupStore`."""
        self._check_open()
        if keys:
            ids = sorted({key_id(key) for key in keys})
            self._run("complete", ids, {"owner": self._owner, "ttl": self.ttl_s})

    def release(self, keys: Sequence[str]) -> None:
        """Drop this owner's claims on keys."""
        self._check_open()
        if keys:
            self._run("release", sorted({key_id(key) for key in keys}), {"owner": self._owner})

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
        psycopg = import_psycopg(DedupStoreError)
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
                ensure_schema(conn, self._table, self._sql["schema"])
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
