"""CLI commands that act on a cluster: schemas, topics, produce, consume.

Registered on the ``streamkit`` command by :mod:`streamkit.cli.main`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import SchemaCompatibilityError, StreamkitError
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import ValueSchema, load_schemas, subject_name
from streamkit.settings import StreamkitSettings, load_settings

__all__ = [
    "check",
    "consume",
    "exit_on_error",
    "produce",
    "schemas_app",
    "settings_or_exit",
    "topics_app",
]

schemas_app = typer.Typer(
    help="Check and register the .avsc schemas of a directory.", no_args_is_help=True
)
topics_app = typer.Typer(help="Manage topics.", no_args_is_help=True)
_out = Console()

SchemaDir = Annotated[Path, typer.Argument(help="Directory of .avsc files.")]


@contextmanager
def exit_on_error(code: int = 2) -> Iterator[None]:
    """Turn a StreamkitError raised in the block into its message on stderr and an exit."""
    try:
        yield
    except StreamkitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code) from None


def settings_or_exit() -> StreamkitSettings:
    """Load settings; on bad settings print every problem and exit 2."""
    with exit_on_error():
        return load_settings()


def _subject(settings: StreamkitSettings, schema: ValueSchema) -> str:
    topic = schema.topic or ""
    return subject_name(settings.schema_registry.subject_name_strategy, topic, schema.name)


def _top_level(directory: Path) -> list[ValueSchema]:
    schemas = load_schemas(directory).top_level()
    if not schemas:
        typer.echo(f'error: no schema in {directory} declares "streamkit.topic"', err=True)
        raise typer.Exit(2)
    return schemas


@schemas_app.command("check")
def schemas_check(
    directory: SchemaDir = Path("schemas"),
    models: Annotated[
        str | None,
        typer.Option(help="Module of event models that must agree with the schemas."),
    ] = None,
) -> None:
    """Report what would break against the registry, without registering; with
    --models, also where a model and its schema disagree (field named)."""
    settings = settings_or_exit()
    table = Table("subject", "schema", "result", title="compatibility check")
    broken = 0
    if models:
        from streamkit.cli.models import check_models

        with exit_on_error():
            broken += check_models(models, load_schemas(directory))
    with exit_on_error(), SchemaRegistry(settings) as registry:
        for schema in _top_level(directory):
            subject = _subject(settings, schema)
            report = registry.check(subject, schema)
            if report.new_subject:
                result = "new subject"
            elif report.compatible:
                result = f"compatible ({registry.compatibility(subject)})"
            else:
                broken += 1
                reasons = "; ".join(report.reasons) or "incompatible"
                result = f"[red]INCOMPATIBLE[/]: {reasons}"
            table.add_row(subject, schema.name, result)
    _out.print(table)
    if broken:
        raise typer.Exit(1)


@schemas_app.command("register")
def schemas_register(directory: SchemaDir = Path("schemas")) -> None:
    """Register every topic schema of the directory; refuse incompatible changes."""
    settings = settings_or_exit()
    refused = 0
    with exit_on_error(), SchemaRegistry(settings) as registry:
        for schema in _top_level(directory):
            subject = _subject(settings, schema)
            try:
                schema_id = registry.register(subject, schema)
            except SchemaCompatibilityError as exc:
                refused += 1
                typer.echo(f"refused: {exc}", err=True)
                continue
            typer.echo(f"{subject}: {schema.name} registered with id {schema_id}")
    if refused:
        raise typer.Exit(1)


def _config_pairs(pairs: list[str]) -> dict[str, str]:
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--config")
        config[key] = value
    return config


@topics_app.command("ensure")
def topics_ensure(
    topics: Annotated[list[str], typer.Argument(help="Topic names.")],
    partitions: Annotated[int, typer.Option(min=1)] = 3,
    replication_factor: Annotated[int, typer.Option(help="-1: broker default")] = -1,
    config: Annotated[list[str] | None, typer.Option(help="key=value topic config")] = None,
    dead_letter: Annotated[bool, typer.Option(help="Also ensure <topic>.dlq")] = True,
    retry: Annotated[
        bool, typer.Option(help="Also ensure the retry topics of STREAMKIT_CONSUMER__RETRY_DELAYS")
    ] = True,
) -> None:
    """Create missing topics; grow partitions and set configs of existing ones."""
    settings = settings_or_exit()
    configs = _config_pairs(config or [])
    names = list(topics)
    if dead_letter:
        names += [f"{t}{settings.consumer.dead_letter_suffix}" for t in topics]
    specs = [TopicSpec(n, partitions, replication_factor, configs) for n in names]
    with exit_on_error():
        changes = StreamkitAdmin(settings).ensure_topics(specs, retry_topics=retry)
    for change in changes:
        typer.echo(
            f"{change.name}: {change.action}{f' ({change.detail})' if change.detail else ''}"
        )


def _payloads(payload: str | None) -> list[Any]:
    lines = [payload] if payload is not None else sys.stdin.read().splitlines()
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="PAYLOAD") from None


def produce(
    topic: Annotated[str, typer.Argument(help="Destination topic.")],
    payload: Annotated[
        str | None, typer.Argument(help="JSON payload; default: JSON lines on stdin.")
    ] = None,
    schema: Annotated[str | None, typer.Option(help="Full name of the value schema.")] = None,
    key: Annotated[str | None, typer.Option(help="Partitioning key.")] = None,
    schemas_dir: Annotated[Path, typer.Option(help="Directory of .avsc files.")] = Path("schemas"),
) -> None:
    """Validate and send events (one per JSON payload) and wait for their acknowledgement."""
    settings = settings_or_exit()
    with exit_on_error(1), EventProducer(settings, schemas=schemas_dir) as producer:
        futures = [
            producer.send(topic, item, key=key, schema=schema) for item in _payloads(payload)
        ]
        for future in futures:
            report = future.result(timeout=settings.producer.delivery_timeout_ms / 1000)
            typer.echo(f"{report.topic}[{report.partition}]@{report.offset} {report.event_id}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def consume(
    topics: Annotated[list[str], typer.Argument(help="Topics to read.")],
    group: Annotated[str | None, typer.Option(help="Group id (default: settings).")] = None,
    max_messages: Annotated[int | None, typer.Option("--max", help="Stop after N.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="Stop after S idle seconds.")] = None,
) -> None:
    """Print events as JSON lines, committing after each is printed (at least once)."""
    settings = settings_or_exit()
    if group:
        settings = settings.model_copy(
            update={"consumer": settings.consumer.model_copy(update={"group_id": group})}
        )

    def show(event: Event) -> None:
        record = {
            "topic": event.topic,
            "partition": event.partition,
            "offset": event.offset,
            "id": event.id,
            "type": event.type,
            "timestamp": event.timestamp,
            "payload": event.payload,
        }
        typer.echo(json.dumps(record, default=_json_default))

    with exit_on_error(1), EventConsumer(topics, show, settings=settings) as consumer:
        consumer.run(max_messages=max_messages, idle_timeout_s=idle_timeout)


def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    topic: Annotated[
        list[str] | None, typer.Option(help="A topic that must be visible (repeatable).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for the broker (default: settings).")
    ] = None,
) -> None:
    """Connect with the current settings and report what works; exit 1 if anything fails."""
    from streamkit.ops.readiness import check_connectivity

    settings = settings_or_exit()
    report = check_connectivity(settings, topics=topic or (), timeout_s=timeout)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table("check", "result", "detail", title="streamkit check")
        for item in report.items:
            result = "skipped" if item.skipped else "[green]ok[/]" if item.ok else "[red]FAILED[/]"
            table.add_row(item.name, result, item.detail)
        _out.print(table)
    if not report.ok:
        raise typer.Exit(1)
