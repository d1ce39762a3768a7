"""CLI commands for PostgreSQL: ``streamkit outbox relay`` and ``streamkit db migrate``.

Registered on the ``streamkit`` command by :mod:`streamkit.cli.app`.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Literal

import typer

from streamkit.cli.commands import exit_on_error, settings_or_exit
from streamkit.errors import StreamkitError
from streamkit.settings import env_var_name

__all__ = ["db_app", "outbox_app"]

outbox_app = typer.Typer(
    help="The transactional outbox (STREAMKIT_OUTBOX__URL).", no_args_is_help=True
)
db_app = typer.Typer(help="The PostgreSQL tables streamkit uses.", no_args_is_help=True)


@outbox_app.command("relay")
def outbox_relay(
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Most rows per batch (default: settings).")
    ] = None,
    on_sent: Annotated[
        str | None, typer.Option(help="mark or delete published rows (default: settings).")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Exit after S seconds with nothing to publish.")
    ] = None,
) -> None:
    """Publish committed outbox rows to Kafka until SIGTERM/SIGINT.

    Serves /metrics, /healthz and /readyz when STREAMKIT_METRICS__PORT is set; exports
    a span per row over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    """
    from streamkit.observability.http import MetricsServer
    from streamkit.observability.metrics import StreamkitMetrics
    from streamkit.observability.tracing import configure_from_env
    from streamkit.produce.outbox_relay import OutboxRelay

    if on_sent not in (None, "mark", "delete"):
        raise typer.BadParameter("use mark or delete", param_hint="--on-sent")
    mode: Literal["mark", "delete"] | None = on_sent  # type: ignore[assignment]  # checked
    settings = settings_or_exit()
    metrics = StreamkitMetrics()
    with exit_on_error(1), ExitStack() as stack:
        traces = configure_from_env(service_name="streamkit-outbox-relay")
        if traces is not None:
            stack.callback(traces.shutdown)  # exports the spans still buffered
        relay = stack.enter_context(
            OutboxRelay(settings=settings, metrics=metrics, on_sent=mode, batch_size=batch_size)
        )
        if settings.metrics.port is not None:
            server = MetricsServer(metrics, host=settings.metrics.host, port=settings.metrics.port)
            stack.enter_context(server).ready = True
        typer.echo(f"relaying {relay!r}", err=True)
        stats = relay.run(idle_timeout_s=idle_timeout)
    typer.echo(
        f"published {stats.published} in {stats.batches} batches; "
        f"{stats.publish_errors} publish errors, {stats.database_outages} database outages",
        err=True,
    )


@db_app.command("migrate")
def db_migrate() -> None:
    """Create the dedup and outbox tables that the settings name, where missing.

    The dedup table when STREAMKIT_DEDUP__URL is a postgresql:// URL; the outbox table
    when STREAMKIT_OUTBOX__URL is set. Run it as a user allowed to create tables; the
    services then need only read and write rights.
    """
    settings = settings_or_exit()
    targets: list[tuple[str, str]] = []
    if settings.dedup.url and settings.dedup.url.startswith(("postgresql:", "postgres:")):
        targets.append(("dedup", settings.dedup.url))
    if settings.outbox.url is not None:
        targets.append(("outbox", settings.outbox.url.get_secret_value()))
    if not targets:
        typer.echo(
            f"error: nothing to migrate: set {env_var_name('dedup', 'url')} to a "
            f"postgresql:// URL and/or {env_var_name('outbox', 'url')}",
            err=True,
        )
        raise typer.Exit(2)
    with exit_on_error(1):
        for kind, url in targets:
            table, created = _migrate(kind, url)
            typer.echo(f"{kind}: table {table} {'created' if created else 'exists'}")


def _migrate(kind: str, url: str) -> tuple[str, bool]:
    """Create one table; (its name, whether it was created)."""
    from streamkit.client.postgres import PostgresURL, import_psycopg, translate_pg_error
    from streamkit.dedup.postgresql import DEFAULT_TABLE as DEDUP_TABLE
    from streamkit.dedup.postgresql import create_dedup_table
    from streamkit.errors import DedupStoreError, OutboxError
    from streamkit.produce.outbox import DEFAULT_TABLE as OUTBOX_TABLE
    from streamkit.produce.outbox import create_outbox_table

    error_type: type[StreamkitError] = DedupStoreError if kind == "dedup" else OutboxError
    psycopg = import_psycopg()
    try:
        parsed = PostgresURL(url, env_var_name(kind, "url"))
    except ValueError as exc:
        raise error_type(str(exc)) from None
    table = parsed.pop("table") or (DEDUP_TABLE if kind == "dedup" else OUTBOX_TABLE)
    for name in ("ttl", "claim_ttl", "pool_size"):
        parsed.pop(name)  # the dedup store's own parameters
    create = create_dedup_table if kind == "dedup" else create_outbox_table
    try:
        with psycopg.connect(parsed.conninfo, connect_timeout=10) as conn:
            return table, create(conn, table)
    except psycopg.Error as exc:
        raise translate_pg_error(exc, f"migrating {table}", error_type, parsed) from None
