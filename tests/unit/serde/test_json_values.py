"""The JSON mapping of Avro logical types: what consume prints, produce reads back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from streamkit.errors import SchemaValidationError
from streamkit.serde.events import EventDecoder, EventEncoder
from streamkit.serde.json_values import from_json, json_default
from streamkit.serde.schemas import AvroSchema, load_schemas
from tests.factories import INVOICE_SCHEMA, LOGICAL_SCHEMAS_DIR, invoice

EVENT_ID = "9b2f7c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d"  # the envelope id is a uuid field


@pytest.fixture(scope="module")
def schema() -> AvroSchema:
    found = load_schemas(LOGICAL_SCHEMAS_DIR)[INVOICE_SCHEMA]
    assert isinstance(found, AvroSchema)
    return found


@pytest.fixture(scope="module")
def payload_schema(schema: AvroSchema) -> AvroSchema:
    payload = next(f["type"] for f in schema.definition["fields"] if f["name"] == "payload")
    return AvroSchema.from_definition(payload)


class OneSchema:
    def __init__(self, schema: AvroSchema) -> None:
        self.schema = schema

    def schema_by_id(self, _schema_id: int) -> AvroSchema:
        return self.schema


@pytest.mark.parametrize("seq", [1, 2])
def test_printed_json_reads_back_into_the_same_record(schema: AvroSchema, seq: int) -> None:
    encoder = EventEncoder(schema, 5)
    sent = invoice(seq)
    value = encoder.encode_record(encoder.record_of(sent, "InvoiceIssued", EVENT_ID, 1))
    decoded = EventDecoder(OneSchema(schema)).decode(value, topic="invoices").payload
    text = json.dumps(decoded, default=json_default)
    printed = json.loads(text)
    assert printed["total"] == "41.99"
    assert printed["tax_rate"] == "0.1900"
    assert printed["issued_at"] == "2026-03-01T12:30:15.250000+00:00"
    assert printed["due_on"] == "2026-03-31"
    assert printed["signature"] == ["AP8B", "AP8C"][seq - 1]
    envelope = {"id": EVENT_ID, "timestamp": 1, "type": "InvoiceIssued", "payload": printed}
    read = from_json(schema, envelope)
    assert read["payload"] == sent
    assert encoder.encode_record(read) == value


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("total", "12.50", Decimal("12.50")),
        ("total", 12.5, Decimal("12.5")),
        ("total", 12, Decimal("12")),
        ("discount", "0.99", Decimal("0.99")),
        ("discount", None, None),
        ("issued_at", 1_772_368_215_250, 1_772_368_215_250),  # epoch ms as it is
        ("issued_at", "2026-03-01T12:30:15.250Z", datetime(2026, 3, 1, 12, 30, 15, 250_000, UTC)),
        ("issued_at", "2026-03-01T12:30:15", datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)),
        (
            "paid_at",
            "2026-03-02T09:00:00.123456+01:00",
            datetime(2026, 3, 2, 8, 0, 0, 123_456, UTC),
        ),
        ("due_on", "2026-03-31", date(2026, 3, 31)),
        ("due_on", 20_543, 20_543),
        ("signature", "AP8B", b"\x00\xff\x01"),
    ],
)
def test_each_json_form_is_read(
    payload_schema: AvroSchema, field: str, text: Any, expected: Any
) -> None:
    record = {**json.loads(json.dumps(invoice(1), default=json_default)), field: text}
    read = from_json(payload_schema, record)
    assert read[field] == expected
    payload_schema.validate(read)


def test_unreadable_json_is_left_for_validation_to_name(payload_schema: AvroSchema) -> None:
    record = {**json.loads(json.dumps(invoice(1), default=json_default)), "total": "lots"}
    with pytest.raises(SchemaValidationError) as caught:
        payload_schema.validate(from_json(payload_schema, record))
    assert caught.value.field == "total"
    assert "decimal.Decimal" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (41.99, "a float is not exact: pass decimal.Decimal('41.99')"),
        (Decimal("41.999"), "41.999 has 3 decimal places but the schema's scale is 2"),
        (Decimal("123456789.00"), "has 9 digits before the point; precision 10 with scale 2"),
        ("41.99", "expected decimal.Decimal (precision 10, scale 2), got str"),
        (Decimal("Infinity"), "Infinity is not a finite decimal"),
    ],
)
@pytest.mark.parametrize("field", ["total", "discount", "lines[1].amount"])
def test_python_api_decimal_errors_name_the_field_and_the_fix(
    payload_schema: AvroSchema, value: Any, reason: str, field: str
) -> None:
    record = invoice(1)
    if field.startswith("lines"):
        record["lines"][1]["amount"] = value
    else:
        record[field] = value
    with pytest.raises(SchemaValidationError) as caught:
        payload_schema.validate(record)
    assert caught.value.field == field
    assert reason in str(caught.value)
