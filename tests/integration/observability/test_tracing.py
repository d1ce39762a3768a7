"""Traces through real brokers and real consumers, recorded with the real OpenTelemetry SDK
(its in-memory exporter).

A producer sends; service A (each consumer face in turn) handles the event and sends a
new one; service B handles that: one trace, four spans in parent/child order. Failed
handler calls carry their retry and dead letter on their spans and in the log records.
A retry-topic hop and a dead-letter replay keep the event in its producer's trace.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamkit.consume.aio import AsyncEventConsumer
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.transactional import Output, TransactionalProcessor
from streamkit.ops.dlq import HEADER_REPLAYED_FROM, replay_dead_letters
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, header_value
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order, payment
from tests.integration.conftest import ConsumerRunner, span_chain
from tests.integration.consume.test_retry_topics import retry_topics

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

    chain = span_chain(
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


# A retry-topic hop and a dead-letter replay --------------------------------------------
#
# Both forward the message's own headers, ``traceparent`` included, so every later
# delivery of the event is, like its first, a child of the producer's span: the consumer
# spans of one event are siblings under ``publish``, in the order they were handled
# (OpenTelemetry's messaging conventions parent each processing of a message on the
# context its creator wrote).


def _send_traced(
    settings: StreamkitSettings,
    topic: str,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    tracer_provider: TracerProvider,
) -> str:
    """Send one order with a producer span; return its event id."""
    with EventProducer(
        settings, schemas=schemas, registry=registry, tracer_provider=tracer_provider
    ) as producer:
        return (
            producer.send(topic, order(1), key="customer-1", schema=ORDER_SCHEMA)
            .result(30)
            .event_id
        )


def _finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The finished spans called ``name``, first started first."""
    spans = [span for span in exporter.get_finished_spans() if span.name == name]
    return sorted(spans, key=lambda span: span.start_time or 0)


def _children_of(publish: ReadableSpan, spans: list[ReadableSpan]) -> int:
    """Assert ``spans`` are consumer spans in ``publish``'s trace, its children; return
    how many trace ids they and ``publish`` have."""
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is None
    for span in spans:
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == publish.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == publish.context.span_id
    return len({span.context.trace_id for span in [publish, *spans]})


def _in_trace(exporter: InMemorySpanExporter, span: ReadableSpan) -> int:
    """How many finished spans are in ``span``'s trace."""
    trace_id = span.context.trace_id
    return sum(other.context.trace_id == trace_id for other in exporter.get_finished_spans())


@dataclass(frozen=True)
class RetryingService:
    """One traced event in ``topic``, whose consumers retry once through ``hop`` (1 s)."""

    topic: str
    settings: StreamkitSettings
    event_id: str
    registry: SchemaRegistry
    tracer_provider: TracerProvider
    consumers: ConsumerRunner

    @property
    def hop(self) -> str:
        return f"{self.topic}.retry.1s"

    def start(self, handler: Callable[[Event], None]) -> EventConsumer:
        """Run a traced consumer of ``topic`` (and its retry topic) in a thread."""
        consumer = EventConsumer(
            [self.topic],
            handler,
            settings=self.settings,
            registry=self.registry,
            tracer_provider=self.tracer_provider,
        )
        return self.consumers.start(consumer)


@pytest.fixture
def retrying(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
    consumers: ConsumerRunner,
) -> RetryingService:
    topic = topic_factory(1, prefix="traced-retry")
    service = _service(streamkit_settings, "retrying")
    settings = retry_topics(service, topic, 1, retry_delays=("1s",))
    event_id = _send_traced(settings, topic, schemas, registry, tracer_provider)
    return RetryingService(topic, settings, event_id, registry, tracer_provider, consumers)


