"""The ``streamkit`` command."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamkit._version import __version__
from streamkit.cli.commands import (
    check,
    consume,
    produce,
    schemas_app,
    settings_or_exit,
    topics_app,
)
from streamkit.cli.database import db_app, outbox_app
from streamkit.cli.dedup import dedup_app
from streamkit.cli.demo import demo_command
from streamkit.cli.dlq import dlq_app
from streamkit.cli.models import schemas_codegen, schemas_generate
from streamkit.client.config import is_secret_key, masked
from streamkit.settings import StreamkitSettings, env_var_name

__all__ = ["app", "main"]

# Registered on `streamkit schemas` where they are defined.
_MODEL_COMMANDS = (schemas_codegen, schemas_generate)

app = typer.Typer(help="streamkit: Kafka for Python services, done right.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the resolved settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
app.add_typer(dedup_app, name="dedup")
app.add_typer(dlq_app, name="dlq")
app.add_typer(outbox_app, name="outbox")
app.add_typer(db_app, name="db")
app.command()(produce)
app.command()(consume)
app.command("demo")(demo_command)
app.command()(check)

_stdout = Console()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"streamkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """streamkit: Kafka for Python services, done right."""


def _masked_dump(settings: StreamkitSettings) -> dict[str, dict[str, Any]]:
    # mode="json" renders SecretStr as a mask; extra dicts are masked by key.
    dump: dict[str, dict[str, Any]] = settings.model_dump(mode="json")
    for section in dump.values():
        if isinstance(section.get("extra"), dict):
            section["extra"] = masked(section["extra"])
    return dump


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the resolved settings with secrets masked."""
    dump = _masked_dump(settings_or_exit())
    if as_json:
        typer.echo(json.dumps(dump, indent=2, sort_keys=True))
        return
    table = Table(title="streamkit settings", show_lines=False)
    table.add_column("variable", style="cyan", no_wrap=True)
    table.add_column("value")
    for section, values in dump.items():
        for field, value in values.items():
            shown = "" if value is None else json.dumps(value) if isinstance(value, dict) else value
            if is_secret_key(field) and value is not None:
                shown = "**********"
            table.add_row(env_var_name(section, field), str(shown))
    _stdout.print(table)


def main() -> None:
    """Console-script entry point."""
    app()
