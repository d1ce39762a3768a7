"""Connecting to PostgreSQL: what the dedup store, the inbox and the outbox share.

- :func:`import_psycopg`: psycopg 3 is optional (``pip install 'streamkit[postgres]'``).
- :class:`PostgresURL`: a ``postgresql://user:pass@host:port/db?table=...`` URL split into
  the libpq connection string and streamkit's own parameters, shown masked.
- :func:`table_identifier`: a table name checked as an SQL identifier (``name`` or
  ``schema.name``) before it is spliced into a statement.
- :func:`translate_pg_error`: a psycopg error as a streamkit error that says what
  failed, names the setting to check, and never contains the password.
- :func:`execute_in_transaction`: one statement in the caller's own transaction, on a
  psycopg connection or a SQLAlchemy connection or session.
- :func:`schema_block` / :func:`ensure_schema`: create tables on first use, serialized
  across processes by an advisory lock; nothing is created when the table exists (no
  DDL right needed then).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from streamkit.client.config import MASK
from streamkit.dedup.base import mask_url
from streamkit.errors import StreamkitError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = [
    "SCHEMES",
    "PostgresURL",
    "driver_error",
    "ensure_schema",
    "execute_in_transaction",
    "import_psycopg",
    "schema_block",
    "table_exists",
    "table_identifier",
    "translate_pg_error",
]

SCHEMES = ("postgresql", "postgres")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
# Advisory lock keys are hashtext() of this prefix and a table name.
LOCK_PREFIX = "streamkit:"


def import_psycopg(error_type: type[Exception] = ImportError) -> ModuleType:
    """The psycopg module (psycopg-pool checked too), or ``error_type`` naming the extra."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - every user of this module pools connections
    except ImportError as exc:
        raise error_type(
            f"streamkit's PostgreSQL support needs psycopg 3 and psycopg-pool ({exc.name} "
            "is not installed) (hint: pip install 'streamkit[postgres]')"
        ) from None
    return psycopg


def table_identifier(name: str) -> sql.Identifier:
    """``name`` (or ``schema.name``) as a quoted identifier, after checking its form.

    Raises:
        ValueError: not one or two dot-separated words of letters, digits and
            underscores (at most 48 characters each, not starting with a digit).
    """
    parts = name.split(".")
    if not (1 <= len(parts) <= 2 and all(_IDENTIFIER.fullmatch(part) for part in parts)):
        raise ValueError(
            f"table name {name!r} is not an identifier (hint: letters, digits and "
            "underscores, at most 48 characters, optionally schema-qualified: app.events)"
        )
    from psycopg import sql

    return sql.Identifier(*parts)


def relation_name(name: str) -> str:
    """The last part of a (possibly schema-qualified) table name, for index names."""
    return name.rpartition(".")[2]


@dataclass
class PostgresURL:
    """A ``postgresql://`` URL: libpq's connection string plus streamkit's parameters.

    ``params`` holds the query parameters streamkit understands (popped by the caller);
    every other parameter goes to libpq (``sslmode``, ``connect_timeout``, ...).
    """

    raw: str
    env_var: str
    params: dict[str, str] = field(init=False)
    masked: str = field(init=False)

    def __post_init__(self) -> None:
        self.masked = mask_url(self.raw)
        parts = urlsplit(self.raw)
        if parts.scheme not in SCHEMES:
            raise ValueError(
                f"{self.env_var}: {self.masked!r} is not a postgresql:// URL "
                "(hint: postgresql://user:password@host:5432/database)"
            )
        self.params = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._password = parts.password

    def pop(self, name: str) -> str | None:
        """Take one of streamkit's parameters out of the URL (the rest go to libpq)."""
        return self.params.pop(name, None)

    @property
    def conninfo(self) -> str:
        """The URL for libpq: streamkit's parameters removed (call after popping them)."""
        parts = urlsplit(self.raw)
        return urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(self.params), parts.fragment)
        )

    def scrub(self, text: str) -> str:
        """``text`` with the URL's password masked (libpq may echo parts of the URL)."""
        if self._password:
            return text.replace(self._password, MASK)
        return text


