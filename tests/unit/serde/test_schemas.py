from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamkit.errors import SchemaLoadError, SchemaValidationError
from streamkit.serde.schemas import AvroSchema, load_schemas, subject_name, validate_record
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def example() -> Any:
    return load_schemas(REPO / "schemas")


def _write(folder: Path, name: str, definition: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(definition))


def test_examples_load_with_cross_file_named_types(example: Any) -> None:
    assert {s.name for s in example.top_level()} == {ORDER_SCHEMA, PAYMENT_SCHEMA}
    assert example.for_topic("orders").name == ORDER_SCHEMA
    standalone = AvroSchema.from_definition(example[ORDER_SCHEMA].text)
    assert standalone.name == ORDER_SCHEMA
    assert example[ORDER_SCHEMA].text.count('"name":"Address"') == 1  # inlined once


def test_reference_to_a_later_file_resolves(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a_user.avsc",
        {
            "type": "record",
            "name": "User",
            "namespace": "t",
            "fields": [{"name": "home", "type": "t.Place"}, {"name": "work", "type": "Place"}],
        },
    )
    _write(
        tmp_path,
        "z_place.avsc",
        {
            "type": "record",
            "name": "Place",
            "namespace": "t",
            "fields": [{"name": "city", "type": "string"}],
        },
    )
    user = load_schemas(tmp_path)["t.User"]
    validate_record(user, {"home": {"city": "a"}, "work": {"city": "b"}})


def test_unknown_named_type_names_the_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "user.avsc",
        {"type": "record", "name": "User", "fields": [{"name": "p", "type": "Nowhere"}]},
    )
    with pytest.raises(SchemaLoadError) as caught:
        load_schemas(tmp_path)
    assert "user.avsc" in str(caught.value)
    assert "Nowhere" in str(caught.value)


@pytest.mark.parametrize("content", ["{not json", '"string"', '{"type": "record"}'])
def test_invalid_files_are_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.avsc").write_text(content)
    with pytest.raises(SchemaLoadError, match=r"bad\.avsc"):
        load_schemas(tmp_path)


def test_missing_directory_and_unknown_name(tmp_path: Path, example: Any) -> None:
    with pytest.raises(SchemaLoadError, match="does not exist"):
        load_schemas(tmp_path / "nope")
    with pytest.raises(SchemaLoadError, match="known: "):
        example["no.Such"]
    with pytest.raises(SchemaLoadError, match="expected exactly one"):
        example.for_topic("unknown-topic")


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("topic", "orders-value"), ("record", "a.B"), ("topic_record", "orders-a.B")],
)
def test_subject_name_strategies(strategy: Any, expected: str) -> None:
    assert subject_name(strategy, "orders", "a.B") == expected


def _envelope(payload: Any) -> dict[str, Any]:
    return {
        "id": "00000000-0000-4000-8000-000000000001",
        "timestamp": 1,
        "type": "t",
        "payload": payload,
    }


@pytest.mark.parametrize(
    ("mutate", "field", "expected", "actual"),
    [
        (lambda p: p.pop("order_id"), "payload.order_id", "string", "missing"),
        (lambda p: p.update(total_cents=1.5), "payload.total_cents", "long", "float"),
        (
            lambda p: p["items"].append("x"),
            "payload.items[2]",
            "streamkit.examples.orders.LineItem",
            "str",
        ),
        (
            lambda p: p.update(currency="YEN"),
            "payload.currency",
            "one of EUR, USD, GBP, CHF",
            "'YEN'",
        ),
        (lambda p: p.update(coupon=3), "payload.coupon", "null | string", "int"),
        (
            lambda p: p.update(shipping_address=None),
            "payload.shipping_address",
            "streamkit.examples.orders.Address",
            "NoneType",
        ),
    ],
)
def test_validation_error_names_field_expected_and_actual(
    example: Any, mutate: Any, field: str, expected: str, actual: str
) -> None:
    payload = order(1)
    mutate(payload)
    with pytest.raises(SchemaValidationError) as caught:
        validate_record(example[ORDER_SCHEMA], _envelope(payload))
    assert (caught.value.field, caught.value.expected, caught.value.actual) == (
        field,
        expected,
        actual,
    )
    assert field in str(caught.value)


def test_fields_with_defaults_may_be_omitted(example: Any) -> None:
    payload = order(1)
    del payload["channel"], payload["coupon"]
    validate_record(example[ORDER_SCHEMA], _envelope(payload))


def test_a_schema_set_answers_membership_without_raising() -> None:
    schemas = load_schemas(REPO / "schemas")
    assert "streamkit.examples.orders.OrderPlaced" in schemas
    assert "no.such.Schema" not in schemas
