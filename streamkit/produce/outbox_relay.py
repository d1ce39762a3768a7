"""OutboxRelay: publishes committed outbox rows to Kafka, in commit order per key.

Each batch is one database transaction:

1. take the lanes of the oldest pending rows that no other relay holds (transaction
   advisory locks, tried once per lane: several relays share the lanes, and a lane is
   never published by two at once);
2. read those lanes' pending rows in id order (which is commit order per key, see
   :mod:`streamkit.produce.outbox`);
3. publish them with the idempotent producer and wait for the acknowledgements;
4. mark the acknowledged rows sent (or delete them) and commit, releasing the lanes.

A relay killed between 3 and 4 leaves its rows pending: the next relay publishes them
again, with the same event id, so a consumer with a dedup store handles each once. A
row whose delivery failed stays pending together with every later row of its lane in
the batch, so a retry publishes them in their order again.

The relay waits for work on ``LISTEN`` (``Outbox.add`` notifies at commit), and looks
at the table every ``poll_interval_s`` anyway. A database that goes away is waited out
with backoff (logged once on each change); Kafka errors leave rows pending and are
retried after a pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from streamkit.client.closing import Closing
from streamkit.client.postgres import PostgresURL, import_psycopg, translate_pg_error
from streamkit.consume.processing import install_stop_signals, restore_signals
from streamkit.errors import ConfigError, ConfigProblem, KafkaClientError, OutboxError
from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.outbox import (
    DEFAULT_TABLE,
    checked_statements,
    create_outbox_table,
    lock_namespace,
    row_headers,
)
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, env_var_name, load_settings

if TYPE_CHECKING:
    import psycopg
    from opentelemetry.trace import TracerProvider

    from streamkit.observability.metrics import OutboxMetrics, StreamkitMetrics

__all__ = ["OutboxRelay", "RelayStats", "settle"]

log = logging.getLogger(__name__)

OUTBOX_URL_ENV = env_var_name("outbox", "url")
_CONNECT_TIMEOUT_S = 10
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 5.0
_BACKLOG_EVERY_S = 5.0
_PURGE_EVERY_S = 60.0
_PURGE_BATCH = 5000
# The lane scan looks this many times the batch size ahead for lanes another relay
# does not hold.
_SCAN_FACTOR = 4


@dataclass
class RelayStats:
    """Counters of one relay run."""

    published: int = 0
    batches: int = 0
    publish_errors: int = 0
    database_outages: int = 0


def settle(
    outcomes: Sequence[tuple[tuple[Any, ...], BaseException | None]], reasons: dict[str, int]
) -> tuple[list[int], dict[str, int]]:
    """The ids to mark from a batch's delivery outcomes (rows in id order), and failures
    counted by reason into ``reasons``.

    A row that failed blocks its lane: the lane's later rows stay pending too, even if
    Kafka acknowledged them, so that a retry publishes the lane in its order again.
    """
    acknowledged: list[int] = []
    blocked: set[int] = set()
    for row, error in outcomes:
        row_id, lane, event_id = row[0], row[1], row[5]
        if lane not in blocked and error is None:
            acknowledged.append(row_id)
            continue
        if lane in blocked:
            reason = "blocked_by_earlier_failure"
        else:
            reason = getattr(error, "code", None) or type(error).__name__
            log.warning("outbox relay: event %s not published: %s", event_id, error)
        reasons[reason] = reasons.get(reason, 0) + 1
        blocked.add(lane)
    return acknowledged, reasons


class OutboxRelay(Closing):
    """Publishes the committed rows of an outbox table (embed it, or run
    ``streamkit outbox relay``).

    Args:
        url: ``postgresql://user:password@host:port/db?table=streamkit_outbox``;
            default: ``STREAMKIT_OUTBOX__URL``.
        settings: resolved settings (default: from the environment); the ``outbox``
            section supplies what the keywords below leave unset.
        producer: the producer to publish with (default: one made from ``settings``,
            idempotent whatever they say).
        metrics: collectors for pending rows, age of the oldest, published, errors.
        on_sent: ``"mark"`` (set ``sent_at``; rows are purged after
            ``sent_retention_s``) or ``"delete"``.
        batch_size: most rows one batch publishes.
        poll_interval_s: longest wait between two looks at the table.
        tracer_provider: records a ``publish`` span per row, the child of the context
            the row kept (default: the global provider, when one is set); only for the
            producer the relay makes.

    Raises:
        ConfigError: no URL is given or set.
        OutboxError: the database cannot be reached or refuses the login (at start,
            naming ``STREAMKIT_OUTBOX__URL``, the password masked).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: StreamkitSettings | None = None,
        producer: EventProducer | None = None,
        metrics: StreamkitMetrics | None = None,
        on_sent: Literal["mark", "delete"] | None = None,
        batch_size: int | None = None,
        poll_interval_s: float | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        options = self.settings.outbox
        raw = url or (options.url.get_secret_value() if options.url else None)
        if not raw:
            problem = ConfigProblem(
                OUTBOX_URL_ENV,
                "is required to relay the outbox",
                "postgresql://user:password@host:5432/database?table=streamkit_outbox",
            )
            raise ConfigError([problem])
        self._psycopg = import_psycopg()
        try:
            self._url = PostgresURL(raw, OUTBOX_URL_ENV)
        except ValueError as exc:
            raise ConfigError([ConfigProblem(OUTBOX_URL_ENV, str(exc))]) from None
        self.table = self._url.pop("table") or DEFAULT_TABLE
        self._sql = checked_statements(self.table)
        self._lane_ns = lock_namespace(self.table, "outbox-lane")
        self.on_sent = on_sent or options.on_sent
        self.batch_size = batch_size or options.batch_size
        self.poll_interval_s = poll_interval_s or options.poll_interval_s
        self._retention_s = options.sent_retention_s
        self.stats = RelayStats()
        self._metrics: OutboxMetrics | None = metrics.outbox(self.table) if metrics else None
        self._stopping = threading.Event()
        # What a database that went away raises (a failed reconnect: OutboxError).
        self._outage_errors = (
            self._psycopg.OperationalError,
            self._psycopg.InterfaceError,
            OutboxError,
        )
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._next_backlog_at = 0.0
        self._next_purge_at = 0.0
        self._connect()  # fail now, naming the cause, on a wrong URL or password
        self._owns_producer = producer is None
        self._producer_metrics = metrics
        self._tracer_provider = tracer_provider
        self._producer = producer or self._new_producer()

    def __repr__(self) -> str:
        return f"OutboxRelay(url={self._url.masked!r}, table={self.table!r})"

    def _new_producer(self) -> EventProducer:
        return EventProducer(
            self.settings,
            schemas=SchemaSet({}),
            metrics=self._producer_metrics,
            config={"enable.idempotence": True},
            tracer_provider=self._tracer_provider,
        )

    def _after_kafka_error(self, exc: KafkaClientError) -> None:
        """A fatal producer error leaves the producer unusable: make a new one (if ours)."""
        if exc.fatal and self._owns_producer:
            log.warning("outbox relay: producer failed for good (%s); making a new one", exc)
            with suppress(KafkaClientError):
                self._producer.close(timeout=5)
            self._producer = self._new_producer()

    # Connections ----------------------------------------------------------------------

    def _connect(self) -> None:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self._url.conninfo, connect_timeout=_CONNECT_TIMEOUT_S)
            try:
                create_outbox_table(conn, self.table)
                listener = psycopg.connect(
                    self._url.conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
                )
            except BaseException:
                conn.close()
                raise
            listener.execute(self._sql["listen"])
        except psycopg.Error as exc:
            raise translate_pg_error(exc, "connect", OutboxError, self._url) from None
        self._conn, self._listener = conn, listener

    def _disconnect(self) -> None:
        for conn in (self._conn, self._listener):
            if conn is not None:
                conn.close()
        self._conn = self._listener = None

    # Run loop -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in flight."""
        self._stopping.set()

    def run(
        self, *, idle_timeout_s: float | None = None, handle_signals: bool = True
    ) -> RelayStats:
        """Relay until :meth:`stop`, SIGTERM/SIGINT, or ``idle_timeout_s`` without rows."""
        previous = install_stop_signals(self.stop, "outbox relay") if handle_signals else {}
        backoff = _BACKOFF_START_S
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                try:
                    if self._conn is None:
                        self._connect()
                        log.info("outbox relay: database %s reachable again", self._url.masked)
                    taken, failed = self.relay_batch()
                    self._housekeeping()
                    if not failed:
                        backoff = _BACKOFF_START_S
                    if taken:
                        idle_since = time.monotonic()
                    if failed:
                        self._stopping.wait(backoff)  # Kafka trouble: don't spin on it
                        backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    elif taken < self.batch_size:
                        if idle_timeout_s is not None and (
                            time.monotonic() - idle_since > idle_timeout_s
                        ):
                            break
                        self._wait_for_work()
                except self._outage_errors as exc:
                    if self._conn is not None:
                        self.stats.database_outages += 1
                        log.warning("outbox relay: database unavailable, waiting: %s", exc)
                    self._disconnect()
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
        finally:
            restore_signals(previous)
        return self.stats

    def _wait_for_work(self) -> None:
        assert self._listener is not None
        # Returns at the first notification (or one queued while the batch ran).
        for _ in self._listener.notifies(timeout=self.poll_interval_s, stop_after=1):
            pass

    def relay_batch(self) -> tuple[int, int]:
        """Publish one batch; (rows taken, rows that failed and stay pending)."""
        conn = self._conn
        if conn is None:
            raise OutboxError("the relay is not connected")
        with conn.transaction():
            lanes = conn.execute(
                self._sql["lanes"], {"ns": self._lane_ns, "scan": self.batch_size * _SCAN_FACTOR}
            ).fetchall()
            if not lanes:
                return 0, 0
            rows = conn.execute(
                self._sql["rows"], {"lanes": [lane for (lane,) in lanes], "limit": self.batch_size}
            ).fetchall()
            sent, failures = self._publish(rows)
            if sent:
                conn.execute(
                    self._sql["delete" if self.on_sent == "delete" else "mark"], {"ids": sent}
                )
        self.stats.batches += 1
        self.stats.published += len(sent)
        failed = len(rows) - len(sent)
        self.stats.publish_errors += failed
        if self._metrics is not None:
            self._metrics.published(len(sent))
            for reason, count in failures.items():
                self._metrics.failed(reason, count)
        return len(rows), failed

    def _publish(self, rows: list[tuple[Any, ...]]) -> tuple[list[int], dict[str, int]]:
        """Send rows in order and wait; the ids acknowledged, and failures by reason."""
        sent: list[tuple[tuple[Any, ...], DeliveryFuture]] = []
        reasons: dict[str, int] = {}
        try:
            for row in rows:
                _, _, topic, key, value, event_id, event_type, event_time, headers = row
                future = self._producer.send_encoded(
                    topic,
                    value,
                    key=key,
                    event_id=event_id,
                    event_type=event_type,
                    timestamp=event_time,
                    # Always a list: a row without a trace context starts a new trace
                    # rather than joining whatever the relay's thread has current.
                    headers=row_headers(headers),
                )
                sent.append((row, future))
        except KafkaClientError as exc:
            # Rows not handed over stay pending, as if they had failed.
            reasons[exc.code or type(exc).__name__] = len(rows) - len(sent)
            log.warning("outbox relay: producer refused a row: %s", exc)
            self._after_kafka_error(exc)
        timeout = self.settings.producer.delivery_timeout_ms / 1000 + 5
        try:
            self._producer.flush(timeout)
        except KafkaClientError as exc:  # fatal: the futures report their rows failed
            self._after_kafka_error(exc)
        outcomes = [
            (row, future.exception(0) if future.done() else TimeoutError("not acknowledged"))
            for row, future in sent
        ]
        return settle(outcomes, reasons)

    def _housekeeping(self) -> None:
        """Sample the backlog for the metrics; purge old sent rows (bounded)."""
        now = time.monotonic()
        conn = self._conn
        assert conn is not None
        if self._metrics is not None and now >= self._next_backlog_at:
            self._next_backlog_at = now + _BACKLOG_EVERY_S
            pending, age = self.backlog()
            self._metrics.backlog(pending, age)
        if self.on_sent == "mark" and now >= self._next_purge_at:
            with conn.transaction():
                purged = conn.execute(
                    self._sql["purge_sent"],
                    {"retention": self._retention_s, "limit": _PURGE_BATCH},
                ).rowcount
            full = purged >= _PURGE_BATCH
            self._next_purge_at = now if full else now + _PURGE_EVERY_S

    def backlog(self) -> tuple[int, float]:
        """(pending rows, age in seconds of the oldest pending row; 0 when none)."""
        conn = self._conn
        if conn is None:
            raise OutboxError("the relay is not connected")
        with conn.transaction():
            row = conn.execute(self._sql["backlog"]).fetchone()
        assert row is not None
        return int(row[0]), float(row[1])

    def close(self) -> None:
        """Flush and close the producer (when the relay made it) and the connections."""
        try:
            if self._owns_producer:
                self._producer.close()
        finally:
            self._disconnect()
