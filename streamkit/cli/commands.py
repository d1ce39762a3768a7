"""CLI commands that act on a cluster: schemas, topics, produce, consume.

Registered on the ``streamkit`` command by :mod:`streamkit.cli.app`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import Message
from rich.console import Console
from rich.table import Table

from streamkit.cli.reader import StartAt, TopicReader, parse_start_time
from streamkit.consume.processing import install_stop_signals, restore_signals
from streamkit.errors import DeserializationError, SchemaCompatibilityError, StreamkitError
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, RawHeaders
from streamkit.serde.json_values import json_default, payload_from_json
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
    """Validate and send events (one per JSON payload) and wait for their acknowledgement.

    Logical types as consume prints them: decimal "12.50", time ISO-8601 or epoch, bytes base64.
    """
    settings = settings_or_exit()
    with exit_on_error(1), EventProducer(settings, schemas=schemas_dir) as producer:
        encoder = producer.encoder(topic, schema)
        futures = [
            producer.send(topic, payload_from_json(encoder.schema, item), key=key, schema=schema)
            for item in _payloads(payload)
        ]
        for future in futures:
            report = future.result(timeout=settings.producer.delivery_timeout_ms / 1000)
            typer.echo(f"{report.topic}[{report.partition}]@{report.offset} {report.event_id}")


def _text(value: bytes | str | None) -> Any:
    """A key or header value: text when it is UTF-8, else ``{"base64": ...}``."""
    if value is None or isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _headers(raw: RawHeaders) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for name, value in raw.items() if isinstance(raw, dict) else raw or ():
        text = _text(value)
        # A repeated header keeps every value, in order.
        if name in shown:
            previous = shown[name]
            shown[name] = [*previous, text] if isinstance(previous, list) else [previous, text]
        else:
            shown[name] = text
    return shown


def _line(
    message: Message,
    item: Event | DeserializationError,
    *,
    headers: bool,
    payload_only: bool,
) -> str | None:
    """The JSON line printed for a message; None when there is nothing to print."""
    if payload_only:
        return json.dumps(item.payload, default=json_default) if isinstance(item, Event) else None
    record: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": _text(message.key()),
    }
    if isinstance(item, Event):
        record |= {"id": item.id, "type": item.type, "timestamp": item.timestamp}
        record["payload"] = item.payload
    else:  # shown as it is, with why it cannot be decoded (a dead letter, often)
        value = message.value()
        record["error"] = str(item)
        record["value"] = None if value is None else base64.b64encode(value).decode("ascii")
    if headers:
        record["headers"] = _headers(message.headers())
    return json.dumps(record, default=json_default)


def _print(line: str) -> bool:
    """Write one line to stdout; False once nobody reads it any more."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # a line counts as printed only once the reader has it
    except BrokenPipeError:
        # Like cat: the reader went away, which is no error. Point stdout at /dev/null
        # so that the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


def consume(
    topics: Annotated[list[str], typer.Argument(help="Topics to read.")],
    group: Annotated[
        str | None,
        typer.Option(help="Read as this consumer group and commit what was printed."),
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after exactly N messages.")
    ] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="Stop after S idle seconds.")] = None,
    from_offset: Annotated[
        int | None,
        typer.Option(help="Without --group: start at this offset; negative: N before the end."),
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(help="Without --group: start at this time (ISO-8601, or epoch ms)."),
    ] = None,
    headers: Annotated[
        bool, typer.Option("--headers", help="Show headers (e.g. dead-letter reasons).")
    ] = False,
    payload_only: Annotated[
        bool, typer.Option("--payload-only", help="Print only payloads (for streamkit produce).")
    ] = False,
) -> None:
    """Print events as JSON lines; read-only: it never writes to Kafka (no dead letters).

    Without --group: no group, no commits; starts at the beginning, --from-offset or --from-time.

    With --group: resumes from the group's offsets and commits each message once printed.

    A closed stdout (| head) ends it quietly with exit 0, having committed only what it printed.
    """
    settings = settings_or_exit()
    if group is not None and (from_offset is not None or from_time is not None):
        raise typer.BadParameter(
            "a group resumes from its committed offsets; use --from-offset/--from-time "
            "without --group",
            param_hint="--group",
        )
    if from_offset is not None and from_time is not None:
        raise typer.BadParameter("give one of --from-offset and --from-time")
    start = None
    if group is None:
        try:
            time_ms = parse_start_time(from_time) if from_time is not None else None
        except ValueError:
            raise typer.BadParameter(
                f"{from_time!r} is neither ISO-8601 nor epoch milliseconds",
                param_hint="--from-time",
            ) from None
        start = StartAt(offset=from_offset, time_ms=time_ms)
    with exit_on_error(1), TopicReader(settings, topics, group=group, start=start) as reader:
        previous = install_stop_signals(reader.stop, "streamkit consume")
        try:
            for message, item in reader.messages(
                max_messages=max_messages, idle_timeout_s=idle_timeout
            ):
                line = _line(message, item, headers=headers, payload_only=payload_only)
                if line is None:
                    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                    typer.echo(f"skipped {where}: {item}", err=True)
                elif not _print(line):
                    return
                reader.done(message)
        finally:
            restore_signals(previous)


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
