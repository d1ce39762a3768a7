"""The compiled writer writes fastavro's bytes whenever it takes a value, and only valid ones."""

from __future__ import annotations

import enum
import io
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit.serde.avro_writer import compile_writer
from streamkit.serde.schemas import load_schemas
from tests.factories import ORDER_SCHEMA, order
from tests.unit.serde.test_validation import EVERY_TYPE, VALID, _mutate, values

REPO = Path(__file__).resolve().parents[3]
COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}
FOUR = {"type": "fixed", "name": "Four", "size": 4}


def _schema(*fields: tuple[str, Any] | tuple[str, Any, Any]) -> Any:
    """A record of the given (name, type[, default]) fields, after Color and Four fields."""
    defined = [
        {"name": "color", "type": COLOR, "default": "RED"},
        {"name": "four", "type": FOUR},
    ]
    own = [
        {"name": spec[0], "type": spec[1], **({"default": spec[2]} if len(spec) == 3 else {})}
        for spec in fields
    ]
    return parse_schema({"type": "record", "name": "R", "fields": [*defined, *own]})


# Union shapes whose branch choice depends on order and type rules, and defaults.
SCHEMAS = {
    "scalars in order": _schema(("u", ["int", "boolean", "string", "bytes"])),
    "boolean first": _schema(("u", ["boolean", "long", "double"])),
    "double before long": _schema(("u", ["null", "double", "long"])),
    "enum before string": _schema(("u", ["Color", "string"])),
    "string before enum": _schema(("u", ["string", "Color"])),
    "fixed before bytes": _schema(("u", ["Four", "bytes"])),
    "containers": _schema(
        ("m", ["null", {"type": "map", "values": ["null", "long"]}]),
        ("a", [{"type": "array", "items": {"type": "array", "items": "string"}}, "null"]),
    ),
    "defaults": _schema(
        ("d1", "long", 7),
        ("d2", {"type": "array", "items": "Color"}, ["GREEN"]),
        ("d3", ["null", "string"], None),
        (
            "d4",
            {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]},
            {"x": 3},
        ),
        ("d5", "Inner", {"x": 4}),
        ("d6", {"type": "map", "values": "float"}, {"k": 1.5}),
    ),
    "logical": _schema(
        ("t", ["null", {"type": "long", "logicalType": "timestamp-micros"}]),
        ("day", {"type": "int", "logicalType": "date"}),
        ("id", ["null", {"type": "string", "logicalType": "uuid"}]),
    ),
}
SAMPLES = {
    "scalars in order": {"u": 1},
    "boolean first": {"u": True},
    "double before long": {"u": 3},
    "enum before string": {"u": "RED"},
    "string before enum": {"u": "GREEN"},
    "fixed before bytes": {"u": b"abcd"},
    "containers": {"m": {"a": 1, "b": None}, "a": [["x"], []]},
    "defaults": {},
    "logical": {"t": 5, "day": date(2026, 1, 2), "id": str(uuid.uuid4())},
}


def _sample(name: str) -> dict[str, Any]:
    return {"four": b"abcd", **SAMPLES[name]}


def _fastavro(datum: Any, parsed: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, datum)
    return buffer.getvalue()


def _taken(datum: Any, parsed: Any) -> bytes | None:
    """The writer's bytes, or None when it does not take the value (the caller falls back)."""
    write = compile_writer(parsed, parsed["__named_schemas"])
    assert write is not None
    out = bytearray()
    try:
        return bytes(out) if write(datum, out) else None
    except Exception:  # the encoder falls back on any exception too
        return None


def _agree(datum: Any, parsed: Any) -> None:
    written = _taken(datum, parsed)
    if written is not None:
        assert validate(datum, parsed, raise_errors=False), datum
        assert written == _fastavro(datum, parsed), datum


def _order_envelope(seq: int) -> dict[str, Any]:
    return {
        "id": "00000000-0000-4000-8000-000000000001",
        "timestamp": 1,
        "type": "t",
        "payload": order(seq),
    }


def test_the_common_records_take_the_fast_path_with_fastavros_bytes() -> None:
    schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
    for seq in range(10):  # with and without a coupon (a union branch)
        envelope = _order_envelope(seq)
        assert _taken(envelope, schema.parsed) == _fastavro(envelope, schema.parsed)
    assert _taken(VALID, EVERY_TYPE) == _fastavro(VALID, EVERY_TYPE)
    converted = {
        **VALID,
        "id": uuid.uuid4(),
        "ts": datetime(2026, 1, 2, tzinfo=UTC),
        "day": date(2026, 1, 2),
    }
    assert _taken(converted, EVERY_TYPE) == _fastavro(converted, EVERY_TYPE)


