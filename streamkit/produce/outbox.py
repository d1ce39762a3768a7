"""Publishing from a database transaction: the transactional outbox (PostgreSQL).

A service changes its tables and records the events to publish in the same
transaction; :class:`~streamkit.produce.outbox_relay.OutboxRelay` publishes the
committed rows afterwards. Either the business change and its events are both
committed, or neither is: rows of a rolled-back transaction are never visible to the
relay, so they are never published::

    with pool.connection() as conn, conn.transaction():
        conn.execute("UPDATE orders SET state = 'paid' WHERE id = %s", (order_id,))
        Outbox(conn).add("orders", {"order_id": order_id, "state": "paid"}, key=order_id)

:meth:`Outbox.add` validates the payload and encodes it exactly as
:meth:`EventProducer.send <streamkit.produce.producer.EventProducer.send>` would (schema
from the registry, Confluent wire format), so a record that breaks its schema raises
:class:`~streamkit.errors.SchemaValidationError` naming the field, before anything is
written, and the caller can roll back.

Order per key
-------------

Rows of one (topic, key) are published in commit order. ``add`` takes a transaction
advisory lock on the key's hash before its row gets its id, so a second transaction
adding to the same key waits until the first commits or rolls back: per key, id order
is commit order. The relay publishes rows in id order, per lane (the key's hash modulo
:data:`LANES`), one relay per lane at a time. Transactions adding events for the same
key therefore run one after the other from their first ``add`` on; different keys never
wait for each other (except on a rare 32-bit hash collision).

Table (``streamkit db migrate`` creates it; so does the relay at start and
:class:`Outbox` on first use of a connection outside a transaction)::

    id bigint identity, lane smallint, topic text, key bytea, value bytea,
    event_id text, event_type text, event_time bigint (epoch ms),
    headers jsonb ([[name, text], ...]: the caller's, then the trace context),
    created_at timestamptz, sent_at timestamptz (NULL while pending)

Traces
------

``add`` stores the current OpenTelemetry context (W3C ``traceparent``/``tracestate``,
``baggage``) in the row's headers, so an event added inside a handler call stays in
that call's trace: the relay's ``publish`` span is its child, and the consumer of the
published record continues it (see :mod:`streamkit.observability.tracing`).
"""

from __future__ import annotations

import threading
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from streamkit.client.postgres import (
    driver_error,
    ensure_schema,
    execute_in_transaction,
    import_psycopg,
    relation_name,
    schema_block,
    table_identifier,
)
from streamkit.errors import OutboxError
from streamkit.observability.tracing import inject_current
from streamkit.serde.encoders import EventEncoders
from streamkit.serde.events import Event, EventEncoder, Headers

if TYPE_CHECKING:
    from psycopg import sql

__all__ = [
    "DEFAULT_TABLE",
    "LANES",
    "EncoderSource",
    "Outbox",
    "create_outbox_table",
    "default_encoders",
    "row_headers",
    "stored_headers",
]

DEFAULT_TABLE = "streamkit_outbox"
#: Rows are spread over this many lanes by key; one relay publishes a lane at a time.
LANES = 64


class EncoderSource(Protocol):
    """What encodes events for a topic: :class:`EventEncoders` or an ``EventProducer``."""

    def encoder(self, topic: str, schema: str | None = None) -> EventEncoder:
        """The validating encoder for ``topic``."""
        ...


def _int32(value: int) -> int:
    """An unsigned 32-bit hash as PostgreSQL's signed ``integer``."""
    return value - (1 << 32) if value >= 1 << 31 else value


def lock_namespace(table: str, purpose: str) -> int:
    """The first key of the two-key advisory locks ``purpose`` takes on ``table``."""
    return _int32(zlib.crc32(f"streamkit:{purpose}:{table}".encode()))


def lane_of(topic: str, key: bytes | None, event_id: str) -> int:
    """The lane of a row: by topic and key; rows without a key spread by event id."""
    basis = topic.encode() + b"\0" + key if key is not None else event_id.encode()
    return zlib.crc32(basis) % LANES


