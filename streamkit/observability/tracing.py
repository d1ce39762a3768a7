"""OpenTelemetry traces across services: W3C context in Kafka headers, messaging spans.

When OpenTelemetry is installed (``pip install streamkit[otel]``) and configured (the
service set a tracer provider, or passed one), :func:`tracing_for` returns an
:class:`~streamkit.observability.otel.OtelTracing`:

- a producer records a ``PRODUCER`` span ``publish <topic>`` around each ``send()``
  (from validation to the hand-over to librdkafka) and writes its context into the
  record's headers with the global propagator: W3C ``traceparent``/``tracestate`` and
  ``baggage`` by default (``OTEL_PROPAGATORS`` changes it);
- a consumer runs each handler call in a ``CONSUMER`` span ``process <topic>`` whose
  parent is the context found in the message's headers (:meth:`Tracing.process`), or,
  for a batch handler, one span with a link to each message's context
  (:meth:`Tracing.process_batch`); what the pipeline decides after a failed call (a
  retry, a dead letter) is an event on that call's span (:class:`ProcessSpan`); retry
  hops and dead-letter replays keep the headers, so their later calls stay in the trace
  (a replayed copy's span has ``streamkit.replayed_from``);
- whatever the handler sends inside that span is its child, so one trace follows an
  event through every service that handled it.

Attributes follow the OpenTelemetry messaging semantic conventions (``messaging.system``
= ``kafka``, destination, partition, offset, consumer group, message id = event id).

Without OpenTelemetry, or with no tracer provider configured, :func:`tracing_for` returns
:data:`NO_TRACING`, whose methods do nothing: the choice is made once, when a client is
built, so an untraced record pays a few empty calls and no header.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from streamkit.serde.events import HEADER_EVENT_ID, Headers, RawHeaders, header_value

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: every client gets NO_TRACING
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import TracerProvider

    from streamkit.consume.processing import KafkaMessage

__all__ = [
    "NO_TRACING",
    "ProcessSpan",
    "PublishSpan",
    "Tracing",
    "configure_from_env",
    "inject_current",
    "log_extra",
    "otel_available",
    "tracing_for",
]


def otel_available() -> bool:
    """Whether the OpenTelemetry API is importable (the ``otel`` extra)."""
    return trace is not None


class PublishSpan:
    """The span of one ``send()``; this base class records nothing."""

    __slots__ = ()

    def inject(self, headers: Headers) -> None:
        """Append the span's context to ``headers`` (``traceparent``, ...)."""

    def fail(self, error: BaseException) -> None:
        """Record that the send failed with ``error``."""

    def end(self) -> None:
        """End the span."""


_NO_SPAN = PublishSpan()


class ProcessSpan:
    """The span of one handler call; this base class records nothing.

    Not current until :meth:`activate` (the handler's thread or task makes it current
    around the call); a failed call's span stays open until the pipeline decided what
    follows (:meth:`retry` or :meth:`dead_letter`), then :meth:`end`.
    """

    __slots__ = ()

    def activate(self) -> object:
        """Make the span current in this thread or task; give the token to
        :meth:`deactivate`."""
        return None

    def deactivate(self, token: object) -> None:
        """Make current again what was before :meth:`activate`."""

    def fail(self, error: BaseException) -> None:
        """Record that the call failed with ``error``."""

    def retry(self, attempt: int, delay_s: float) -> None:
        """Record that the failed call will be retried (``attempt``, 1-based) in
        ``delay_s`` seconds."""

    def dead_letter(self, topic: str, error: BaseException) -> None:
        """Record that the message went to dead-letter ``topic`` because of ``error``."""

    def end(self) -> None:
        """End the span."""

    def ids(self) -> tuple[str | None, str | None]:
        """(trace id, span id) in hex, or (None, None) when nothing is recorded."""
        return None, None


NO_PROCESS_SPAN = ProcessSpan()


def log_extra(message: KafkaMessage, span: ProcessSpan = NO_PROCESS_SPAN) -> dict[str, Any]:
    """Structured log fields of a consumed message: where it sits, its event id, and the
    ``trace_id``/``span_id`` of ``span`` (None when nothing is recorded). Pass them as a
    log call's ``extra``."""
    raw_id = header_value(message.headers(), HEADER_EVENT_ID)
    trace_id, span_id = span.ids()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "event_id": raw_id.decode(errors="replace") if raw_id else None,
        "trace_id": trace_id,
        "span_id": span_id,
    }


class Tracing:
    """Tracing that records nothing and adds no header (OpenTelemetry absent or unset);
    :class:`~streamkit.observability.otel.OtelTracing` records."""

    __slots__ = ()
    enabled = False

    def __repr__(self) -> str:
        return "Tracing(disabled)"

    def publish(
        self, topic: str, key: str | bytes | None, event_id: str, parent: RawHeaders = None
    ) -> PublishSpan:
        """The span of one send (here: one that records nothing); its parent is the
        context in ``parent`` headers when given (an outbox row's), else the current one."""
        return _NO_SPAN

    def process(self, message: KafkaMessage, group: str) -> ProcessSpan:
        """Start the consumer span of a handler call on ``message`` (here: none)."""
        return NO_PROCESS_SPAN

    def process_batch(
        self, messages: Sequence[KafkaMessage], group: str
    ) -> AbstractContextManager[Any]:
        """Run a batch handler call in one span linked to every message (here: no span)."""
        return nullcontext()


NO_TRACING = Tracing()
"""The tracing of clients built without OpenTelemetry: every method does nothing."""


def inject_current(headers: Headers) -> None:
    """Write the current trace context into ``headers`` with the global propagator
    (nothing when OpenTelemetry is absent or no span is current). An outbox row keeps
    the context of the code that added it this way, whatever provider recorded it."""
    if trace is not None:
        from streamkit.observability.otel import inject_context

        inject_context(headers)


def _configured(provider: Any) -> bool:
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def tracing_for(tracer_provider: TracerProvider | None = None, client_id: str = "") -> Tracing:
    """The tracing a client uses, chosen once when it is built.

    An :class:`~streamkit.observability.otel.OtelTracing` when OpenTelemetry is
    installed and ``tracer_provider`` is given or a global provider is set (by the
    service, ``opentelemetry-instrument`` or :func:`configure_from_env`); else
    :data:`NO_TRACING`.
    """
    if trace is None:
        return NO_TRACING
    if tracer_provider is None and not _configured(trace.get_tracer_provider()):
        return NO_TRACING
    from streamkit.observability.otel import OtelTracing

    return OtelTracing(tracer_provider, client_id)


def configure_from_env(service_name: str | None = None) -> SdkTracerProvider | None:
    """Set a global SDK tracer provider exporting over OTLP/HTTP when the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) variable is set, none is
    set yet, and the ``otel`` extra is installed; return it (``shutdown()`` flushes),
    else None. Service name and resource come from ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES``; ``service_name`` is the fallback.
    """
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or trace is None or _configured(trace.get_tracer_provider()):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return None
    fallback = {}
    if service_name and "OTEL_SERVICE_NAME" not in os.environ:
        fallback["service.name"] = service_name
    provider = SdkProvider(resource=Resource.create(fallback))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