def _hint(exc: BaseException, env_var: str) -> str:
    text = str(exc).lower()
    name = type(exc).__name__
    if "password" in text or "authentication" in text:
        return f"check the user and password in {env_var}"
    if "does not exist" in text and "database" in text:
        return f"create the database, or fix its name in {env_var}"
    if "permission denied" in text or name == "InsufficientPrivilege":
        return (
            "the user may not read or write this table; grant it, or create the tables "
            "as their owner with `streamkit db migrate`"
        )
    if "ssl" in text or "certificate" in text:
        return f"check sslmode / sslrootcert in {env_var}"
    if name in ("PoolTimeout", "ConnectionTimeout") or "timeout" in text:
        return (
            f"the database did not answer in time: check that it runs and is reachable ({env_var})"
        )
    if name == "OperationalError" or "connect" in text or "closed" in text:
        return f"check that PostgreSQL is running and reachable at the URL in {env_var}"
    if "invalid" in text and ("uri" in text or "option" in text or "parameter" in text):
        return f"check the query parameters of {env_var}"
    return "check the database server and its log"


def translate_pg_error(
    exc: BaseException,
    operation: str,
    error_type: type[StreamkitError],
    url: PostgresURL | None = None,
) -> StreamkitError:
    """``exc`` (a psycopg or pool error) as ``error_type``: what, why, a hint; no password.

    Raise the result ``from None``: the original message may carry parts of the URL.
    """
    detail = f"{type(exc).__name__}: {str(exc).strip()}"
    where = "PostgreSQL"
    env_var = "the connection settings"
    if url is not None:
        detail = url.scrub(detail)
        where = f"PostgreSQL {url.masked!r}"
        env_var = url.env_var
    return error_type(f"{where}: {operation} failed: {detail} (hint: {_hint(exc, env_var)})")


def schema_block(table: str, statements: Sequence[sql.Composable]) -> sql.Composed:
    """One ``DO`` statement that runs ``statements`` only when ``table`` does not exist.

    Creating is serialized across processes by an advisory lock held to the end of the
    transaction, so concurrent first uses never race on the catalog. A single statement
    serves the sync and the async connection alike.
    """
    from psycopg import sql

    body = sql.SQL("; ").join(statements)
    return sql.SQL(
        "DO $streamkit$ BEGIN IF to_regclass({name}) IS NULL THEN "
        "PERFORM pg_advisory_xact_lock(hashtext({lock})); {body}; "
        "END IF; END $streamkit$"
    ).format(name=sql.Literal(table), lock=sql.Literal(LOCK_PREFIX + table), body=body)


def table_exists(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether ``table`` exists (as the connection's search path resolves it)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def ensure_schema(conn: psycopg.Connection[Any], table: str, block: sql.Composed) -> bool:
    """Run a :func:`schema_block` for ``table``; True when the table was created.

    Runs in ``conn.transaction()``: its own transaction, or a savepoint inside the
    caller's. Nothing is created, and no DDL right is needed, when the table exists.
    """
    with conn.transaction():
        existed = table_exists(conn, table)
        if not existed:
            conn.execute(block)
    return not existed


def execute_in_transaction(
    conn: Any, statement: sql.Composed, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """Run ``statement`` in ``conn``'s current transaction; its first row, if any.

    ``conn`` is a psycopg ``Connection``, a SQLAlchemy ``Connection``, or a SQLAlchemy
    ``Session`` (its ``connection()``: the session's transaction). Nothing is committed.
    """
    if hasattr(conn, "get_bind"):  # a SQLAlchemy Session
        conn = conn.connection()
    if hasattr(conn, "exec_driver_sql"):  # a SQLAlchemy Connection: same driver, same SQL
        result = conn.exec_driver_sql(statement.as_string(), dict(params))
        return result.first() if result.returns_rows else None
    cursor = conn.execute(statement, params)
    return cursor.fetchone() if cursor.description else None


def driver_error(exc: BaseException) -> BaseException | None:
    """The psycopg error behind ``exc`` (SQLAlchemy wraps it), or None if it is none."""
    cause = getattr(exc, "orig", None) or exc
    return cause if type(cause).__module__.startswith("psycopg") else None
