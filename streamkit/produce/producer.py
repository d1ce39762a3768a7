"""EventProducer: schema-enforced, idempotent producing.

Each record is validated against its Avro schema before it leaves the process; the
schema is parsed once and its registry id cached, so the per-record path is: validate,
encode with fastavro, hand to librdkafka. Delivery reports settle the
:class:`~streamkit.produce.delivery.DeliveryFuture` returned by :meth:`send`; they are served
inline (a background poller cost every send a GIL hand-over): every few sends, by
:meth:`flush`, :meth:`poll` and :meth:`close`, and by whoever waits on a future; a helper
thread (``streamkit-producer-idle``) serves them only while the producer sits idle.
Done-callbacks therefore run in the thread that serves the report.

Coroutines ``await`` :meth:`EventProducer.send_async` instead: the same send, with an
asyncio future resolved from the delivery report (``call_soon_threadsafe``). While such
futures are pending, the same helper thread serves reports as they arrive;
there is no thread per send, and the synchronous path is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamkit.client.closing import Closing
from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import translate_kafka_error
from streamkit.errors import DeliveryError, KafkaClientError
from streamkit.observability.tracing import PublishSpan, tracing_for
from streamkit.produce.delivery import DeliveryFuture, DeliveryReport
from streamkit.serde.encoders import EventEncoders
from streamkit.serde.events import EventEncoder, Headers, envelope_headers, new_event_id
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, load_settings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from streamkit.observability.metrics import ProducerMetrics, StreamkitMetrics

__all__ = ["EventProducer"]

log = logging.getLogger(__name__)

_QUEUE_FULL_WAIT_S = 0.05
# Serve delivery reports every this many sends: often enough that the report queue
# stays short and callbacks run promptly, rarely enough that poll's cost is shared.
_POLL_EVERY = 8
# An idle producer is served by a helper thread at this pace, so that delivery callbacks,
# statistics (metrics) and errors still arrive when nothing calls send, poll or flush.
IDLE_SERVE_INTERVAL_S = 0.5
# While coroutines await deliveries, the helper thread waits on librdkafka this long per
# poll (a poll returns as soon as it served a report).
ASYNC_SERVE_S = 0.05
Key = str | bytes | None


def _key_bytes(key: Key) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class EventProducer(Closing):
    """Produces events to Kafka with their schemas enforced.

    Args:
        settings: resolved settings (default: :func:`~streamkit.settings.load_settings`).
        schemas: the loaded schemas or their directory (default ``schemas/``).
        registry: the schema registry face (default: built from settings).
        auto_register: register a topic's schema on first use (else look it up).
        config: extra client properties set by the caller; they win over settings.
        metrics: Prometheus collectors to report to (produced, delivered, delivery
            errors, queue depth); None costs nothing per record.
        tracer_provider: OpenTelemetry provider for ``publish`` spans and ``traceparent``
            headers (default: the global one, if the service set one; see
            :mod:`streamkit.observability.tracing`). Without either, nothing is traced.

    Use as a context manager, or call :meth:`close`, which waits until every record
    handed over was acknowledged or failed.
    """

    def __init__(
        self,
        settings: StreamkitSettings | None = None,
        *,
        schemas: SchemaSet | str | Path = "schemas",
        registry: SchemaRegistry | None = None,
        auto_register: bool = True,
        config: Mapping[str, Any] | None = None,
        metrics: StreamkitMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.encoders = EventEncoders(
            self.settings, schemas=schemas, registry=registry, auto_register=auto_register
        )
        self.schemas = self.encoders.schemas
        self.registry = self.encoders.registry
        self._tracing = tracing_for(tracer_provider, self.settings.kafka.client_id)
        self._metrics: ProducerMetrics | None = (
            metrics.producer(self.settings.kafka.client_id) if metrics is not None else None
        )
        overrides = {"error_cb": self._on_error, "logger": log, **(config or {})}
        # Fail now, naming the cause, rather than time out records minutes later.
        self._producer, _ = connect(
            Producer,
            client_config(
                self.settings,
                "producer",
                stats_cb=self._metrics.on_statistics if self._metrics else None,
                overrides=overrides,
            ),
            self.settings,
            operation="produce",
        )
        self._encoders = self.encoders.cache
        self._fatal: KafkaClientError | None = None
        self._closed = False
        self._released = False
        self._last_served = time.monotonic()
        self._idle_stop = threading.Event()
        self._serve_wake = threading.Event()
        self._awaited_lock = threading.Lock()
        self._awaited = 0  # send_async calls waiting for their report
        self._idle_server = threading.Thread(
            target=self._serve_while_idle, name="streamkit-producer-idle", daemon=True
        )
        self._idle_server.start()
        self._unpolled = 0
        self._serve = self.poll  # one bound method shared by every future
        if self.settings.producer.transactional_id is not None:
            # TransactionalProcessor drives the transactions on .client; they start here.
            self._call("init transactions", self._producer.init_transactions, 30)

    def __repr__(self) -> str:
        return (
            f"EventProducer(bootstrap={self.settings.kafka.bootstrap_servers!r}, "
            f"client_id={self.settings.kafka.client_id!r})"
        )

    @property
    def client(self) -> Producer:
        """The underlying confluent-kafka producer."""
        return self._producer

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = translate_kafka_error(error, operation="produce")
            log.error("fatal producer error: %s", self._fatal)
        else:
            log.warning("producer: %s: %s", error.name(), error.str())

    def poll(self, timeout: float = 0) -> int:
        """Serve pending delivery reports (settling futures, running callbacks).

        :meth:`send` does this every few records, waiting on a future does it too, and
        a helper thread does it when the producer sits idle. Returns how many reports
        were served.

        Raises:
            KafkaClientError: the producer met a fatal error (e.g. an ACL refuses the
                idempotent producer id); it names the cause, after the reports it
                failed were served.
        """
        if self._released:  # closed: every report was served before the release
            if self._fatal is not None:
                raise self._fatal
            return 0
        try:
            served: int = self._producer.poll(timeout)
        except KafkaException as exc:
            raise self._fatal_from(exc) from exc
        self._last_served = time.monotonic()
        if self._fatal is not None:
            raise self._fatal
        return served

    def _fatal_from(self, exc: KafkaException) -> KafkaClientError:
        if self._fatal is None:
            self._fatal = translate_kafka_error(exc.args[0], operation="produce")
        return self._fatal

    def _serve_while_idle(self) -> None:
        # The hot path serves reports inline (no thread hand-over per record); this only
        # steps in when nobody served them for a while, or while coroutines await them.
        while not self._idle_stop.is_set():
            if self._awaited:
                # A fatal error is kept by poll: send() and the futures raise it.
                with suppress(KafkaClientError):
                    self.poll(ASYNC_SERVE_S)
                continue
            self._serve_wake.wait(IDLE_SERVE_INTERVAL_S)
            self._serve_wake.clear()
            if not self._awaited and time.monotonic() - self._last_served >= IDLE_SERVE_INTERVAL_S:
                with suppress(KafkaClientError):
                    self.poll(0)

    def encoder(self, topic: str, schema: str | None = None) -> EventEncoder:
        """The encoder for ``topic`` (registering or looking up its schema once).

        Args:
            topic: destination topic.
            schema: full name of the value schema; default: the schema that declares
                ``streamkit.topic`` = ``topic``.
        """
        return self.encoders.encoder(topic, schema)

    def send(
        self,
        topic: str,
        payload: Any,
        *,
        key: Key = None,
        event_type: str | None = None,
        event_id: str | None = None,
        timestamp: int | None = None,
        headers: Headers | None = None,
        schema: str | None = None,
    ) -> DeliveryFuture:
        """Validate, encode and send one event; return its delivery future.

        Args:
            topic: destination topic.
            payload: the event payload: a dict matching the schema's payload record, or
                a pydantic model of it (its ``model_dump()`` is what the schema checks).
            key: partitioning key; records with one key keep their order.
            event_type: default: the schema's short name.
            event_id: default: a new UUID4; re-use an id to re-send the same event.
            timestamp: epoch milliseconds; default: now.
            headers: extra headers, after the envelope headers.
            schema: full name of the value schema (default: the topic's).

        Raises:
            SchemaValidationError: the record breaks its schema; nothing was sent.
            KafkaClientError: the client cannot take the record (fatal error, too large).
        """
        if self._fatal is not None:
            raise self._fatal
        encoder = self._encoders.get((topic, schema)) or self.encoder(topic, schema)
        # The Event dataclass is skipped on purpose: this is the per-record hot path.
        event_type = event_type or encoder.short_name
        event_id = event_id or new_event_id()
        if timestamp is None:
            timestamp = time.time_ns() // 1_000_000
        span = self._tracing.publish(topic, key, event_id)  # records nothing untraced
        try:
            value = encoder.encode_record(
                encoder.record_of(payload, event_type, event_id, timestamp)
            )
        except BaseException as exc:
            span.fail(exc)
            span.end()
            raise
        return self._hand_over(span, topic, value, key, event_id, event_type, timestamp, headers)

    def _hand_over(
        self,
        span: PublishSpan,
        topic: str,
        value: bytes,
        key: Key,
        event_id: str,
        event_type: str,
        timestamp: int,
        headers: Headers | None,
    ) -> DeliveryFuture:
        """Write the envelope and trace headers and hand the record to librdkafka, in
        ``span`` (ended here)."""
        try:
            future = DeliveryFuture(event_id, self._serve)
            all_headers = envelope_headers(event_id, event_type, timestamp, headers)
            span.inject(all_headers)
            self._produce(topic, value, _key_bytes(key), all_headers, future)
        except BaseException as exc:
            span.fail(exc)
            raise
        finally:
            span.end()
        return future

    def send_encoded(
        self,
        topic: str,
        value: bytes,
        *,
        key: Key,
        event_id: str,
        event_type: str,
        timestamp: int,
        headers: Headers | None = None,
    ) -> DeliveryFuture:
        """Send a value :meth:`encoder` encoded earlier (e.g. an outbox row); its future.

        The envelope headers are written from ``event_id``, ``event_type`` and
        ``timestamp``, as :meth:`send` writes them. Traced, the ``publish`` span's parent
        is the trace context found in ``headers`` (the one an outbox row kept; none in
        them: a new trace; ``headers=None``: the current context), and the record
        carries the span's context instead.
        """
        if self._fatal is not None:
            raise self._fatal
        span = self._tracing.publish(topic, key, event_id, parent=headers)
        return self._hand_over(span, topic, value, key, event_id, event_type, timestamp, headers)

    async def send_async(
        self,
        topic: str,
        payload: Any,
        *,
        key: Key = None,
        event_type: str | None = None,
        event_id: str | None = None,
        timestamp: int | None = None,
        headers: Headers | None = None,
        schema: str | None = None,
    ) -> DeliveryReport:
        """:meth:`send`, awaited: returns once the cluster acknowledged the record.

        The arguments are those of :meth:`send`. Awaiting does not block the event loop
        and takes no thread of its own.

        Raises:
            SchemaValidationError: the record breaks its schema; nothing was sent.
            KafkaClientError: delivery failed (usually :class:`DeliveryError`).
        """
        future = self.send(
            topic,
            payload,
            key=key,
            event_type=event_type,
            event_id=event_id,
            timestamp=timestamp,
            headers=headers,
            schema=schema,
        )
        return await self.delivered(future)

    async def delivered(self, future: DeliveryFuture) -> DeliveryReport:
        """Await the outcome of a :meth:`send` without blocking the event loop."""
        if future.done():
            return future.result(0)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DeliveryReport] = loop.create_future()

        def settle(done: DeliveryFuture) -> None:
            with suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(_resolve, waiter, done)

        with self._awaited_lock:
            self._awaited += 1
        self._serve_wake.set()
        try:
            future.add_done_callback(settle)
            return await waiter
        finally:
            with self._awaited_lock:
                self._awaited -= 1

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        future: DeliveryFuture,
    ) -> None:
        metrics = self._metrics
        on_delivery: Callable[[KafkaError | None, Message], None] = future
        if metrics is not None:

            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    metrics.delivered(topic)
                else:
                    metrics.failed(topic, error.name())
                future(error, message)

        try:
            self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            self._produce_when_room(topic, value, key, headers, on_delivery)
        except KafkaException as exc:
            raise translate_kafka_error(exc.args[0], operation="produce", topic=topic) from exc
        if metrics is not None:
            metrics.sent(topic)
        self._unpolled += 1
        if self._unpolled >= _POLL_EVERY:
            self._unpolled = 0
            self.poll(0)

    def _produce_when_room(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        timeout_ms = self.settings.producer.delivery_timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            # The local queue is full: serve acknowledgements to make room.
            self.poll(_QUEUE_FULL_WAIT_S)
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise DeliveryError(
                        f"producer queue stayed full for {timeout_ms} ms; "
                        "the cluster is not acknowledging records",
                        topic=topic,
                    ) from None
            except KafkaException as exc:
                if self._fatal is not None:
                    raise self._fatal from exc
                raise translate_kafka_error(exc.args[0], operation="produce", topic=topic) from exc

    def flush(self, timeout: float | None = None) -> int:
        """Wait until queued records are acknowledged or failed; return how many remain."""
        try:
            remaining: int = self._producer.flush(-1 if timeout is None else timeout)
        except KafkaException as exc:
            raise self._fatal_from(exc) from exc
        self._last_served = time.monotonic()
        return remaining

    def close(self, timeout: float | None = None) -> None:
        """Flush everything, then stop. Default timeout: the delivery timeout plus 5 s.

        Raises:
            DeliveryError: records were still unacknowledged when the timeout passed.
        """
        if self._closed:
            return
        wait = (
            timeout
            if timeout is not None
            else self.settings.producer.delivery_timeout_ms / 1000 + 5
        )
        try:
            remaining = self.flush(wait)
        finally:
            self._closed = True
            self._idle_stop.set()
            self._serve_wake.set()
        self.encoders.close()
        if remaining:
            raise DeliveryError(
                f"{remaining} records were still unacknowledged after {wait:.0f} s at close; "
                "their delivery futures report the outcome if it arrives"
            )
        self._release()

    def _release(self) -> None:
        # Destroy the librdkafka handle now, not whenever the garbage collector breaks the
        # producer's reference cycles: until then it keeps its broker connections and, with
        # OAUTHBEARER, goes on renewing its token (seen in the OAuth renewal test).
        self._idle_server.join(4 * IDLE_SERVE_INTERVAL_S)
        release = getattr(self._producer, "close", None)  # absent in older confluent-kafka
        if release is not None and not self._idle_server.is_alive():
            self._released = True
            try:
                release()
            except KafkaException as exc:
                if not exc.args[0].fatal():
                    raise translate_kafka_error(exc.args[0], operation="close") from exc
                # librdkafka raises its fatal error again as the handle goes; sends,
                # flush and the futures report it. Raised here it would also replace the
                # error a `with` block is leaving with.
                log.debug("producer closed after a fatal error: %s", self._fatal_from(exc))

    # Errors -------------------------------------------------------------------------

    def _call(self, action: str, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except KafkaException as exc:
            raise translate_kafka_error(exc.args[0], operation=action) from exc


def _resolve(waiter: asyncio.Future[DeliveryReport], done: DeliveryFuture) -> None:
    """Settle the awaited future of a delivery (on its loop)."""
    if waiter.done():  # cancelled by the awaiting task
        return
    error = done.exception(0)
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result(0))
