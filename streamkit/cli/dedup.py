"""``streamkit dedup``: what a deduplication store remembers, and what that costs.

Registered on the ``streamkit`` command by :mod:`streamkit.cli.app`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streamkit.cli.commands import exit_on_error, settings_or_exit
from streamkit.dedup.base import DedupStats, StoreBase, mask_url
from streamkit.dedup.factory import open_store

__all__ = ["dedup_app", "dedup_stats"]

dedup_app = typer.Typer(help="Inspect a deduplication store.", no_args_is_help=True)
_out = Console()


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    size, unit = float(value), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{value:,} B" if unit == "B" else f"{size:,.1f} {unit} ({value:,} B)"


def _table(url: str, stats: DedupStats) -> Table:
    table = Table(title=f"dedup store {url}", show_header=False)
    table.add_column("figure", style="cyan", no_wrap=True)
    table.add_column("value", justify="right")
    per_id = stats.bytes_per_id
    rows = [
        ("backend", stats.backend),
        ("remembered ids", f"{stats.remembered_ids:,}"),
        ("bytes used", _size(stats.bytes_used)),
        ("bytes per id", "unknown" if per_id is None else f"{per_id:.1f}"),
        ("retention buckets", str(stats.buckets)),
        ("retention (ttl)", f"{stats.ttl_s:g} s"),
        ("bucket width", f"{stats.bucket_s:g} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@dedup_app.command("stats")
def dedup_stats(
    url: Annotated[
        str | None,
        typer.Argument(
            help=(
                "Store URL (memory://, sqlite:///..., redis://..., postgresql://...); "
                "default: STREAMKIT_DEDUP__URL."
            )
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ids the store remembers as completed and the bytes they take (no scan)."""
    settings = settings_or_exit()
    url = url or settings.dedup.url
    if not url:
        typer.echo("error: no dedup store: pass its URL or set STREAMKIT_DEDUP__URL", err=True)
        raise typer.Exit(2)
    with exit_on_error():
        store = open_store(url, claim_ttl_s=settings.dedup.claim_ttl_s, ttl_s=settings.dedup.ttl_s)
        try:
            if not isinstance(store, StoreBase):  # every built-in store is one
                raise TypeError(f"{type(store).__name__} reports no stats")
            stats = store.stats()
        finally:
            store.close()
    shown = mask_url(url)
    if as_json:
        typer.echo(json.dumps({"url": shown, **stats.as_dict()}, indent=2))
    else:
        _out.print(_table(shown, stats))
