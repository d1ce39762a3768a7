"""The compiled check accepts exactly what fastavro's validator accepts."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit.serde.schemas import load_schemas
from streamkit.serde.validation import compile_check
from tests.factories import ORDER_SCHEMA, order

REPO = Path(__file__).resolve().parents[3]

EVERY_TYPE = parse_schema(
    {
        "type": "record",
        "name": "Everything",
        "namespace": "t",
        "fields": [
            {"name": "n", "type": "null"},
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "s", "type": "string"},
            {"name": "y", "type": "bytes"},
            {"name": "x", "type": {"type": "fixed", "name": "Four", "size": 4}},
            {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {"name": "a", "type": {"type": "array", "items": "int"}},
            {"name": "m", "type": {"type": "map", "values": ["null", "string"]}},
            {"name": "u", "type": ["null", "long", "Color"], "default": None},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}, "default": 0},
            {
                "name": "price",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
            },
            {
                "name": "rate",
                "type": {
                    "type": "fixed",
                    "name": "Rate",
                    "size": 4,
                    "logicalType": "decimal",
                    "precision": 6,
                    "scale": 4,
                },
            },
            {"name": "next", "type": ["null", "Everything"], "default": None},
        ],
    }
)
VALID = {
    "n": None,
    "b": True,
    "i": 1,
    "l": 2**40,
    "f": 1.5,
    "d": 2,
    "s": "s",
    "y": b"y",
    "x": b"abcd",
    "e": "RED",
    "a": [1, 2],
    "m": {"k": None},
    "u": "GREEN",
    "id": "00000000-0000-4000-8000-000000000001",
    "ts": 1700000000000,
    "price": Decimal("41.99"),
    "rate": Decimal("0.1900"),
    "next": {
        "n": None,
        "b": False,
        "i": 0,
        "l": 0,
        "f": 0.0,
        "d": 0.0,
        "s": "",
        "y": b"",
        "x": b"\x00\x00\x00\x00",
        "e": "GREEN",
        "a": [],
        "m": {},
        "id": "00000000-0000-4000-8000-000000000002",
        "ts": 0,
        "price": Decimal("-0.01"),
        "rate": b"\x00\x00\x00\x00",
    },
}

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.binary(min_size=4, max_size=4).map(bytearray),
    # decimals of every scale and size, and floats where a decimal belongs
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.sampled_from(["RED", "GREEN", "BLUE", "EUR", "PLACED"]),
    # what the logical types convert: fastavro accepts these in their fields
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.uuids(),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(datum: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(datum, dict):
        for key, value in datum.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(datum, list):
        for index, value in enumerate(datum):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(base: dict[str, Any], data: st.DataObject) -> Any:
    datum = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(datum) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = datum
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(values)
    return datum


def _agree(datum: Any, parsed: Any) -> None:
    compiled = compile_check(parsed, parsed["__named_schemas"])
    try:
        expected = validate(datum, parsed, raise_errors=False, disable_tuple_notation=True)
    except Exception:  # fastavro itself fails on some inputs; the check must say no
        expected = False
    if expected and not _uuid_text_readable(datum):
        expected = False  # fastavro writes it, then cannot read it: the check says no
    assert compiled(datum) is expected, datum


def _uuid_text_readable(datum: Any) -> bool:
    """Each text in a uuid field of an EVERY_TYPE record (``id``, down ``next``) parses."""
    while isinstance(datum, dict):
        value = datum.get("id")
        try:
            if isinstance(value, str):
                uuid.UUID(value)
        except ValueError:
            return False
        datum = datum.get("next")
    return True


def test_valid_records_pass() -> None:
    order_schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
    envelope = {
        "id": "00000000-0000-4000-8000-000000000001",
        "timestamp": 1,
        "type": "t",
        "payload": order(1),
    }
    assert order_schema.check(envelope)
    assert compile_check(EVERY_TYPE, EVERY_TYPE["__named_schemas"])(VALID)


def test_logical_types_take_what_fastavro_converts() -> None:
    check = compile_check(EVERY_TYPE, EVERY_TYPE["__named_schemas"])
    converted = {
        **VALID,
        "id": uuid.uuid4(),
        "ts": datetime(2026, 1, 2, tzinfo=UTC),
        "day": date(2026, 1, 2),
    }
    assert validate(converted, EVERY_TYPE, raise_errors=False)
    assert check(converted)
    assert not check({**VALID, "ts": "yesterday"})


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_agrees_with_fastavro_on_every_type(data: st.DataObject) -> None:
    _agree(_mutate(VALID, data), EVERY_TYPE)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_agrees_with_fastavro_on_the_order_schema(data: st.DataObject) -> None:
    schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
    envelope = {
        "id": "00000000-0000-4000-8000-000000000001",
        "timestamp": 1,
        "type": "t",
        "payload": order(2),
    }
    _agree(_mutate(envelope, data), schema.parsed)


@given(values)
def test_agrees_with_fastavro_on_arbitrary_values(datum: Any) -> None:
    _agree(datum, EVERY_TYPE)


def ARRAY_OF(items: str) -> dict[str, Any]:  # noqa: N802 - reads as a schema constant
    return {"type": "array", "items": items}


NESTED = parse_schema(
    {
        "type": "record",
        "name": "Nested",
        "fields": [
            {"name": "grid", "type": {"type": "array", "items": ARRAY_OF("int")}},
            {"name": "tags", "type": {"type": "map", "values": ARRAY_OF("string")}},
        ],
    }
)


@pytest.mark.parametrize(
    ("datum", "expected"),
    [
        ({"grid": [[1, 2], []], "tags": {"a": ["x"]}}, True),
        ({"grid": [[1, "2"]], "tags": {}}, False),
        ({"grid": [1], "tags": {}}, False),
        ({"grid": [], "tags": {"a": [1]}}, False),
    ],
)
def test_nested_collections(datum: Any, expected: bool) -> None:
    assert validate(datum, NESTED, raise_errors=False) is expected
    assert compile_check(NESTED, NESTED["__named_schemas"])(datum) is expected
