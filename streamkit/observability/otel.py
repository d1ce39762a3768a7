"""The OpenTelemetry implementation of :class:`~streamkit.observability.tracing.Tracing`.

Imported only when the ``otel`` extra is installed (see
:func:`~streamkit.observability.tracing.tracing_for`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from streamkit.errors import MissingExtraError
from streamkit.observability.tracing import ProcessSpan, PublishSpan, Tracing
from streamkit.ops.dlq.letters import HEADER_REPLAYED_FROM
from streamkit.serde.events import HEADER_EVENT_ID, Headers, RawHeaders, header_value

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

    from streamkit.consume.processing import KafkaMessage

__all__ = ["OtelTracing"]

INSTRUMENTATION = "streamkit"
SYSTEM = "kafka"
# Attribute names of the messaging semantic conventions (plain strings: the semconv
# package keeps them in an "incubating" module whose path changes between releases).
MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
MESSAGE_KEY = "messaging.kafka.message.key"
MESSAGE_ID = "messaging.message.id"
GROUP = "messaging.consumer.group.name"
CLIENT_ID = "messaging.client.id"
BATCH_COUNT = "messaging.batch.message_count"
DEAD_LETTER_TOPIC = "streamkit.dead_letter.topic"
REPLAYED_FROM = "streamkit.replayed_from"
RETRY_ATTEMPT = "messaging.retry.attempt"
RETRY_DELAY = "messaging.retry.delay_s"


class _HeaderSetter(Setter[Headers]):
    """Writes propagation fields into a Kafka header list (values as UTF-8 bytes)."""

    def set(self, carrier: Headers, key: str, value: str) -> None:
        # Replaces: a record carries one context (an outbox row's stored one is
        # superseded by the relay's publish span).
        carrier[:] = [item for item in carrier if item[0] != key]
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[RawHeaders]):
    """Reads propagation fields from Kafka headers (a list of pairs, a dict, or None)."""

    def get(self, carrier: RawHeaders, key: str) -> list[str] | None:
        value = header_value(carrier, key)
        return [value.decode(errors="replace")] if value is not None else None

    def keys(self, carrier: RawHeaders) -> list[str]:
        items = carrier.items() if isinstance(carrier, dict) else carrier or ()
        return [name for name, _ in items]


_SETTER = _HeaderSetter()
_GETTER = _HeaderGetter()


def inject_context(headers: Headers) -> None:
    """Write the current context into ``headers`` with the global propagator."""
    propagate.inject(headers, setter=_SETTER)


def _key_text(key: str | bytes | None) -> str | None:
    if key is None or isinstance(key, str):
        return key
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None  # binary keys are not attributes


def _failed(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _OtelPublishSpan(PublishSpan):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def inject(self, headers: Headers) -> None:
        propagate.inject(headers, context=trace.set_span_in_context(self._span), setter=_SETTER)

    def fail(self, error: BaseException) -> None:
        _failed(self._span, error)

    def end(self) -> None:
        self._span.end()


class _OtelProcessSpan(ProcessSpan):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def activate(self) -> object:
        return context.attach(trace.set_span_in_context(self._span))

    def deactivate(self, token: object) -> None:
        context.detach(token)  # type: ignore[arg-type]  # the token activate returned

    def fail(self, error: BaseException) -> None:
        _failed(self._span, error)

    def retry(self, attempt: int, delay_s: float) -> None:
        self._span.add_event("retry", {RETRY_ATTEMPT: attempt, RETRY_DELAY: delay_s})

    def dead_letter(self, topic: str, error: BaseException) -> None:
        self._span.set_attribute(DEAD_LETTER_TOPIC, topic)
        self._span.add_event(
            "dead_letter",
            {
                DEAD_LETTER_TOPIC: topic,
                "exception.type": type(error).__qualname__,
                "exception.message": str(error)[:500],
            },
        )

    def end(self) -> None:
        self._span.end()

    def ids(self) -> tuple[str | None, str | None]:
        span_context = self._span.get_span_context()
        return trace.format_trace_id(span_context.trace_id), trace.format_span_id(
            span_context.span_id
        )


class OtelTracing(Tracing):
    """Records messaging spans with OpenTelemetry and propagates their context.

    Args:
        tracer_provider: the provider to record with (default: the global one).
        client_id: the Kafka client id, recorded as ``messaging.client.id``.
    """

    __slots__ = ("_client_id", "_tracer")
    enabled = True

    def __init__(self, tracer_provider: TracerProvider | None = None, client_id: str = "") -> None:
        if trace is None:
            raise MissingExtraError(extra="otel", module="opentelemetry")
        from streamkit import __version__

        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        self._client_id = client_id

    def __repr__(self) -> str:
        return f"OtelTracing(client_id={self._client_id!r})"

    def _attributes(self, operation: str, kind: str, topic: str | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_NAME: operation,
            OPERATION_TYPE: kind,
        }
        if topic:
            attributes[DESTINATION] = topic
        if self._client_id:
            attributes[CLIENT_ID] = self._client_id
        return attributes

    def publish(
        self, topic: str, key: str | bytes | None, event_id: str, parent: RawHeaders = None
    ) -> PublishSpan:
        attributes = self._attributes("publish", "send", topic)
        attributes[MESSAGE_ID] = event_id
        text = _key_text(key)
        if text is not None:
            attributes[MESSAGE_KEY] = text
        span = self._tracer.start_span(
            f"publish {topic}",
            context=self.extract(parent) if parent is not None else None,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        return _OtelPublishSpan(span)

    @staticmethod
    def extract(headers: RawHeaders) -> Context:
        """The context a producer wrote into ``headers`` (empty when there is none)."""
        return propagate.extract(headers, getter=_GETTER)

    def process(self, message: KafkaMessage, group: str) -> ProcessSpan:
        headers = message.headers()
        topic = message.topic()
        attributes = self._attributes("process", "process", topic)
        attributes[GROUP] = group
        partition, offset = message.partition(), message.offset()
        if partition is not None:
            attributes[PARTITION] = str(partition)
        if offset is not None:
            attributes[OFFSET] = offset
        raw_id = header_value(headers, HEADER_EVENT_ID)
        if raw_id:
            attributes[MESSAGE_ID] = raw_id.decode(errors="replace")
        key = _key_text(message.key())
        if key is not None:
            attributes[MESSAGE_KEY] = key
        replayed_from = header_value(headers, HEADER_REPLAYED_FROM)
        if replayed_from:  # a dead letter's copy: its trace goes on from the first delivery
            attributes[REPLAYED_FROM] = replayed_from.decode(errors="replace")
        span = self._tracer.start_span(
            f"process {topic}",
            context=self.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        return _OtelProcessSpan(span)

    @contextmanager
    def process_batch(self, messages: Sequence[KafkaMessage], group: str) -> Iterator[Span]:
        topics = sorted({message.topic() or "" for message in messages})
        topic = topics[0] if len(topics) == 1 else None
        attributes = self._attributes("process", "process", topic)
        attributes[GROUP] = group
        attributes[BATCH_COUNT] = len(messages)
        links = []
        for message in messages:
            found = trace.get_current_span(self.extract(message.headers())).get_span_context()
            if found.is_valid:
                links.append(Link(found))
        with self._tracer.start_as_current_span(
            f"process {topic or ','.join(topics)}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ) as span:
            yield span
