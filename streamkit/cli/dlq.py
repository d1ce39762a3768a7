"""``streamkit dlq``: inspect and replay dead-letter topics (:mod:`streamkit.ops.dlq`).

Registered on the ``streamkit`` command by :mod:`streamkit.cli.app`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamkit.cli.commands import exit_on_error, settings_or_exit
from streamkit.ops.dlq import (
    REASONS,
    DeadLetterReport,
    DeadLetterSelection,
    ReplayReport,
    inspect_dead_letters,
    replay_dead_letters,
)

__all__ = ["dlq_app"]

dlq_app = typer.Typer(help="Inspect and replay dead-letter topics.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

DlqTopic = Annotated[str, typer.Argument(help="The dead-letter topic, e.g. orders.dlq.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def _bad_parameter() -> Iterator[None]:
    """A ValueError from the API (bad reason, time, topic name) is a usage error."""
    try:
        yield
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@dlq_app.command("inspect")
def dlq_inspect(
    topic: DlqTopic,
    as_json: AsJson = False,
    samples: Annotated[int, typer.Option(min=0, help="Newest dead letters shown in full.")] = 3,
) -> None:
    """Count a dead-letter topic's messages by reason, error type and source; show samples."""
    settings = settings_or_exit()
    with exit_on_error(1):
        report = inspect_dead_letters(topic, settings, samples=samples)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    _print_report(report)


def _counts(title: str, counts: dict[str, int]) -> Table:
    table = Table(title, "count", title_justify="left")
    for name, count in counts.items():
        table.add_row(name, str(count))
    return table


def _print_report(report: DeadLetterReport) -> None:
    _out.print(f"[bold]{report.topic}[/]: {report.count} dead letters")
    if not report.count:
        return
    stamp = "%Y-%m-%d %H:%M:%S UTC"
    _out.print(f"oldest {report.oldest:{stamp}}, newest {report.newest:{stamp}}")
    _out.print(_counts("reason", report.by_reason))
    _out.print(_counts("error type", report.by_error_type))
    _out.print(_counts("source partition", report.by_source_partition))
    for sample in report.samples:
        _out.rule(f"{report.topic}[{sample.partition}]@{sample.offset}")
        _out.print(f"key: {sample.key}   failed at: {sample.failed_at:%Y-%m-%d %H:%M:%S} UTC")
        _out.print(f"source: {sample.source}@{sample.source_offset}   attempts: {sample.attempts}")
        _out.print(f"error: {sample.error}", markup=False)
        for name, value in sample.headers:
            _out.print(f"  {name}: {value}", markup=False)
        if sample.decode_error is not None:
            _out.print(f"payload not decoded: {sample.decode_error}", markup=False)
        else:
            _out.print_json(json.dumps(sample.payload, default=str))


@dlq_app.command("replay")
def dlq_replay(
    topic: DlqTopic,
    to: Annotated[
        str | None, typer.Option("--to", help="Destination (default: topic minus .dlq).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help=f"Only this reason: {', '.join(REASONS)}.")
    ] = None,
    error_type: Annotated[
        str | None,
        typer.Option("--error-type", help="Only this exception (class or module.Class)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Dead-lettered at/after: ISO 8601 or a duration ago (2h).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Dead-lettered at/before: ISO 8601 or a duration ago.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Send at most N in this run.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Select and count; send nothing.")
    ] = False,
    group: Annotated[
        str | None, typer.Option(help="Consumer group keeping this job's position.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Re-produce dead letters to their topic; a second run continues where this one stopped."""
    settings = settings_or_exit()
    with _bad_parameter():
        selection = DeadLetterSelection(
            reason=reason, error_type=error_type, since=since, until=until
        )
    columns = (
        TextColumn("replaying {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        exit_on_error(1),
        _bad_parameter(),
        Progress(*columns, console=_err, transient=True) as bar,
    ):
        task = bar.add_task(topic, total=None)

        def progress(examined: int, total: int) -> None:
            bar.update(task, completed=examined, total=total)

        report = replay_dead_letters(
            topic,
            settings,
            to=to,
            selection=selection,
            limit=limit,
            dry_run=dry_run,
            group=group,
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_replay(report)


def _print_replay(report: ReplayReport) -> None:
    verb = "would send" if report.dry_run else "sent"
    count = report.selected if report.dry_run else report.sent
    _out.print(
        f"{report.topic} -> {report.target}: {verb} {count} of {report.examined} read "
        f"({report.passed_over} not selected), {report.remaining} left after this run's position"
    )
    if not report.dry_run:
        _out.print(
            f"group {report.group}; {report.elapsed_s:.1f} s, {report.per_second:.0f} messages/s"
        )