class Shade(str, enum.Enum):  # noqa: UP042 - the shape codegen writes
    """A str enum, as models generated from an Avro enum declare it."""

    RED = "RED"
    GREEN = "GREEN"


def test_str_enum_members_take_the_fast_path_outside_unions() -> None:
    """A model's dump holds enum members: written as their symbol, fastavro's bytes."""
    schema = _schema(("c", "Color"), ("cs", {"type": "array", "items": "Color"}))
    datum = {"four": b"abcd", "color": Shade.GREEN, "c": Shade.RED, "cs": [Shade.GREEN]}
    assert _taken(datum, schema) == _fastavro(datum, schema)
    # In a union whose string branch comes first fastavro writes a member as a string:
    # the fast path leaves it to fastavro.
    union = SCHEMAS["string before enum"]
    member = {**_sample("string before enum"), "u": Shade.RED}
    assert _taken(member, union) is None
    _agree(member, SCHEMAS["enum before string"])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_union_choices_and_defaults_match_fastavro(name: str) -> None:
    datum = _sample(name)
    assert _taken(datum, SCHEMAS[name]) == _fastavro(datum, SCHEMAS[name])


@pytest.mark.parametrize(
    "datum",
    [
        {**VALID, "s": b"not a string"},  # wrong type: fastavro's path names the field
        {**VALID, "i": 2**40},  # out of range
        {**VALID, "u": ("long", 5)},  # union tuple notation: fastavro's
        {**VALID, "next": {**VALID, "-type": "t.Everything"}},  # a branch named by "-type"
        {**VALID, "a": (1, 2)},  # a Sequence other than list
        {**VALID, "s": "\ud800"},  # not encodable: fastavro's path reports it
    ],
)
def test_values_it_does_not_take_fall_back(datum: Any) -> None:
    assert _taken(datum, EVERY_TYPE) is None


@pytest.mark.parametrize(
    "union",
    [
        [{"type": "record", "name": "A", "fields": []}, {"type": "map", "values": "int"}],
        [{"type": "array", "items": "int"}, {"type": "array", "items": "string"}],
        ["float", "double"],
        ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}],
    ],
)
def test_unions_whose_branch_depends_on_strictness_get_no_writer(union: list[Any]) -> None:
    parsed = parse_schema({"type": "record", "name": "U", "fields": [{"name": "u", "type": union}]})
    assert compile_writer(parsed, parsed["__named_schemas"]) is None


@pytest.mark.parametrize("base", ["every type", "order"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_agrees_with_fastavro_on_mutated_records(base: str, data: st.DataObject) -> None:
    if base == "every type":
        _agree(_mutate(VALID, data), EVERY_TYPE)
    else:
        schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
        _agree(_mutate(_order_envelope(2), data), schema.parsed)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_agrees_with_fastavro_on_union_shapes(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SCHEMAS)))
    datum = {**_sample(name), "u": data.draw(values)}
    _agree(_mutate(datum, data), SCHEMAS[name])


INT32, INT64 = st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1)
VALID_FIELDS = {
    "n": st.none(),
    "b": st.booleans(),
    "i": INT32,
    "l": INT64,
    "f": st.floats(width=32, allow_nan=False) | st.integers(-(2**24), 2**24),
    "d": st.floats(allow_nan=False) | INT64,
    "s": st.text(),
    "y": st.binary() | st.binary().map(bytearray),
    "x": st.binary(min_size=4, max_size=4),
    "e": st.sampled_from(["RED", "GREEN"]),
    "a": st.lists(INT32, max_size=4),
    "m": st.dictionaries(st.text(max_size=3), st.none() | st.text(max_size=3), max_size=3),
    "id": st.uuids() | st.uuids().map(str),
    "ts": INT64 | st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
    "price": st.decimals(min_value=-9999, max_value=9999, places=2),  # precision 6, scale 2
    "rate": st.decimals(min_value=-99, max_value=99, places=4)  # fixed(4), precision 6
    | st.binary(min_size=4, max_size=4),
}
OPTIONAL_FIELDS = {  # fields with a default: absent or given
    "u": st.none() | INT64 | st.sampled_from(["RED", "GREEN"]),
    "day": INT32 | st.dates(),
    "next": st.none() | st.just(VALID["next"]),
}


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(VALID_FIELDS, optional=OPTIONAL_FIELDS),
)
def test_takes_every_valid_record_of_plain_types(datum: dict[str, Any]) -> None:
    assert validate(datum, EVERY_TYPE)
    assert _taken(datum, EVERY_TYPE) == _fastavro(datum, EVERY_TYPE)


@given(values)
def test_agrees_with_fastavro_on_arbitrary_values(datum: Any) -> None:
    _agree(datum, EVERY_TYPE)