@lru_cache(maxsize=16)
def outbox_statements(table: str) -> dict[str, sql.Composed]:
    """The outbox's SQL for one table (validated and quoted once)."""
    from psycopg import sql

    t = table_identifier(table)
    name = relation_name(table)
    schema = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " lane smallint NOT NULL, topic text NOT NULL, key bytea, value bytea NOT NULL,"
            " event_id text NOT NULL, event_type text NOT NULL, event_time bigint NOT NULL,"
            " headers jsonb,"
            " created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)"
        ).format(t=t),
        # The relay's scan: pending rows in id order, whatever the sent history.
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (id) WHERE sent_at IS NULL").format(
            i=sql.Identifier(f"{name}_pending"), t=t
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING brin (sent_at)").format(
            i=sql.Identifier(f"{name}_sent_at"), t=t
        ),
    ]
    insert = sql.SQL(
        "INSERT INTO {t} (lane, topic, key, value, event_id, event_type, event_time, headers)"
        " SELECT %(lane)s, %(topic)s, %(key)s, %(value)s, %(event_id)s, %(event_type)s,"
        " %(event_time)s, %(headers)s FROM wake"
    ).format(t=t)
    wake = sql.SQL("wake AS MATERIALIZED (SELECT pg_notify(%(channel)s, ''))")
    return {
        "schema": schema_block(table, schema),
        # Tables created before rows carried headers gain the column (`db migrate`).
        "has_headers": sql.Composed(
            [
                sql.SQL(
                    "SELECT EXISTS (SELECT FROM pg_attribute"
                    " WHERE attrelid = to_regclass(%(table)s)"
                    " AND attname = 'headers' AND NOT attisdropped)"
                )
            ]
        ),
        "add_headers": sql.SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS headers jsonb").format(
            t=t
        ),
        # The key's lock is taken before the row's id is drawn (the CTE runs first).
        "add_keyed": sql.SQL(
            "WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock(%(ns)s, %(key_hash)s)),"
            " {wake} {insert}, ordered"
        ).format(wake=wake, insert=insert),
        "add": sql.SQL("WITH {wake} {insert}").format(wake=wake, insert=insert),
        "listen": sql.SQL("LISTEN {c}").format(c=sql.Identifier(name)),
        # The lanes of the oldest pending rows that no other relay holds; each lane's
        # lock is tried once and kept to the end of this relay's transaction.
        "lanes": sql.SQL(
            "SELECT lane FROM (SELECT DISTINCT lane FROM (SELECT lane FROM {t}"
            " WHERE sent_at IS NULL ORDER BY id LIMIT %(scan)s) oldest) candidates"
            " WHERE pg_try_advisory_xact_lock(%(ns)s, lane)"
        ).format(t=t),
        # Read after the locks were taken, so no row another relay just sent is seen.
        "rows": sql.SQL(
            "SELECT id, lane, topic, key, value, event_id, event_type, event_time, headers"
            " FROM {t}"
            " WHERE sent_at IS NULL AND lane = ANY(%(lanes)s) ORDER BY id LIMIT %(limit)s"
        ).format(t=t),
        "mark": sql.SQL("UPDATE {t} SET sent_at = now() WHERE id = ANY(%(ids)s)").format(t=t),
        "delete": sql.SQL("DELETE FROM {t} WHERE id = ANY(%(ids)s)").format(t=t),
        "purge_sent": sql.SQL(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t}"
            " WHERE sent_at < now() - make_interval(secs => %(retention)s) LIMIT %(limit)s)"
        ).format(t=t),
        "backlog": sql.SQL(
            "SELECT count(*), COALESCE(extract(epoch FROM now() - min(created_at)), 0)"
            " FROM {t} WHERE sent_at IS NULL"
        ).format(t=t),
    }


def checked_statements(table: str) -> dict[str, sql.Composed]:
    """:func:`outbox_statements`, a bad table name raised as :class:`OutboxError`."""
    try:
        return outbox_statements(table)
    except ValueError as exc:
        raise OutboxError(str(exc)) from None


def create_outbox_table(conn: Any, table: str = DEFAULT_TABLE) -> bool:
    """Create the outbox table and its indexes unless it exists (an existing table
    gains the columns added since); True when created."""
    statements = checked_statements(table)
    created = ensure_schema(conn, table, statements["schema"])
    if not created:
        with conn.transaction():
            found = conn.execute(statements["has_headers"], {"table": table}).fetchone()
            if not (found and found[0]):
                conn.execute(statements["add_headers"])
    return created


def stored_headers(headers: Headers) -> list[list[str | None]] | None:
    """``headers`` as the row's JSON (``[[name, text], ...]``), None when empty.

    Raises:
        OutboxError: a value is bytes that are not UTF-8 text (JSON cannot keep it).
    """
    stored: list[list[str | None]] = []
    for name, value in headers:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise OutboxError(
                    f"header {name!r} is not UTF-8 text; outbox rows keep text headers only"
                ) from None
        stored.append([name, value])
    return stored or None


def row_headers(stored: list[list[str | None]] | None) -> Headers:
    """The headers a row's JSON holds, as the producer takes them."""
    return [(name or "", value) for name, value in stored or ()]


_DEFAULT_LOCK = threading.Lock()
_default: EventEncoders | None = None


