"""`streamkit schemas generate|codegen` and the pytest helper, offline."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("typer", reason="the CLI needs streamkit[cli]")
pytest.importorskip("dataclasses_avroschema", reason="model schemas need streamkit[models]")

from typer.testing import CliRunner

from streamkit.cli.main import app
from streamkit.serde.schemas import load_schemas
from streamkit.testing.schemas import assert_models_match_schemas

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty package ``svc`` importable from the working directory (``tmp_path``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__init__.py").write_text("")
    yield tmp_path / "svc"
    for name in [n for n in sys.modules if n == "svc" or n.startswith("svc.")]:
        del sys.modules[name]


def test_codegen_then_generate_round_trip(package: Path, tmp_path: Path) -> None:
    made = runner.invoke(
        app, ["schemas", "codegen", str(REPO / "schemas"), "--out", "svc/events.py"]
    )
    assert made.exit_code == 0, made.output
    assert "class OrderPlaced(AvroBaseModel)" in (package / "events.py").read_text()

    written = runner.invoke(app, ["schemas", "generate", "svc.events", "--out", "generated"])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in (tmp_path / "generated").iterdir()) == [
        "order_placed.avsc",
        "payment_received.avsc",
    ]
    regenerated = load_schemas(tmp_path / "generated")
    assert {s.topic for s in regenerated.values()} == {"orders", "payments"}
    assert_models_match_schemas("svc.events", REPO / "schemas")


def test_generate_json_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["schemas", "generate", "tests.typed_models", "--out", "out", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    schema = json.loads((tmp_path / "out" / "invoice.json").read_text())
    assert (schema["title"], schema["streamkit.topic"]) == ("Invoice", "invoices")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schemas", "generate", "no_such_module_xyz"], "cannot import 'no_such_module_xyz'"),
        (["schemas", "generate", "tests.typed_models", "--format", "xml"], "avro or json"),
        (["schemas", "codegen", "/nonexistent-dir"], "no .avsc files"),
    ],
)
def test_bad_input_is_named(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_the_pytest_helper_names_the_field(package: Path) -> None:
    source = (REPO / "schemas").resolve()
    runner.invoke(app, ["schemas", "codegen", str(source), "--out", "svc/events.py"])
    text = (package / "events.py").read_text()
    (package / "events.py").write_text(text.replace("total_cents: int", "total_cents: str"))
    with pytest.raises(
        AssertionError, match=r"field 'payload.total_cents': schema has long, model has string"
    ):
        assert_models_match_schemas("svc.events", source)
