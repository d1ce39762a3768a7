"""Models to schemas (generate), schemas to models (codegen), and their agreement."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("dataclasses_avroschema", reason="model schemas need streamkit[models]")

from dataclasses_avroschema.pydantic import AvroBaseModel
from fastavro.schema import to_parsing_canonical_form
from pydantic import BaseModel, Field

from streamkit.errors import SchemaLoadError
from streamkit.serde.modelschemas import (
    avro_schema_of,
    codegen,
    event_models,
    generate,
    iter_model_checks,
    model_mismatches,
    write_schemas,
)
from streamkit.serde.schemas import AvroSchema, JsonSchema, load_schemas
from tests.typed_models import Invoice

REPO = Path(__file__).resolve().parents[3]


def import_source(source: str, name: str, directory: Path) -> ModuleType:
    """Write ``source`` as module ``name`` and import it."""
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[ModuleType]:
    """The models codegen writes for the example schemas, imported."""
    yield import_source(codegen(REPO / "schemas"), "streamkit_codegen_examples", tmp_path)
    sys.modules.pop("streamkit_codegen_examples", None)


def test_generate_writes_one_file_per_event_with_its_topic() -> None:
    files = generate("tests.typed_models")
    assert list(files) == ["invoice.avsc"]  # Address and InvoiceLine are nested
    schema = AvroSchema.from_definition(files["invoice.avsc"])
    assert (schema.name, schema.topic) == ("tests.typed.Invoice", "invoices")
    types = {f["name"]: f["type"] for f in files["invoice.avsc"]["fields"]}
    assert types["issued_at"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert types["due"] == {"type": "int", "logicalType": "date"}
    assert types["invoice_id"] == {"type": "string", "logicalType": "uuid"}
    assert types["total"] == {
        "type": "bytes",
        "logicalType": "decimal",
        "precision": 12,
        "scale": 2,
    }
    assert types["status"]["symbols"] == ["DRAFT", "SENT", "PAID"]
    assert types["note"] == ["null", "string"]


def test_generate_json_uses_pydantics_schema(tmp_path: Path) -> None:
    write_schemas(generate("tests.typed_models", "json"), tmp_path)
    schema = load_schemas(tmp_path)["Invoice"]
    assert isinstance(schema, JsonSchema)
    assert schema.topic == "invoices"
    schema.validate(Invoice.model_validate(invoice_dict()).model_dump(mode="json"))


def invoice_dict() -> dict[str, object]:
    from tests.typed_models import invoice

    return invoice(1).model_dump()


def test_codegen_then_generate_gives_the_same_schemas(
    generated: ModuleType, tmp_path: Path
) -> None:
    write_schemas(generate(generated), tmp_path)
    original, regenerated = load_schemas(REPO / "schemas"), load_schemas(tmp_path)
    assert sorted(regenerated) == sorted(s.name for s in original.top_level())
    for name in regenerated:
        mine, theirs = regenerated[name], original[name]
        assert isinstance(mine, AvroSchema)
        assert isinstance(theirs, AvroSchema)
        assert to_parsing_canonical_form(mine.parsed) == to_parsing_canonical_form(theirs.parsed)
        assert mine.topic == theirs.topic
    checks = list(iter_model_checks(event_models(generated), original))
    assert [(m.__name__, mm) for m, _, mm in checks] == [
        ("OrderPlaced", []),
        ("PaymentReceived", []),
    ]


def test_codegen_refuses_an_unresolvable_type(tmp_path: Path) -> None:
    (tmp_path / "a.avsc").write_text(
        '{"type": "record", "name": "A", "fields": [{"name": "b", "type": "Missing"}]}'
    )
    with pytest.raises(SchemaLoadError, match="defined nowhere"):
        codegen(tmp_path)


class Line(AvroBaseModel):
    sku: str
    quantity: str  # the schema says long
    unit_price: Decimal = Field(max_digits=10, decimal_places=2)

    class Meta:
        schema_name = "InvoiceLine"


def _schema_with(**changes: object) -> AvroSchema:
    definition = avro_schema_of(Invoice)
    fields = [f for f in definition["fields"] if f["name"] not in changes]
    fields += [{"name": k, **v} for k, v in changes.items() if isinstance(v, dict)]  # type: ignore[dict-item]
    return AvroSchema.from_definition({**definition, "fields": fields})


@pytest.mark.parametrize(
    ("schema", "field", "in_schema", "in_model"),
    [
        (_schema_with(note=None), "note", "no such field", "null | string"),
        (
            _schema_with(coupon={"type": "string"}),
            "coupon",
            "string",
            "no such field",
        ),
        (
            _schema_with(channel={"type": "string", "default": "app"}),
            "channel",
            'default "app"',
            'default "web"',
        ),
        (_schema_with(due={"type": "string"}), "due", "string", "int (date)"),
        (
            _schema_with(
                total={
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4}
                }
            ),
            "total",
            "decimal(12, 4)",
            "decimal(12, 2)",
        ),
    ],
    ids=["missing-in-schema", "missing-in-model", "default", "type", "decimal-scale"],
)
def test_mismatches_name_the_field(
    schema: AvroSchema, field: str, in_schema: str, in_model: str
) -> None:
    [mismatch] = model_mismatches(Invoice, schema)
    assert (mismatch.field, mismatch.in_schema, mismatch.in_model) == (field, in_schema, in_model)
    assert f"field {field!r}" in str(mismatch)


def test_nested_mismatches_carry_the_path() -> None:
    class Invoice2(Invoice):
        lines: list[Line]  # type: ignore[assignment]

        class Meta:
            namespace = "tests.typed"
            schema_name = "Invoice"

    found = model_mismatches(Invoice2, AvroSchema.from_definition(avro_schema_of(Invoice)))
    assert [(m.field, m.in_schema, m.in_model) for m in found] == [
        ("lines[].quantity", "long", "string")
    ]


def test_enum_symbols_are_compared() -> None:
    definition = avro_schema_of(Invoice)
    for f in definition["fields"]:
        if f["name"] == "status":
            f["type"] = {**f["type"], "symbols": ["DRAFT", "SENT"]}
    [mismatch] = model_mismatches(Invoice, AvroSchema.from_definition(definition))
    assert mismatch.field == "status"
    assert "PAID" in mismatch.in_model


def test_json_schema_mismatches_name_the_property() -> None:
    class Other(BaseModel):
        invoice_id: str
        total: int

    schema = JsonSchema.from_definition({**Invoice.model_json_schema(), "title": "Invoice"})
    found = {m.field: (m.in_schema, m.in_model) for m in model_mismatches(Other, schema)}
    assert found["status"] == ("one of DRAFT, SENT, PAID", "no such property")
    assert "invoice_id" not in found  # a UUID is a string in JSON either way
    assert found["total"] == ("number | string", "integer")


def test_a_plain_model_cannot_be_mapped_to_avro() -> None:
    class Plain(BaseModel):
        x: int

    with pytest.raises(SchemaLoadError, match="AvroBaseModel"):
        avro_schema_of(Plain)


def test_event_models_refuses_a_module_without_models() -> None:
    with pytest.raises(SchemaLoadError, match="defines no"):
        event_models("json")
    with pytest.raises(SchemaLoadError, match="cannot import"):
        event_models("no_such_module_here")
