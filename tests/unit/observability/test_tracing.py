"""Tracing with the real OpenTelemetry SDK (in-memory exporter), and without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs streamkit[otel]")

from confluent_kafka import Message
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamkit.observability.otel import OtelTracing
from streamkit.observability.tracing import NO_TRACING, tracing_for
from streamkit.serde.events import Headers, envelope_headers, header_value
from tests.fakes import message


def consumed(headers: Headers, *, offset: int = 41) -> Message:
    """A consumed record at orders[2]@offset with key ``customer-7``."""
    return message(headers=headers, offset=offset, key=b"customer-7")


@pytest.fixture
def tracing(tracer_provider: TracerProvider) -> OtelTracing:
    return OtelTracing(tracer_provider, client_id="billing")


def sent(tracing: OtelTracing, topic: str = "orders", event_id: str = "e-1") -> Headers:
    """The headers of one traced send."""
    headers = envelope_headers(event_id, "OrderPlaced", 0)
    span = tracing.publish(topic, "customer-7", event_id)
    span.inject(headers)
    span.end()
    return headers


def by_name(span_exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in span_exporter.get_finished_spans()}


def test_publish_records_a_producer_span_and_injects_w3c_headers(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        headers = sent(tracing)
    finally:
        context.detach(token)
    [span] = span_exporter.get_finished_spans()
    assert (span.name, span.kind) == ("publish orders", SpanKind.PRODUCER)
    assert span.attributes == {
        "messaging.system": "kafka",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": "orders",
        "messaging.client.id": "billing",
        "messaging.message.id": "e-1",
        "messaging.kafka.message.key": "customer-7",
    }
    traceparent = header_value(headers, "traceparent")
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.decode().split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert header_value(headers, "baggage") == b"tenant=acme"


def test_process_continues_the_producers_trace(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    message = consumed(sent(tracing))
    with tracing.process(message, "billing-group"):
        sent(tracing, topic="invoices", event_id="e-2")  # what the handler sends
    spans = by_name(span_exporter)
    publish, process, child = (
        spans["publish orders"],
        spans["process orders"],
        spans["publish invoices"],
    )
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert child.parent is not None
    assert child.parent.span_id == process.context.span_id
    assert {publish.context.trace_id, process.context.trace_id, child.context.trace_id} == {
        publish.context.trace_id
    }
    assert process.attributes is not None
    assert {k: process.attributes[k] for k in process.attributes} == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.client.id": "billing",
        "messaging.consumer.group.name": "billing-group",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
        "messaging.message.id": "e-1",
        "messaging.kafka.message.key": "customer-7",
    }


def test_a_message_without_context_starts_a_new_trace(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    with tracing.process(consumed([]), "g"):
        pass
    [span] = span_exporter.get_finished_spans()
    assert span.parent is None


def test_retries_dead_letters_and_failures_are_on_the_span(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    error = ValueError("card declined")

    def handle_and_fail() -> None:
        with tracing.process(consumed(sent(tracing)), "g"):
            tracing.record_retry(1, 0.5, error)
            tracing.record_dead_letter("orders.dlq", error)
            raise error

    with pytest.raises(ValueError, match="declined"):
        handle_and_fail()
    span = by_name(span_exporter)["process orders"]
    assert [event.name for event in span.events] == ["retry", "dead_letter", "exception"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["messaging.retry.attempt"] == 1
    assert span.attributes is not None
    assert span.attributes["streamkit.dead_letter.topic"] == "orders.dlq"
    assert span.status.status_code == StatusCode.ERROR


def test_a_failed_send_is_an_error_span(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    span = tracing.publish("orders", None, "e-9")
    span.fail(ValueError("bad record"))
    span.end()
    [finished] = span_exporter.get_finished_spans()
    assert finished.status.status_code == StatusCode.ERROR
    assert finished.status.description == "ValueError: bad record"


def test_a_batch_span_links_every_message(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    messages = [consumed(sent(tracing, event_id=f"e-{n}"), offset=n) for n in range(3)]
    messages.append(consumed([], offset=3))  # no context: no link
    with tracing.process_batch(messages, "g"):
        pass
    spans = span_exporter.get_finished_spans()
    batch = spans[-1]
    assert batch.name == "process orders"
    assert batch.parent is None
    assert [link.context.span_id for link in batch.links] == [s.context.span_id for s in spans[:3]]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 4


def test_log_extra_joins_logs_to_the_span(tracing: OtelTracing) -> None:
    with tracing.process(consumed(sent(tracing)), "g") as span:
        extra = tracing.log_extra("orders", 2, 41, "e-1")
    assert extra == {
        "topic": "orders",
        "partition": 2,
        "offset": 41,
        "event_id": "e-1",
        "trace_id": f"{span.get_span_context().trace_id:032x}",
        "span_id": f"{span.get_span_context().span_id:016x}",
    }


def test_inject_current_carries_the_consumer_context(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    headers: Headers = []
    with tracing.process(consumed(sent(tracing)), "g") as span:
        tracing.inject_current(headers)
    traceparent = header_value(headers, "traceparent")
    assert traceparent is not None
    assert f"{span.get_span_context().span_id:016x}" in traceparent.decode()


def test_without_a_provider_nothing_is_traced_and_no_header_added() -> None:
    assert tracing_for() is NO_TRACING  # no global provider in this process
    headers = envelope_headers("e-1", "OrderPlaced", 0)
    span = NO_TRACING.publish("orders", None, "e-1")
    span.inject(headers)
    span.end()
    assert [name for name, _ in headers] == ["event-id", "event-type", "event-time"]
    with NO_TRACING.process(consumed(headers), "g"):
        assert NO_TRACING.log_extra("orders", 0, 1, "e-1")["trace_id"] is None


def test_a_global_provider_is_picked_up_when_the_client_is_built() -> None:
    # A separate interpreter: the global provider can be set once per process.
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from streamkit.observability.tracing import NO_TRACING, tracing_for
        assert tracing_for() is NO_TRACING
        trace.set_tracer_provider(TracerProvider())
        print(type(tracing_for(client_id="x")).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "OtelTracing"
