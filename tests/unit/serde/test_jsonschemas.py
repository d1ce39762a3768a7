"""JSON Schema event schemas: loading, validation errors, the JSON wire format."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streamkit.errors import (
    DeserializationError,
    SchemaLoadError,
    SchemaValidationError,
    SerializationError,
)
from streamkit.serde.events import Event, EventDecoder, EventEncoder, frame, unframe
from streamkit.serde.jsonschemas import JsonSchema
from streamkit.serde.schemas import load_schemas
from tests.factories import JSON_ORDER_SCHEMA, JSON_SCHEMAS_DIR, ORDER_SCHEMA, order

REPO = Path(__file__).resolve().parents[3]
ENVELOPE = {"id": "3f7e1c9a-0b5d-4c1e-9a6f-2d8b7c4e5f10", "timestamp": 1, "type": "OrderPlaced"}


@pytest.fixture(scope="module")
def schema() -> JsonSchema:
    loaded = load_schemas(JSON_SCHEMAS_DIR)[JSON_ORDER_SCHEMA]
    assert isinstance(loaded, JsonSchema)
    return loaded


def _registry(schema_id: int, writer: JsonSchema) -> Any:
    return SimpleNamespace(schema_by_id={schema_id: writer}.__getitem__)


def test_json_files_load_beside_avro(tmp_path: Path) -> None:
    for source in [*(REPO / "schemas" / "orders").glob("*.avsc"), *JSON_SCHEMAS_DIR.glob("*")]:
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "untitled.json").write_text('{"type": "object"}')
    loaded = load_schemas(tmp_path)
    json_schema = loaded.for_topic("orders-json")
    assert json_schema.name == JSON_ORDER_SCHEMA
    assert json_schema.schema_type == "JSON"
    assert loaded[ORDER_SCHEMA].schema_type == "AVRO"
    assert loaded["untitled"].field_names == frozenset()
    assert json_schema.field_names == {"id", "timestamp", "type", "payload"}
    assert json.loads(json_schema.text) == json_schema.definition
    assert " " not in json_schema.text.partition('"description"')[0]


def test_valid_record_passes(schema: JsonSchema) -> None:
    schema.validate({**ENVELOPE, "payload": order(4)})


@pytest.mark.parametrize(
    ("mutate", "field", "expected", "actual"),
    [
        (lambda p: p.pop("customer_id"), "payload.customer_id", "string", "missing"),
        (lambda p: p.update(total_cents="42"), "payload.total_cents", "integer", "str"),
        (
            lambda p: p["items"][1].update(quantity=1.5),
            "payload.items[1].quantity",
            "integer",
            "float",
        ),
        (
            lambda p: p["shipping_address"].update(city=None),
            "payload.shipping_address.city",
            "string",
            "NoneType",
        ),
        (lambda p: p.update(status="LOST"), "payload.status", "one of PLACED", "'LOST'"),
        (
            lambda p: p["items"][0].update(quantity=0),
            "payload.items[0].quantity",
            "minimum 1",
            "int",
        ),
        (lambda p: p.pop("shipping_address"), "payload.shipping_address", "object", "missing"),
    ],
)
def test_invalid_record_names_the_field(
    schema: JsonSchema, mutate: Any, field: str, expected: str, actual: str
) -> None:
    payload = order(1)
    mutate(payload)
    with pytest.raises(SchemaValidationError) as refused:
        schema.validate({**ENVELOPE, "payload": payload})
    assert refused.value.field == field
    assert refused.value.expected.startswith(expected)
    assert refused.value.actual == actual
    assert field in str(refused.value)


def test_root_errors_name_the_root(schema: JsonSchema) -> None:
    with pytest.raises(SchemaValidationError) as refused:
        schema.validate([1])
    assert (refused.value.field, refused.value.expected, refused.value.actual) == (
        "<root>",
        "object",
        "list",
    )
    with pytest.raises(SchemaValidationError) as missing:
        schema.validate({"payload": order(1)})
    assert missing.value.field == "id"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"$schema": "https://json-schema.org/draft/2020-12/schema"}', "unsupported JSON Schema"),
        ('{"type": "bogus"}', "invalid JSON schema"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "invalid JSON schema"),
    ],
)
def test_bad_schema_files_fail_at_load(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(SchemaLoadError, match=message) as refused:
        load_schemas(tmp_path)
    assert "bad.json" in str(refused.value)


def test_one_name_in_two_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text('{"title": "t.Same", "type": "object"}')
    with pytest.raises(SchemaLoadError, match="defined twice"):
        load_schemas(tmp_path)


def test_envelope_round_trips_as_confluent_json(schema: JsonSchema) -> None:
    encoder = EventEncoder(schema, 11)
    assert encoder.envelope
    event = Event(payload=order(2), type="OrderPlaced", id=ENVELOPE["id"], timestamp=5)
    value = encoder.encode(event)
    schema_id, body = unframe(value)
    assert schema_id == 11
    assert json.loads(bytes(body).decode("utf-8"))["payload"] == order(2) | {
        "placed_at": event.payload["placed_at"]
    }
    decoded = EventDecoder(_registry(11, schema)).decode(
        value, topic="t", partition=0, offset=3, headers=encoder.headers(event)
    )
    assert (decoded.id, decoded.type, decoded.timestamp) == (event.id, "OrderPlaced", 5)
    assert decoded.payload == event.payload
    assert decoded.schema_id == 11


def test_plain_json_payload_takes_id_from_headers() -> None:
    plain = JsonSchema.from_definition({"title": "t.Ping", "type": "object"})
    encoder = EventEncoder(plain, 3)
    assert not encoder.envelope
    event = Event(payload={"n": 1}, type="Ping")
    decoded = EventDecoder(_registry(3, plain)).decode(
        encoder.encode(event), topic="t", headers=encoder.headers(event)
    )
    assert (decoded.id, decoded.payload) == (event.id, {"n": 1})


def test_non_json_values_are_refused_before_produce() -> None:
    plain = JsonSchema.from_definition({"title": "t.Any"})
    with pytest.raises(SerializationError, match="as JSON"):
        EventEncoder(plain, 3).encode(Event(payload=float("nan"), type="t"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"n": "one"}', "does not match its writer schema"),
        (b"\xff{", "JSON body does not match writer schema"),
    ],
)
def test_undecodable_json_values_are_refused(body: bytes, message: str) -> None:
    writer = JsonSchema.from_definition(
        {"title": "t.Ping", "type": "object", "properties": {"n": {"type": "integer"}}}
    )
    with pytest.raises(DeserializationError, match=message) as refused:
        EventDecoder(_registry(3, writer)).decode(frame(3, body), topic="t", offset=9)
    assert refused.value.offset == 9
