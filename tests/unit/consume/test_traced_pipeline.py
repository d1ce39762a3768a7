"""The pipeline's handler calls in consumer spans (real OpenTelemetry SDK, in-memory
exporter) over the fake client: parent from the headers, current during the call,
retries and dead letters recorded on the span of the call that failed, every span ended,
log records joined to them."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs streamkit[otel]")

from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from streamkit.observability.otel import OtelTracing
from streamkit.serde.events import Event, Headers, envelope_headers
from tests.fakes import message
from tests.unit.consume.conftest import FakeClient, make_harness

COUNT = 6


def _produced(tracing: OtelTracing) -> list[Message]:
    """COUNT messages, each with the context of its own publish span; offset 3 cannot be
    decoded."""
    log = []
    for offset in range(COUNT):
        headers: Headers = envelope_headers(f"e{offset}", "Test", 0)
        span = tracing.publish("t", "k", f"e{offset}")
        span.inject(headers)
        span.end()
        value = b"bad" if offset == 3 else f"v{offset}".encode()
        log.append(
            message(
                topic="t",
                partition=0,
                offset=offset,
                key=f"k{offset}".encode(),
                value=value,
                headers=list(headers),
            )
        )
    return log


def _by_offset(spans: list[ReadableSpan], name: str) -> dict[int, list[ReadableSpan]]:
    found: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.name == name:
            offset = int((span.attributes or {})["messaging.kafka.offset"])  # type: ignore[arg-type]
            found.setdefault(offset, []).append(span)
    return found


def _events(spans: list[ReadableSpan]) -> list[list[str]]:
    return [[event.name for event in span.events] for span in spans]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_handler_calls_run_in_consumer_spans_with_retries_and_dead_letters_recorded(
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    concurrency: int,
) -> None:
    tracing = OtelTracing(tracer_provider, client_id="svc")
    log = _produced(tracing)
    current: dict[int, tuple[int, int]] = {}
    lock = threading.Lock()

    def handle(event: Event) -> None:
        context = trace.get_current_span().get_span_context()
        with lock:
            current[event.offset or 0] = (context.trace_id, context.span_id)
        if event.offset == 1:
            raise RuntimeError("card declined")

    caplog.set_level(logging.INFO, logger="streamkit.consume")
    harness = make_harness(
        FakeClient(log), handle, concurrency=concurrency, max_retries=1, tracing=tracing
    )
    harness.start(max_messages=COUNT)
    harness.join()

    spans = list(span_exporter.get_finished_spans())
    publish = {
        int(s.attributes["messaging.message.id"][1:]): s for s in spans if s.name == "publish t"
    }  # type: ignore[index]
    process = _by_offset(spans, "process t")
    assert sorted(process) == list(range(COUNT))
    assert _events(process[0]) == [[]]
    assert _events(process[1]) == [["exception", "retry"], ["exception", "dead_letter"]]
    assert _events(process[3]) == [["exception", "dead_letter"]]  # undecodable: never called
    for offset, attempts in process.items():
        for span in attempts:  # each attempt is a child of the event's publish span
            assert span.parent is not None
            assert span.parent.span_id == publish[offset].context.span_id
            assert span.context.trace_id == publish[offset].context.trace_id
    for offset, (trace_id, span_id) in current.items():  # current during the handler call
        assert (trace_id, span_id) == (
            process[offset][-1].context.trace_id,
            process[offset][-1].context.span_id,
        )
    assert harness.pipeline.stats.dead_lettered == 2

    joined = Counter()
    for record in caplog.records:
        trace_id = getattr(record, "trace_id", None)
        if trace_id is None:
            continue
        spans_of = process[record.offset]  # type: ignore[attr-defined]
        assert (trace_id, record.span_id) in {  # type: ignore[attr-defined]
            (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans_of
        }
        assert record.event_id == f"e{record.offset}"  # type: ignore[attr-defined]
        joined[record.offset] += 1  # type: ignore[attr-defined]
    assert joined == {1: 2, 3: 1}  # the retry and the dead letter of 1; the dead letter of 3


def test_a_batch_handler_runs_in_one_span_linked_to_every_message(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    tracing = OtelTracing(tracer_provider)
    log = [m for m in _produced(tracing) if m.value() != b"bad"]
    batches: list[int] = []
    harness = make_harness(
        FakeClient(log),
        lambda _event: None,
        batch_call=lambda events: batches.append(len(events)),
        tracing=tracing,
    )
    harness.start(max_messages=len(log))
    harness.join()
    [batch] = [s for s in span_exporter.get_finished_spans() if s.name == "process t"]
    assert sum(batches) == len(log) == len(batch.links)
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == len(log)


def test_coroutine_handlers_run_in_their_own_span_in_their_task(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    tracing = OtelTracing(tracer_provider)
    log = [m for m in _produced(tracing) if m.value() != b"bad"]
    seen: dict[int, int] = {}

    async def handle(event: Event) -> None:
        await asyncio.sleep(0.01)  # the others run meanwhile, each in its own span
        seen[event.offset or 0] = trace.get_current_span().get_span_context().span_id

    async def main() -> None:
        harness = make_harness(FakeClient(log), print, concurrency=4, tracing=tracing)
        harness.executor = harness.pipeline.async_executor_for(handle, asyncio.get_running_loop())
        harness.start(max_messages=len(log))
        await asyncio.to_thread(harness.join)

    asyncio.run(main())
    process = _by_offset(list(span_exporter.get_finished_spans()), "process t")
    assert seen == {offset: spans[0].context.span_id for offset, spans in process.items()}
