"""send() with pydantic models and with tracing, without a broker."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs streamkit[otel]")
pytest.importorskip("dataclasses_avroschema", reason="model schemas need streamkit[models]")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import streamkit.produce.producer
from streamkit.errors import SchemaValidationError
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Headers, header_value
from streamkit.serde.modelschemas import avro_schema_of
from streamkit.serde.schemas import AvroSchema, SchemaSet
from streamkit.settings import load_settings
from tests.fakes import FakeKafkaProducer, mock_registry
from tests.typed_models import Invoice, invoice

SCHEMA = AvroSchema.from_definition(avro_schema_of(Invoice))


class RecordingProducer(FakeKafkaProducer):
    """Keeps what was produced."""

    records: list[tuple[str, bytes, Headers]]

    def produce(self, topic: str, value: bytes, key: bytes | None, **options: Any) -> None:
        self.records = [*getattr(self, "records", []), (topic, value, options["headers"])]
        super().produce(topic, value, key, **options)


def make(monkeypatch: pytest.MonkeyPatch, **options: Any) -> EventProducer:
    monkeypatch.setattr(streamkit.produce.producer, "Producer", RecordingProducer)
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
    )
    return EventProducer(
        settings,
        schemas=SchemaSet({SCHEMA.name: SCHEMA}),
        registry=mock_registry(settings),
        **options,
    )


@pytest.fixture
def traced(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider
) -> Iterator[EventProducer]:
    with make(monkeypatch, tracer_provider=tracer_provider) as producer:
        yield producer


def produced(producer: EventProducer) -> list[tuple[str, bytes, Headers]]:
    client = producer.client
    assert isinstance(client, RecordingProducer)
    return client.records


def test_a_model_and_its_dict_send_the_same_value(monkeypatch: pytest.MonkeyPatch) -> None:
    model = invoice(4)
    with make(monkeypatch) as producer:
        producer.send("invoices", model, event_id="e", timestamp=1)
        producer.send("invoices", model.model_dump(), event_id="e", timestamp=1)
        (_, by_model, headers), (_, by_dict, _) = produced(producer)
    assert by_model == by_dict
    assert [name for name, _ in headers] == ["event-id", "event-type", "event-time"]  # untraced


def test_a_traced_send_carries_its_span_context(
    traced: EventProducer, span_exporter: InMemorySpanExporter
) -> None:
    future = traced.send("invoices", invoice(1), key="c-1")
    [(_, _, headers)] = produced(traced)
    [span] = span_exporter.get_finished_spans()
    assert span.name == "publish invoices"
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == future.event_id
    traceparent = header_value(headers, "traceparent")
    assert traceparent is not None
    assert f"{span.context.span_id:016x}" in traceparent.decode()


def test_a_refused_record_is_an_error_span_and_sends_nothing(
    traced: EventProducer, span_exporter: InMemorySpanExporter
) -> None:
    bad = invoice(1).model_copy(update={"total": Decimal("1.001")})  # the schema's scale is 2
    with pytest.raises(SchemaValidationError) as caught:
        traced.send("invoices", bad)
    assert caught.value.field == "total"
    [span] = span_exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert getattr(traced.client, "records", []) == []
