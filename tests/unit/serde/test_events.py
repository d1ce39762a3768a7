from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streamkit.errors import DeserializationError, RegistryError
from streamkit.serde.events import (
    HEADER_EVENT_ID,
    Event,
    EventDecoder,
    EventEncoder,
    frame,
    header_value,
    new_event_id,
    unframe,
)
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, load_schemas
from tests.factories import ORDER_SCHEMA, order
from tests.fakes import mock_registry

REPO = Path(__file__).resolve().parents[3]
PLAIN = AvroSchema.from_definition(
    {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "long"}]}
)


def registry_with(schema: AvroSchema, subject: str = "t-value") -> tuple[SchemaRegistry, int]:
    """A registry on a fresh mock:// scope holding ``schema``, and its id."""
    registry = mock_registry()
    return registry, registry.register(subject, schema)


@pytest.fixture
def plain_registry() -> SchemaRegistry:
    """PLAIN registered as id 1 (the first id of a fresh scope)."""
    registry, schema_id = registry_with(PLAIN)
    assert schema_id == 1
    return registry


@pytest.fixture(scope="module")
def envelope_schema() -> AvroSchema:
    return load_schemas(REPO / "schemas")[ORDER_SCHEMA]


def test_frame_round_trip() -> None:
    schema_id, body = unframe(frame(258, b"abc"))
    assert schema_id == 258
    assert bytes(body) == b"abc"


@pytest.mark.parametrize("value", [None, b"", b"\x00\x00", b"\x01\x00\x00\x00\x01body"])
def test_unframe_refuses_non_wire_format(value: bytes | None) -> None:
    with pytest.raises(DeserializationError):
        unframe(value)


def test_envelope_round_trip_keeps_id_type_time(envelope_schema: AvroSchema) -> None:
    registry, schema_id = registry_with(envelope_schema, "orders-value")
    encoder = EventEncoder(envelope_schema, schema_id)
    assert encoder.envelope
    event = Event(payload=order(3), type="OrderPlaced", key=b"k")
    value = encoder.encode(event)
    headers = encoder.headers(event)
    decoded = EventDecoder(registry).decode(
        value, topic="orders", partition=1, offset=9, key=b"k", headers=headers
    )
    assert (decoded.id, decoded.type, decoded.timestamp) == (event.id, event.type, event.timestamp)
    assert decoded.payload["order_id"] == "order-3"
    assert (decoded.topic, decoded.partition, decoded.offset, decoded.schema_id) == (
        "orders",
        1,
        9,
        schema_id,
    )
    assert header_value(headers, HEADER_EVENT_ID) == event.id.encode()


def test_plain_record_takes_metadata_from_headers(plain_registry: SchemaRegistry) -> None:
    encoder = EventEncoder(PLAIN, 1)
    assert not encoder.envelope
    event = Event(payload={"n": 5}, type="Ping", timestamp=1234)
    decoded = EventDecoder(plain_registry).decode(
        encoder.encode(event), topic="t", headers=encoder.headers(event)
    )
    assert decoded.payload == {"n": 5}
    assert (decoded.id, decoded.type, decoded.timestamp) == (event.id, "Ping", 1234)


def test_plain_record_without_headers_gets_position_id(plain_registry: SchemaRegistry) -> None:
    value = EventEncoder(PLAIN, 1).encode(Event(payload={"n": 1}, type="Ping"))
    decoded = EventDecoder(plain_registry).decode(value, topic="t", partition=0, offset=4)
    assert decoded.id == "t-0-4"
    assert decoded.type == "Ping"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"garbage!", "wire format"),
        (frame(99, b"\x02"), "cannot resolve writer schema"),
        (frame(1, b""), "does not match writer schema"),
    ],
)
def test_decode_failures_carry_position(
    value: bytes, reason: str, plain_registry: SchemaRegistry
) -> None:
    with pytest.raises(DeserializationError, match=reason) as caught:
        EventDecoder(plain_registry).decode(value, topic="t", partition=2, offset=3)
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == ("t", 2, 3)


class UnreachableRegistry:
    """A registry that cannot be reached, or answers with a server error."""

    def __init__(self, error: RegistryError) -> None:
        self.error = error

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RegistryError("cannot reach the schema registry", transient=True),
        RegistryError("registry failed", http_status=503),
        RegistryError("too many requests", http_status=429),
    ],
)
def test_an_unreachable_registry_is_not_a_bad_message(error: RegistryError) -> None:
    # A DeserializationError would send a good message to the dead-letter topic.
    with pytest.raises(RegistryError) as caught:
        EventDecoder(UnreachableRegistry(error)).decode(frame(1, b"\x02"), topic="t")
    assert not isinstance(caught.value, DeserializationError)
    assert caught.value.transient


def test_a_definite_registry_answer_makes_the_message_undecodable() -> None:
    refused = RegistryError("bad request", http_status=422)
    assert not refused.transient
    with pytest.raises(DeserializationError, match="cannot resolve writer schema"):
        EventDecoder(UnreachableRegistry(refused)).decode(frame(1, b"\x02"), topic="t")


def test_reader_schema_fills_new_field_defaults(plain_registry: SchemaRegistry) -> None:
    reader = AvroSchema.from_definition(
        {
            "type": "record",
            "name": "Ping",
            "fields": [
                {"name": "n", "type": "long"},
                {"name": "tag", "type": "string", "default": "none"},
            ],
        }
    )
    value = EventEncoder(PLAIN, 1).encode(Event(payload={"n": 2}, type="Ping"))
    decoded = EventDecoder(plain_registry, {"t": reader}).decode(value, topic="t")
    assert decoded.payload == {"n": 2, "tag": "none"}


def test_header_value_takes_last_and_accepts_dicts() -> None:
    assert header_value([("a", b"1"), ("a", b"2")], "a") == b"2"
    assert header_value({"a": "x"}, "a") == b"x"
    assert header_value(None, "a") is None


def test_event_time_is_utc(envelope_schema: Any) -> None:
    assert Event(payload={}, type="t", timestamp=0).time.isoformat() == "1970-01-01T00:00:00+00:00"


def test_new_event_ids_are_random_version_4_uuids() -> None:
    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_envelope_id_and_time_are_read_as_written_payload_keeps_logical_types(
    envelope_schema: AvroSchema,
) -> None:
    registry, schema_id = registry_with(envelope_schema, "orders-value")
    encoder = EventEncoder(envelope_schema, schema_id)
    decoder = EventDecoder(registry)
    for timestamp in (0, 1, 1_732_476_543_123, 253_402_300_799_999):
        event = Event(payload=order(1), type="OrderPlaced", timestamp=timestamp)
        decoded = decoder.decode(encoder.encode(event), topic="orders")
        assert (decoded.id, decoded.timestamp) == (event.id, timestamp)
        assert isinstance(decoded.payload["placed_at"], datetime)
