"""Bounded fuzzing of the decode path and of record validation (no broker needed).

Whatever bytes arrive on a topic, decoding ends in an :class:`Event` or a
:class:`DeserializationError` that says where the message sits; whatever record a
caller hands to the producer, encoding ends in bytes that decode back, or in a
:class:`SchemaValidationError` naming the field. Nothing else escapes: no crash, no
fastavro exception, no hang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamkit.errors import DeserializationError, SchemaValidationError
from streamkit.serde.events import Event, EventDecoder, EventEncoder, frame
from streamkit.serde.schemas import AvroSchema, load_schemas
from tests.factories import ORDER_SCHEMA, order
from tests.fakes import mock_registry
from tests.unit.serde.test_events import PLAIN
from tests.unit.serde.test_validation import EVERY_TYPE, VALID, _mutate, values

REPO = Path(__file__).resolve().parents[3]
ORDER = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
EVERYTHING = AvroSchema.from_definition(
    {k: v for k, v in EVERY_TYPE.items() if k != "__named_schemas"}
)
REGISTRY = mock_registry()
SCHEMAS = {
    REGISTRY.register(f"s{n}-value", schema): schema
    for n, schema in enumerate((ORDER, PLAIN, EVERYTHING))
}
UNKNOWN_ID = 99
DECODER = EventDecoder(REGISTRY)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_explain(value: bytes | None) -> Event | DeserializationError:
    """Decode ``value``; the only failure allowed is a located DeserializationError."""
    try:
        return DECODER.decode(value, topic="fuzz", partition=3, offset=42)
    except DeserializationError as exc:
        error = exc
    assert (error.topic, error.partition, error.offset) == ("fuzz", 3, 42)
    assert str(error)
    return error


def _valid_value(seq: int) -> bytes:
    return EventEncoder(ORDER, 1).encode(Event(payload=order(seq), type="OrderPlaced"))


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=400)))
def test_random_bytes_decode_or_fail_clearly(value: bytes | None) -> None:
    _decode_or_explain(value)


@FUZZ
@given(st.sampled_from([*SCHEMAS, UNKNOWN_ID]), st.binary(max_size=400))
def test_random_bodies_behind_a_valid_header_decode_or_fail_clearly(
    schema_id: int, body: bytes
) -> None:
    result = _decode_or_explain(frame(schema_id, body))
    if schema_id == UNKNOWN_ID:
        assert isinstance(result, DeserializationError)
        assert "writer schema" in str(result)


@FUZZ
@given(st.data())
def test_corrupted_valid_messages_decode_or_fail_clearly(data: st.DataObject) -> None:
    value = bytearray(_valid_value(data.draw(st.integers(0, 1000))))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(value) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            value[index] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del value[index:]
            if not value:
                break
        else:
            value[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    _decode_or_explain(bytes(value))


def _encode_or_name_the_field(schema: AvroSchema, record: Any) -> None:
    """Encode ``record`` as the value of ``schema``: it round-trips or names its fault."""
    encoder = EventEncoder(schema, REGISTRY.register("fuzz-value", schema))
    try:
        value = encoder.encode(Event(payload=record, type="T"))
    except SchemaValidationError as exc:
        error = exc
    else:
        decoded = DECODER.decode(value, topic="fuzz")
        assert isinstance(decoded, Event)
        return
    assert error.field
    assert error.field in str(error)
    assert error.schema == schema.name


@FUZZ
@given(st.data())
def test_mutated_records_encode_or_name_the_bad_field(data: st.DataObject) -> None:
    _encode_or_name_the_field(EVERYTHING, _mutate(VALID, data))


@FUZZ
@given(st.data())
def test_mutated_order_payloads_encode_or_name_the_bad_field(data: st.DataObject) -> None:
    _encode_or_name_the_field(ORDER, _mutate(order(1), data))


@FUZZ
@given(values)
def test_arbitrary_values_encode_or_name_the_bad_field(record: Any) -> None:
    _encode_or_name_the_field(EVERYTHING, record)


@pytest.mark.parametrize("schema", [ORDER, EVERYTHING], ids=["order", "everything"])
def test_fuzz_schemas_accept_their_valid_records(schema: AvroSchema) -> None:
    """The fuzzers above start from valid records, or they would test nothing."""
    record = (
        VALID
        if schema is EVERYTHING
        else {"id": "e-1", "timestamp": 1, "type": "OrderPlaced", "payload": order(1)}
    )
    assert schema.check(record)
