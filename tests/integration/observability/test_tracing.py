"""Trace context through a real broker, recorded with the real OpenTelemetry SDK.

A producer's ``traceparent`` survives the broker; a consumer span parented on it runs
the handler, whose own send continues the trace to the next topic and service.
"""

from __future__ import annotations

import itertools

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streamkit.observability.otel import OtelTracing
from streamkit.produce.producer import EventProducer
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order, payment
from tests.integration.conftest import raw_messages


def test_one_trace_from_producer_through_two_consumers(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    orders, payments = (
        topic_factory(1, prefix="traced-orders"),
        topic_factory(1, prefix="traced-pay"),
    )
    service_a = OtelTracing(tracer_provider, client_id="service-a")
    with EventProducer(
        streamkit_settings, schemas=schemas, registry=registry, tracer_provider=tracer_provider
    ) as producer:
        first = producer.send(orders, order(1), key="customer-1", schema=ORDER_SCHEMA)
        producer.flush(30)
        [message] = raw_messages(streamkit_settings, orders, 1)
        with service_a.process(message, "service-a"):  # service A handles it, sends on
            producer.send(payments, payment(1), key="customer-1", schema=PAYMENT_SCHEMA)
        producer.flush(30)
    [forwarded] = raw_messages(streamkit_settings, payments, 1)
    with OtelTracing(tracer_provider, client_id="service-b").process(forwarded, "service-b"):
        pass

    spans = {span.name: span for span in span_exporter.get_finished_spans()}
    chain = [
        spans[f"publish {orders}"],
        spans[f"process {orders}"],
        spans[f"publish {payments}"],
        spans[f"process {payments}"],
    ]
    assert [span.kind for span in chain] == [
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert len({span.context.trace_id for span in chain}) == 1
    assert chain[0].parent is None
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    consumed = chain[1].attributes
    assert consumed is not None
    assert consumed["messaging.message.id"] == first.event_id
    assert consumed["messaging.destination.name"] == orders
    assert consumed["messaging.kafka.offset"] == 0
    assert consumed["messaging.consumer.group.name"] == "service-a"
    traces = len({span.context.trace_id for span in chain})
    print(f"FIGURES typed trace_chain spans={len(chain)} traces={traces}")
