"""Tracing with the real OpenTelemetry SDK (in-memory exporter), and without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs streamkit[otel]")

from confluent_kafka import Message
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamkit.consume.retry_topics import RetryStage, final_dead_letter, retry_hop
from streamkit.observability.otel import OtelTracing
from streamkit.observability.tracing import (
    NO_TRACING,
    ProcessSpan,
    inject_current,
    log_extra,
    tracing_for,
)
from streamkit.ops.dlq.letters import DeadLetter, replay_headers
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


@contextmanager
def current(span: ProcessSpan) -> Iterator[ProcessSpan]:
    """``span`` current around the block, as the handler call runs in it."""
    token = span.activate()
    try:
        yield span
    finally:
        span.deactivate(token)


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
    with current(tracing.process(message, "billing-group")) as span:
        sent(tracing, topic="invoices", event_id="e-2")  # what the handler sends
    span.end()
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
    tracing.process(consumed([]), "g").end()
    [span] = span_exporter.get_finished_spans()
    assert span.parent is None


def test_retries_dead_letters_and_failures_are_on_the_span(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    error = ValueError("card declined")
    first = tracing.process(consumed(sent(tracing)), "g")
    first.fail(error)  # the handler raised; the pipeline decides: retry in 0.5 s
    first.retry(1, 0.5)
    first.end()
    second = tracing.process(consumed(sent(tracing)), "g")
    second.fail(error)  # failed again; no retries left
    second.dead_letter("orders.dlq", error)
    second.end()
    spans = [span for span in span_exporter.get_finished_spans() if span.name == "process orders"]
    assert [[event.name for event in span.events] for span in spans] == [
        ["exception", "retry"],
        ["exception", "dead_letter"],
    ]
    assert spans[0].events[1].attributes == {
        "messaging.retry.attempt": 1,
        "messaging.retry.delay_s": 0.5,
    }
    assert spans[1].attributes is not None
    assert spans[1].attributes["streamkit.dead_letter.topic"] == "orders.dlq"
    assert {span.status.status_code for span in spans} == {StatusCode.ERROR}
    assert spans[1].status.description == "ValueError: card declined"


def test_retry_hops_and_replays_keep_the_trace(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    """Each delivery of one event (the first, after a retry-topic hop, the replayed dead
    letter) is a child of the producer's span, its trace state kept."""
    error = RuntimeError("card declined")
    first = consumed([*sent(tracing), ("tracestate", b"vendor=1")])
    stage = RetryStage("orders", 0, "1s", 1.0, "orders.retry.1s")
    hop = retry_hop(first, error, attempts=1, group="g", stage=stage).letter
    retried = message(topic=hop.topic, partition=0, offset=0, headers=hop.headers)
    letter = final_dead_letter(retried, error, attempts=2, group="g", suffix=".dlq")
    in_dlq = message(topic=letter.topic, partition=2, offset=3, headers=letter.headers)
    copy = consumed(replay_headers(DeadLetter.of(in_dlq), letter.topic), offset=42)
    for delivery in (first, retried, copy):
        tracing.process(delivery, "g").end()

    spans = by_name(span_exporter)
    publish = spans["publish orders"]
    calls = [span for span in span_exporter.get_finished_spans() if span.kind is SpanKind.CONSUMER]
    assert [span.name for span in calls] == [
        "process orders",
        "process orders.retry.1s",
        "process orders",
    ]
    for span in calls:
        assert span.parent is not None
        assert span.parent.span_id == publish.context.span_id
        assert span.context.trace_id == publish.context.trace_id
        assert dict(span.context.trace_state) == {"vendor": "1"}
    assert [dict(span.attributes or {}).get("streamkit.replayed_from") for span in calls] == [
        None,
        None,
        "orders.dlq[2]@3",
    ]


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
    message = consumed(sent(tracing, event_id="e-1"))
    span = tracing.process(message, "g")
    span.end()
    trace_id, span_id = span.ids()
    assert extra_equal(log_extra(message, span), trace_id, span_id)
    assert (len(trace_id or ""), len(span_id or "")) == (32, 16)


def extra_equal(extra: dict[str, object], trace_id: str | None, span_id: str | None) -> bool:
    return extra == {
        "topic": "orders",
        "partition": 2,
        "offset": 41,
        "event_id": "e-1",
        "trace_id": trace_id,
        "span_id": span_id,
    }


def test_inject_current_carries_the_consumer_context(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    headers: Headers = []
    with current(tracing.process(consumed(sent(tracing)), "g")) as span:
        inject_current(headers)
    span.end()
    traceparent = header_value(headers, "traceparent")
    assert traceparent is not None
    assert f"-{span.ids()[1]}-" in traceparent.decode()


def test_a_publish_parented_on_stored_headers_replaces_their_context(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    """What the outbox relay does: the row kept the adding call's context; the relay's
    span is its child, and the record carries one traceparent, the relay span's."""
    stored = sent(tracing, event_id="e-0")
    headers = envelope_headers("e-1", "OrderPlaced", 0, stored)
    span = tracing.publish("payments", None, "e-1", parent=stored)
    span.inject(headers)
    span.end()
    adding, relaying = span_exporter.get_finished_spans()
    assert relaying.parent is not None
    assert relaying.parent.span_id == adding.context.span_id
    assert [name for name, _ in headers].count("traceparent") == 1
    assert (
        f"-{relaying.context.span_id:016x}-"
        in (header_value(headers, "traceparent") or b"").decode()
    )


def test_a_publish_parented_on_headers_without_context_starts_a_trace(
    tracing: OtelTracing, span_exporter: InMemorySpanExporter
) -> None:
    outer = tracing.process(consumed(sent(tracing)), "g")
    with current(outer):
        tracing.publish("payments", None, "e-2", parent=[]).end()
    outer.end()
    relaying = by_name(span_exporter)["publish payments"]
    assert relaying.parent is None


def test_inject_current_without_a_current_span_adds_nothing() -> None:
    headers: Headers = []
    inject_current(headers)
    assert header_value(headers, "traceparent") is None


def test_without_a_provider_nothing_is_traced_and_no_header_added() -> None:
    assert tracing_for() is NO_TRACING  # no global provider in this process
    headers = envelope_headers("e-1", "OrderPlaced", 0)
    span = NO_TRACING.publish("orders", None, "e-1")
    span.inject(headers)
    span.end()
    assert [name for name, _ in headers] == ["event-id", "event-type", "event-time"]
    process = NO_TRACING.process(consumed(headers), "g")
    with current(process):
        assert extra_equal(log_extra(consumed(headers), process), None, None)
    process.end()


def test_a_global_provider_is_picked_up_when_the_client_is_built() -> None:
    # A separate interpreter: the global provider can be set once per process.
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from streamkit.observability.tracing import NO_TRACING, ProcessSpan, log_extra, tracing_for
        assert tracing_for() is NO_TRACING
        trace.set_tracer_provider(TracerProvider())
        print(type(tracing_for(client_id="x")).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "OtelTracing"
