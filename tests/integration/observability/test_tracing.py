"""Traces through real brokers and real consumers, recorded with the real OpenTelemetry SDK
(its in-memory exporter).

A producer sends; service A (each consumer face in turn) handles the event and sends a
new one; service B handles that: one trace, four spans in parent/child order. Failed
handler calls carry their retry and dead letter on their spans and in the log records.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamkit.consume.aio import AsyncEventConsumer
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.transactional import Output, TransactionalProcessor
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order, payment

ServiceA = Callable[..., None]


def _service(base: StreamkitSettings, name: str, **producer: Any) -> StreamkitSettings:
    """Settings of one service: its own group (and client id)."""
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"client_id": name}),
            "consumer": base.consumer.model_copy(
                update={"group_id": f"{base.consumer.group_id}-{name}", "max_retries": 1}
            ),
            "producer": base.producer.model_copy(update=producer),
        }
    )


def _forward(producer: EventProducer, topic: str) -> Callable[[Event], None]:
    def handle(event: Event) -> None:
        producer.send(topic, payment(1), key=event.key, schema=PAYMENT_SCHEMA).result(30)

    return handle


def run_consumer(concurrency: int) -> ServiceA:
    def run(settings: StreamkitSettings, source: str, target: str, **shared: Any) -> None:
        with (
            EventProducer(settings, **shared) as producer,
            EventConsumer(
                [source],
                _forward(producer, target),
                settings=settings,
                concurrency=concurrency,
                registry=shared["registry"],
                tracer_provider=shared["tracer_provider"],
            ) as consumer,
        ):
            consumer.run(max_messages=1, handle_signals=False)

    return run


def run_async(settings: StreamkitSettings, source: str, target: str, **shared: Any) -> None:
    async def main() -> None:
        with EventProducer(settings, **shared) as producer:

            async def handle(event: Event) -> None:
                await producer.send_async(target, payment(1), key=event.key, schema=PAYMENT_SCHEMA)

            async with AsyncEventConsumer(
                [source],
                handle,
                settings=settings,
                concurrency=4,
                registry=shared["registry"],
                tracer_provider=shared["tracer_provider"],
            ) as consumer:
                await consumer.run(max_messages=1, handle_signals=False)

    asyncio.run(main())


def run_processor(settings: StreamkitSettings, source: str, target: str, **shared: Any) -> None:
    def transform(event: Event) -> list[Output]:
        return [Output(target, payment(1), event.key, PAYMENT_SCHEMA)]

    with TransactionalProcessor([source], transform, settings=settings, **shared) as processor:
        processor.run(max_messages=1, handle_signals=False)


FACES: dict[str, ServiceA] = {
    "consumer": run_consumer(1),
    "threads": run_consumer(4),
    "async": run_async,
    "processor": run_processor,
}


def _chain(spans: list[ReadableSpan], *names: str) -> list[ReadableSpan]:
    by_name = {span.name: span for span in spans}
    assert set(names) <= set(by_name), sorted(by_name)
    return [by_name[name] for name in names]


@pytest.mark.parametrize("face", list(FACES))
def test_one_trace_from_producer_through_two_services(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    face: str,
) -> None:
    orders, payments = (
        topic_factory(2, prefix="traced-orders"),
        topic_factory(1, prefix="traced-pay"),
    )
    shared = {"schemas": schemas, "registry": registry, "tracer_provider": tracer_provider}
    with EventProducer(_service(streamkit_settings, "origin"), **shared) as producer:
        first = producer.send(orders, order(1), key="customer-1", schema=ORDER_SCHEMA).result(30)

    producer_a = {"transactional_id": f"tx-{face}"} if face == "processor" else {}
    settings_a = _service(streamkit_settings, "service-a", **producer_a)
    FACES[face](settings_a, orders, payments, **shared)

    received: list[Event] = []
    settings_b = _service(streamkit_settings, "service-b")
    with EventConsumer(
        [payments],
        received.append,
        settings=settings_b,
        registry=registry,
        tracer_provider=tracer_provider,
    ) as service_b:
        service_b.run(max_messages=1, handle_signals=False)

    chain = _chain(
        list(span_exporter.get_finished_spans()),
        f"publish {orders}",
        f"process {orders}",
        f"publish {payments}",
        f"process {payments}",
    )
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
    attributes = [dict(span.attributes or {}) for span in chain]
    assert attributes[1] == attributes[1] | {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.destination.name": orders,
        "messaging.message.id": first.event_id,
        "messaging.consumer.group.name": settings_a.consumer.group_id,
        "messaging.kafka.offset": 0,
        "messaging.kafka.message.key": "customer-1",
        "messaging.client.id": "service-a",
    }
    assert attributes[2]["messaging.destination.name"] == payments
    assert attributes[3]["messaging.message.id"] == received[0].id
    assert attributes[3]["messaging.consumer.group.name"] == settings_b.consumer.group_id
    print(
        f"FIGURES typed trace_chain face={face} spans={len(chain)} "
        f"traces={len({span.context.trace_id for span in chain})} "
        f"order={'>'.join(span.kind.name for span in chain)}"
    )


def test_retries_and_dead_letters_are_on_the_spans_and_in_the_logs(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory(1, prefix="traced-fail")
    settings = _service(streamkit_settings, "failing")
    with EventProducer(
        settings, schemas=schemas, registry=registry, tracer_provider=tracer_provider
    ) as producer:
        sent = producer.send(topic, order(1), key="k", schema=ORDER_SCHEMA).result(30)

    def fail(_event: Event) -> None:
        raise RuntimeError("card declined")

    caplog.set_level(logging.INFO, logger="streamkit.consume")
    with EventConsumer(
        [topic], fail, settings=settings, registry=registry, tracer_provider=tracer_provider
    ) as consumer:
        consumer.run(max_messages=1, handle_signals=False)
    assert (consumer.stats.retries, consumer.stats.dead_lettered) == (1, 1)

    spans = span_exporter.get_finished_spans()
    [publish] = [span for span in spans if span.name == f"publish {topic}"]
    attempts = [span for span in spans if span.name == f"process {topic}"]
    assert [[event.name for event in span.events] for span in attempts] == [
        ["exception", "retry"],
        ["exception", "dead_letter"],
    ]
    assert all(span.status.status_code == StatusCode.ERROR for span in attempts)
    assert all(span.parent and span.parent.span_id == publish.context.span_id for span in attempts)
    assert dict(attempts[1].attributes or {})["streamkit.dead_letter.topic"] == f"{topic}.dlq"

    records = [r for r in caplog.records if r.name.startswith("streamkit.consume")]
    logged = {
        "retry": next(r for r in records if "retrying" in r.getMessage()),
        "dead letter": next(r for r in records if "dead-lettering" in r.getMessage()),
    }
    for record, span in zip(logged.values(), attempts, strict=True):
        assert vars(record) | {
            "topic": topic,
            "partition": 0,
            "offset": 0,
            "event_id": sent.event_id,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
        } == vars(record)
    print(
        f"FIGURES typed traced_failure attempts={len(attempts)} "
        f"events={[e.name for s in attempts for e in s.events]} logs_joined={len(logged)}"
    )