def test_a_retry_topic_hop_keeps_the_producers_trace(
    retrying: RetryingService, span_exporter: InMemorySpanExporter, consumers: ConsumerRunner
) -> None:
    topic, hop, sent, settings = retrying.topic, retrying.hop, retrying.event_id, retrying.settings
    calls: list[Event] = []

    def flaky(event: Event) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("inventory service timed out")

    consumer = retrying.start(flaky)
    consumers.wait_for(lambda: bool(_finished(span_exporter, f"process {hop}")), timeout_s=25)
    consumers.stop(consumer)

    [publish] = _finished(span_exporter, f"publish {topic}")
    [failed] = _finished(span_exporter, f"process {topic}")
    [retried] = _finished(span_exporter, f"process {hop}")
    traces = _children_of(publish, [failed, retried])
    assert traces == 1
    assert [event.name for event in failed.events] == ["exception", "retry"]
    assert dict(failed.events[1].attributes or {}) == {
        "messaging.retry.attempt": 1,
        "messaging.retry.delay_s": 1.0,
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert (list(retried.events), retried.status.status_code) == ([], StatusCode.UNSET)
    # Handled in order, the second after its stage's delay.
    assert (failed.end_time or 0) <= (retried.start_time or 0)
    waited_s = ((retried.start_time or 0) - (failed.start_time or 0)) / 1e9
    assert waited_s >= 0.99  # due = failure (ms, rounded down) + 1 s
    group = settings.consumer.group_id
    for span, destination in ((failed, topic), (retried, hop)):
        attributes = dict(span.attributes or {})
        assert attributes == attributes | {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.destination.name": destination,
            "messaging.destination.partition.id": "0",
            "messaging.kafka.offset": 0,
            "messaging.message.id": sent,
            "messaging.consumer.group.name": group,
            "messaging.kafka.message.key": "customer-1",
        }
    assert [event.id for event in calls] == [sent, sent]
    parents = {header_value(event.headers, "traceparent") for event in calls}
    assert len(parents) == 1
    assert None not in parents
    print(
        f"FIGURES tracing-hop retry_topic spans={_in_trace(span_exporter, publish)} "
        f"traces={traces} "
        f"same_trace={traces == 1} order=publish>process(error,retry)>process({hop}) "
        f"hop_publish_spans={len(_finished(span_exporter, f'publish {hop}'))} "
        f"waited_s={waited_s:.2f}"
    )


def test_a_replayed_dead_letter_keeps_the_producers_trace(
    retrying: RetryingService, span_exporter: InMemorySpanExporter, consumers: ConsumerRunner
) -> None:
    topic, hop, sent, settings = retrying.topic, retrying.hop, retrying.event_id, retrying.settings
    dlq = f"{topic}{settings.consumer.dead_letter_suffix}"
    fixed = threading.Event()
    handled: list[Event] = []

    def bill(event: Event) -> None:
        if not fixed.is_set():
            raise RuntimeError("card declined")
        handled.append(event)

    consumer = retrying.start(bill)
    consumers.wait_for(lambda: consumer.stats.dead_lettered == 1, timeout_s=15)
    fixed.set()  # the handler's fix is deployed: replay what it gave up
    replay = replay_dead_letters(dlq, settings)
    assert (replay.target, replay.sent) == (topic, 1)
    consumers.wait_for(lambda: len(_finished(span_exporter, f"process {topic}")) == 2, timeout_s=12)
    consumers.stop(consumer)

    [publish] = _finished(span_exporter, f"publish {topic}")
    first, replayed = _finished(span_exporter, f"process {topic}")
    [dead] = _finished(span_exporter, f"process {hop}")
    traces = _children_of(publish, [first, dead, replayed])
    assert traces == 1
    assert [[event.name for event in span.events] for span in (first, dead, replayed)] == [
        ["exception", "retry"],
        ["exception", "dead_letter"],
        [],
    ]
    assert dict(dead.attributes or {})["streamkit.dead_letter.topic"] == dlq
    assert replayed.status.status_code is StatusCode.UNSET
    assert (first.end_time or 0) <= (dead.start_time or 0)
    assert (dead.end_time or 0) <= (replayed.start_time or 0)
    attributes = dict(replayed.attributes or {})
    assert attributes == attributes | {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.kafka.offset": 1,  # the copy, after the original at 0
        "messaging.message.id": sent,
        "messaging.consumer.group.name": settings.consumer.group_id,
        "streamkit.replayed_from": f"{dlq}[0]@0",
    }
    [event] = handled
    assert event.id == sent
    assert header_value(event.headers, HEADER_REPLAYED_FROM) == f"{dlq}[0]@0".encode()
    print(
        f"FIGURES tracing-hop dlq_replay spans={_in_trace(span_exporter, publish)} traces={traces} "
        f"same_trace={traces == 1} "
        "order=publish>process(error,retry)>process(retry,dead_letter)>replay>process(ok) "
        f"replayed_offset={attributes['messaging.kafka.offset']}"
    )
