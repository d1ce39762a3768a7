"""``streamkit schemas generate|codegen`` and the model half of ``schemas check``.

Model-first: ``generate`` writes the schemas of a module's event models; schema-first:
``codegen`` writes pydantic models from ``.avsc`` files (see
:mod:`streamkit.serde.modelschemas`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from streamkit._extras import require
from streamkit.cli.commands import exit_on_error, schemas_app

if TYPE_CHECKING:
    from streamkit.serde.modelschemas import SchemaFormat
    from streamkit.serde.schemas import SchemaSet

__all__ = ["check_models", "schemas_codegen", "schemas_generate"]


def _modelschemas() -> ModuleType:
    # The model <-> schema mapping is the `models` extra (dataclasses-avroschema): the
    # rest of the CLI works without it.
    with exit_on_error():
        require("models", "dataclasses_avroschema")
    from streamkit.serde import modelschemas

    return modelschemas


def _importable_from_here() -> None:
    # `streamkit schemas generate my_service.events` runs from the service's checkout,
    # as `python -m` would: its modules import from the working directory.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


@schemas_app.command("generate")
def schemas_generate(
    module: Annotated[
        str, typer.Argument(help="Module of the event models, e.g. my_service.events.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the schema files into.")] = Path(
        "schemas"
    ),
    schema_format: Annotated[
        str, typer.Option("--format", help="avro (.avsc) or json (JSON Schema).")
    ] = "avro",
) -> None:
    """Write the schema of every event model of MODULE (model-first)."""
    if schema_format not in ("avro", "json"):
        raise typer.BadParameter("must be avro or json", param_hint="--format")
    chosen: SchemaFormat = "avro" if schema_format == "avro" else "json"
    _importable_from_here()
    mapping = _modelschemas()
    with exit_on_error():
        written = mapping.write_schemas(mapping.generate(module, chosen), out)
    for path in written:
        typer.echo(f"wrote {path}")


@schemas_app.command("codegen")
def schemas_codegen(
    directory: Annotated[Path, typer.Argument(help="Directory of .avsc files.")] = Path("schemas"),
    out: Annotated[
        Path, typer.Option(help="Python file to write, e.g. my_service/events.py.")
    ] = Path("events.py"),
) -> None:
    """Write pydantic models for the .avsc schemas of DIRECTORY (schema-first)."""
    mapping = _modelschemas()
    with exit_on_error():
        source: str = mapping.codegen(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(source, encoding="utf-8")
    typer.echo(f"wrote {out}")


def check_models(module: str, schemas: SchemaSet) -> int:
    """Print how each event model of ``module`` compares with its schema; return the
    number of models that disagree with theirs."""
    _importable_from_here()
    mapping = _modelschemas()
    disagreeing = 0
    with exit_on_error():
        # Every pydantic model not nested in another: Avro ones are compared with their
        # .avsc, the others with the JSON Schema of their title.
        models = mapping.event_models(module, "json")
        for model, schema, mismatches in mapping.iter_model_checks(models, schemas):
            if schema is None:
                typer.echo(f"{model.__qualname__}: no schema of its name in {schemas.directory}")
                continue
            if not mismatches:
                typer.echo(f"{model.__qualname__}: matches {schema.name}")
                continue
            disagreeing += 1
            for mismatch in mismatches:
                typer.echo(f"MISMATCH {mismatch}", err=True)
    return disagreeing
