"""Typed payloads: models encoded through the schema check, decoded into models."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("dataclasses_avroschema", reason="model schemas need streamkit[models]")

from pydantic import BaseModel

from streamkit.errors import DeserializationError, SchemaValidationError
from streamkit.serde.events import Event, EventDecoder, EventEncoder
from streamkit.serde.modelschemas import avro_schema_of, json_schema_of
from streamkit.serde.payloads import PayloadModels, field_path
from streamkit.serde.schemas import AvroSchema, JsonSchema, ValueSchema
from tests.typed_models import Address, Invoice, invoice

AVRO = AvroSchema.from_definition(avro_schema_of(Invoice))
JSON = JsonSchema.from_definition(json_schema_of(Invoice))
ADDRESS = AvroSchema.from_definition(avro_schema_of(Address))


class Registry:
    """Writer schemas by id (the registry's role in decoding)."""

    def __init__(self, schemas: dict[int, ValueSchema]) -> None:
        self.schemas = schemas

    def schema_by_id(self, schema_id: int) -> ValueSchema:
        return self.schemas[schema_id]


def decode(registry: Registry, value: bytes, models: PayloadModels | None = None) -> Event[Any]:
    """Decode as the consumer does, then (typed) the per-event model step."""
    event = EventDecoder(registry).decode(value, topic="invoices", partition=2, offset=41)
    return models.typed(event) if models is not None else event


@pytest.mark.parametrize("schema", [AVRO, JSON], ids=["avro", "json"])
def test_model_round_trip_keeps_every_value(schema: ValueSchema) -> None:
    sent = invoice(7)
    value = EventEncoder(schema, 1).encode(Event(payload=sent, type="Invoice"))
    registry = Registry({1: schema})

    event = decode(registry, value, PayloadModels(Invoice, registry))

    assert isinstance(event.payload, Invoice)
    assert event.payload == sent
    assert event.payload.total == Decimal("119.94")


def test_a_model_and_its_dict_encode_to_the_same_bytes() -> None:
    encoder = EventEncoder(AVRO, 1)
    model = invoice(3)
    from_model = encoder.encode_record(encoder.record_of(model, "Invoice", "id", 0))
    from_dict = encoder.encode_record(encoder.record_of(model.model_dump(), "Invoice", "id", 0))
    assert from_model == from_dict


def test_a_model_breaking_the_schema_is_refused_naming_the_field() -> None:
    bad = invoice(1).model_copy(update={"total": Decimal("1.234")})  # scale 2 in the schema
    with pytest.raises(SchemaValidationError) as caught:
        EventEncoder(AVRO, 1).encode(Event(payload=bad, type="Invoice"))
    assert caught.value.field == "total"


def test_without_payload_models_the_payload_stays_a_dict() -> None:
    value = EventEncoder(AVRO, 1).encode(Event(payload=invoice(1), type="Invoice"))
    event = decode(Registry({1: AVRO}), value)
    assert isinstance(event.payload, dict)
    assert event.payload["billing_address"]["city"] == "Berlin"


def test_a_payload_not_fitting_the_model_names_the_field_and_where_it_sits() -> None:
    class Strict(BaseModel):
        street: str
        city: int  # the writer says string

    value = EventEncoder(ADDRESS, 5).encode(
        Event(payload={"street": "a", "city": "Berlin"}, type="Address")
    )
    registry = Registry({5: ADDRESS})
    with pytest.raises(DeserializationError) as caught:
        decode(registry, value, PayloadModels(Strict, registry))
    assert "field 'city'" in str(caught.value)
    assert "Berlin" not in str(caught.value)  # values stay out of errors (and DLQ headers)
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == ("invoices", 2, 41)


def test_a_mapping_picks_the_model_by_writer_schema_name() -> None:
    registry = Registry({1: AVRO, 2: ADDRESS})
    models = PayloadModels({AVRO.name: Invoice, ADDRESS.name: Address}, registry)
    first = decode(
        registry, EventEncoder(AVRO, 1).encode(Event(payload=invoice(1), type="I")), models
    )
    second = decode(
        registry,
        EventEncoder(ADDRESS, 2).encode(Event(payload=Address(street="s", city="c"), type="A")),
        models,
    )
    assert isinstance(first.payload, Invoice)
    assert isinstance(second.payload, Address)


def test_a_schema_missing_from_the_mapping_is_undecodable_naming_it() -> None:
    registry = Registry({2: ADDRESS})
    value = EventEncoder(ADDRESS, 2).encode(Event(payload={"street": "s", "city": "c"}, type="A"))
    with pytest.raises(DeserializationError, match="no payload model for schema 'Address'"):
        decode(registry, value, PayloadModels({AVRO.name: Invoice}, registry))


def test_payload_type_must_be_a_model() -> None:
    with pytest.raises(TypeError):
        PayloadModels(dict, Registry({}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("location", "path"),
    [((), "<root>"), (("lines", 2, "sku"), "lines[2].sku"), (("labels", "k"), "labels.k")],
)
def test_field_path(location: tuple[int | str, ...], path: str) -> None:
    assert field_path(location) == path