def default_encoders() -> EventEncoders:
    """The process's encoders from ``STREAMKIT_*`` settings and ``./schemas`` (made once)."""
    global _default
    with _DEFAULT_LOCK:
        if _default is None:
            _default = EventEncoders()
        return _default


# (server, table) pairs whose table this process created or found.
_READY: set[tuple[str, str]] = set()


class Outbox:
    """Writes events to publish into the caller's database transaction.

    Args:
        conn: the connection of the business transaction: a psycopg ``Connection``, or
            a SQLAlchemy ``Connection`` or ``Session``. Nothing is committed here.
        encoders: validates and encodes payloads: an ``EventProducer``, an
            :class:`EventEncoders`, or (default) :func:`default_encoders`.
        table: the outbox table (``name`` or ``schema.name``).
    """

    def __init__(
        self,
        conn: Any,
        *,
        encoders: EncoderSource | None = None,
        table: str = DEFAULT_TABLE,
    ) -> None:
        self._conn = conn
        self._encoders = encoders
        self.table = table
        self._sql = checked_statements(table)
        self._ns = lock_namespace(table, "outbox-key")
        self._channel = relation_name(table)
        self._ensure_table()

    def __repr__(self) -> str:
        return f"Outbox(table={self.table!r})"

    def _ensure_table(self) -> None:
        """Create the table on first use (psycopg connections; once per process and table)."""
        info = getattr(self._conn, "info", None)
        if info is None or not hasattr(info, "transaction_status"):
            return  # SQLAlchemy: the table comes from `streamkit db migrate`
        psycopg = import_psycopg()
        server = f"{info.host}:{info.port}/{info.dbname}"
        if (server, self.table) in _READY:
            return
        idle = info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            created = ensure_schema(self._conn, self.table, self._sql["schema"])
        except psycopg.Error as exc:
            raise _error(exc, f"creating the outbox table {self.table}") from exc
        # A table found, or created and committed on its own, stays: skip the check from
        # now on. One created inside the caller's transaction may still be rolled back.
        if idle or not created:
            _READY.add((server, self.table))

    def add(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | bytes | None = None,
        schema: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        timestamp: int | None = None,
        headers: Headers | None = None,
    ) -> str:
        """Validate and encode an event, and insert it into the caller's transaction.

        Args:
            topic: destination topic.
            payload: the event payload (a dict matching the schema's payload record).
            key: partitioning key; events with one key are published in commit order.
            schema: full name of the value schema (default: the topic's).
            event_type: default: the schema's short name.
            event_id: default: a new UUID4. The relay publishes the row with this id
                (also when a crash makes it publish the row twice).
            timestamp: epoch milliseconds; default: now.
            headers: extra headers (text values), published after the envelope headers;
                the current trace context is added to them.

        Returns:
            The event id.

        Raises:
            SchemaValidationError: the payload breaks its schema (the field is named);
                nothing was written.
            OutboxError: the row could not be inserted (the transaction is aborted), or
                a header value is not text.
        """
        encoder = (self._encoders or default_encoders()).encoder(topic, schema)
        fields: dict[str, Any] = {"payload": payload, "type": event_type or encoder.short_name}
        if event_id is not None:
            fields["id"] = event_id
        if timestamp is not None:
            fields["timestamp"] = timestamp
        event = Event(**fields)
        value = encoder.encode(event)
        row_extra: Headers = list(headers or ())
        inject_current(row_extra)
        key_bytes = key.encode() if isinstance(key, str) else key
        params = {
            "channel": self._channel,
            "lane": lane_of(topic, key_bytes, event.id),
            "topic": topic,
            "key": key_bytes,
            "value": value,
            "event_id": event.id,
            "event_type": event.type,
            "event_time": event.timestamp,
            "headers": _json(stored_headers(row_extra)),
        }
        statement = self._sql["add"]
        if key_bytes is not None:
            statement = self._sql["add_keyed"]
            params["ns"] = self._ns
            params["key_hash"] = _int32(zlib.crc32(topic.encode() + b"\0" + key_bytes))
        try:
            execute_in_transaction(self._conn, statement, params)
        except Exception as exc:
            cause = driver_error(exc)
            if cause is None:
                raise
            raise _error(cause, f"adding event {event.id} for {topic}") from exc
        return event.id


def _json(value: Any) -> Any:
    """``value`` as a parameter psycopg sends as ``jsonb`` (None stays NULL)."""
    if value is None:
        return None
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _error(cause: BaseException, what: str) -> OutboxError:
    missing = type(cause).__name__ in ("UndefinedTable", "UndefinedColumn")
    hint = (
        "create or upgrade the table first: `streamkit db migrate`, or create_outbox_table(conn)"
        if missing
        else "check the connection and the database log"
    )
    return OutboxError(f"{what} failed: {type(cause).__name__}: {cause} (hint: {hint})")
