"""``streamkit schemas generate|codegen`` and the model half of ``schemas check``.

Model-first: ``generate`` writes the schemas of a module's event models; schema-first:
``codegen`` writes pydantic models from ``.avsc`` files (see
:mod:`streamkit.serde.modelschemas`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from streamkit.cli.commands import exit_on_error, schemas_app
from streamkit.serde.modelschemas import (
    SchemaFormat,
    codegen,
    event_models,
    generate,
    iter_model_checks,
    write_schemas,
)
from streamkit.serde.schemas import SchemaSet

__all__ = ["check_models", "schemas_codegen", "schemas_generate"]


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
    with exit_on_error():
        written = write_schemas(generate(module, chosen), out)
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
    with exit_on_error():
        source = codegen(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(source, encoding="utf-8")
    typer.echo(f"wrote {out}")


def check_models(module: str, schemas: SchemaSet) -> int:
    """Print how each event model of ``module`` compares with its schema; return the
    number of models that disagree with theirs."""
    _importable_from_here()
    disagreeing = 0
    with exit_on_error():
        # Every pydantic model not nested in another: Avro ones are compared with their
        # .avsc, the others with the JSON Schema of their title.
        models = event_models(module, "json")
        for model, schema, mismatches in iter_model_checks(models, schemas):
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
