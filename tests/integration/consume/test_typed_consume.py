"""Typed consumers against the real broker and registry: ``payload_type`` hands each
face's handler ``Event[Model]``; a record that does not fit the model is dead-lettered
with the field named."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from streamkit.consume.aio import AsyncEventConsumer
from streamkit.consume.consumer import EventConsumer
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.modelschemas import generate, write_schemas
from streamkit.serde.payloads import PayloadType
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet, load_schemas
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import raw_messages
from tests.typed_models import Invoice, invoice

COUNT = 12
Run = Callable[[list[Event[Any]], PayloadType, StreamkitSettings, SchemaRegistry, str], Any]


class InvoiceWithCurrency(BaseModel):
    """A model the invoices do not fit: they carry no currency."""

    invoice_id: uuid.UUID
    total: Decimal
    currency: str


@pytest.fixture(scope="module")
def invoice_schemas(tmp_path_factory: pytest.TempPathFactory) -> SchemaSet:
    out = tmp_path_factory.mktemp("typed-schemas")
    write_schemas(generate("tests.typed_models", "avro"), out)
    return load_schemas(out)


@pytest.fixture
def invoices(
    streamkit_settings: StreamkitSettings,
    invoice_schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
) -> tuple[str, list[Invoice]]:
    """A 3-partition topic holding COUNT invoices sent as models (keyed by number)."""
    topic = topic_factory(3, prefix="typed-consume")
    [schema] = invoice_schemas.values()
    sent = [invoice(n, shipped=n % 3 != 0) for n in range(COUNT)]
    with EventProducer(streamkit_settings, schemas=invoice_schemas, registry=registry) as producer:
        for n, model in enumerate(sent):
            producer.send(topic, model, key=str(n), schema=schema.name).result(30)
    return topic, sent


def run_sync(concurrency: int) -> Run:
    def run(
        received: list[Event[Any]],
        payload_type: PayloadType,
        settings: StreamkitSettings,
        registry: SchemaRegistry,
        topic: str,
    ) -> EventConsumer:
        lock = threading.Lock()

        def handle(event: Event[Invoice]) -> None:
            with lock:
                received.append(event)

        with EventConsumer(
            [topic],
            handle,
            settings=settings,
            registry=registry,
            payload_type=payload_type,
            concurrency=concurrency,
        ) as consumer:
            consumer.run(max_messages=COUNT, handle_signals=False)
        return consumer

    return run


def run_async(
    received: list[Event[Any]],
    payload_type: PayloadType,
    settings: StreamkitSettings,
    registry: SchemaRegistry,
    topic: str,
) -> AsyncEventConsumer:
    async def handle(event: Event[Invoice]) -> None:
        await asyncio.sleep(0)
        received.append(event)

    async def main() -> AsyncEventConsumer:
        async with AsyncEventConsumer(
            [topic],
            handle,
            settings=settings,
            registry=registry,
            payload_type=payload_type,
            concurrency=8,
        ) as consumer:
            await consumer.run(max_messages=COUNT, handle_signals=False)
        return consumer

    return asyncio.run(main())


FACES = {"consumer": run_sync(1), "threads": run_sync(4), "async": run_async}


@pytest.mark.parametrize("face", list(FACES))
@pytest.mark.parametrize("mapped", [False, True], ids=["model", "mapping"])
def test_handlers_get_their_models(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    invoice_schemas: SchemaSet,
    invoices: tuple[str, list[Invoice]],
    face: str,
    mapped: bool,
) -> None:
    topic, sent = invoices
    [schema] = invoice_schemas.values()
    payload_type: PayloadType = {schema.name: Invoice} if mapped else Invoice
    received: list[Event[Any]] = []
    consumer = FACES[face](received, payload_type, streamkit_settings, registry, topic)
    assert consumer.stats.dead_lettered == 0
    assert all(isinstance(event.payload, Invoice) for event in received)
    by_key = {event.key: event.payload for event in received}
    assert by_key == {str(n).encode(): model for n, model in enumerate(sent)}
    print(f"FIGURES typed consume face={face} mapped={mapped} events={len(received)} equal={COUNT}")


@pytest.mark.parametrize("face", list(FACES))
def test_a_record_not_fitting_the_model_is_dead_lettered_naming_the_field(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    invoices: tuple[str, list[Invoice]],
    face: str,
) -> None:
    topic, _ = invoices
    received: list[Event[Any]] = []
    consumer = FACES[face](received, InvoiceWithCurrency, streamkit_settings, registry, topic)
    assert received == []  # the handler never saw a half-typed payload
    assert consumer.stats.dead_lettered == COUNT
    letters = raw_messages(streamkit_settings, f"{topic}.dlq", COUNT)
    assert len(letters) == COUNT
    reasons = {dict(letter.headers() or [])["dlq-reason"].decode() for letter in letters}
    expected = "payload does not fit model InvoiceWithCurrency: field 'currency': Field required"
    assert all(reason.startswith("DeserializationError: ") for reason in reasons), reasons
    assert all(expected in reason for reason in reasons), reasons
    print(f"FIGURES typed misfit face={face} dead_lettered={len(letters)} reason={expected!r}")


def test_a_schema_with_no_model_in_the_mapping_is_dead_lettered(
    streamkit_settings: StreamkitSettings,
    registry: SchemaRegistry,
    invoices: tuple[str, list[Invoice]],
) -> None:
    topic, _ = invoices
    received: list[Event[Any]] = []
    consumer = run_sync(1)(received, {"other.Event": Invoice}, streamkit_settings, registry, topic)
    assert (received, consumer.stats.dead_lettered) == ([], COUNT)
