"""``streamkit demo``: the whole pipeline, end to end, with the numbers that matter.

Against a throwaway Kafka and schema registry started in containers by the test kit
(when ``STREAMKIT_KAFKA__BOOTSTRAP_SERVERS`` / ``STREAMKIT_SCHEMA_REGISTRY__URL`` are
unset), or against your cluster, the demo

1. creates a topic ``orders-<run>`` (a fresh run suffix, so runs never mix) and its
   dead-letter topic, and registers the example ``OrderPlaced`` schema for it;
2. starts a consumer group of K members (threads sharing one dedup store) and waits
   until every partition is assigned, so that no rebalance runs while events flow;
3. produces N order events through :class:`~streamkit.produce.producer.EventProducer`, re-sends
   a share of them with the same event id (duplicates), and writes a few garbage
   values with a plain confluent-kafka producer (poison messages);
4. waits until every message is settled — handled, skipped as a duplicate, or
   dead-lettered — and reports produced, consumed, duplicates skipped, dead-lettered,
   lost (acknowledged ids never handled: must be 0), throughput and end-to-end latency
   percentiles (event timestamp → handler).

Prometheus metrics are served while it runs: on ``--metrics-port`` or
``STREAMKIT_METRICS__PORT`` when given, else on a free port (printed at start). With
the ``otel`` extra and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, its traces are exported
over OTLP/HTTP (e.g. to the Jaeger of ``docker-compose.yml``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamkit._extras import require
from streamkit.cli.examples import ORDER_SCHEMA, example_schemas_dir, order_payload
from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import DedupStore, open_store, open_store_from_settings
from streamkit.errors import ConfigError, ConfigProblem, StreamkitError
from streamkit.observability.http import MetricsServer
from streamkit.observability.metrics import BYTE_STAGES, StreamkitMetrics
from streamkit.observability.tracing import configure_from_env
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet, load_schemas
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["DemoOptions", "DemoSummary", "demo_command", "percentile", "run_demo"]

log = logging.getLogger(__name__)

_GROUP_TIMEOUT_S = 60.0
_DUPLICATE_DELAY = 100  # a duplicate is re-sent this many events after its original
_TICK_S = 0.1


@dataclass(frozen=True)
class DemoOptions:
    """What one demo run does."""

    events: int = 10_000
    consumers: int = 3
    duplicate_share: float = 0.1
    poison: int = 5
    partitions: int = 6
    metrics_port: int | None = None
    serve_after_s: float = 0.0
    idle_timeout_s: float = 60.0
    schemas_dir: Path | None = None


@dataclass
class DemoSummary:
    """The outcome of a demo run (``--json`` prints :meth:`as_dict`)."""

    produced: int
    consumed: int
    duplicates_injected: int
    duplicates_skipped: int
    poison_injected: int
    dead_lettered: int
    lost: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    delivery_errors: int = 0
    produce_msgs_per_s: float = 0.0
    max_ms: float = 0.0
    startup_s: float = 0.0
    time_to_first_event_s: float = 0.0
    wall_s: float = 0.0
    topic: str = ""
    group: str = ""
    consumers: int = 0
    cluster: str = ""
    bootstrap_servers: str = ""
    metrics_url: str = ""
    compression_type: str = ""
    bytes_per_event: float = 0.0
    compressed_bytes_per_event: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    def table(self) -> Table:
        """The summary as a rich table."""
        table = Table(title=f"streamkit demo: {self.topic} ({self.cluster} cluster)")
        table.add_column("measure", style="cyan", no_wrap=True)
        table.add_column("value", justify="right")
        rows = [
            ("produced (unique events acknowledged)", f"{self.produced:,}"),
            ("duplicates injected (same event id)", f"{self.duplicates_injected:,}"),
            ("poison messages injected", f"{self.poison_injected:,}"),
            ("consumed (messages read)", f"{self.consumed:,}"),
            ("duplicates skipped", f"{self.duplicates_skipped:,}"),
            ("dead-lettered", f"{self.dead_lettered:,}"),
            ("lost", f"[{'red' if self.lost else 'green'}]{self.lost:,}"),
            (f"throughput ({self.consumers} consumers)", f"{self.msgs_per_s:,.0f} msg/s"),
            ("end-to-end latency p50", f"{self.p50_ms:,.1f} ms"),
            ("end-to-end latency p99", f"{self.p99_ms:,.1f} ms"),
            ("time to first event", f"{self.time_to_first_event_s:,.1f} s"),
            (
                f"bytes per event ({self.compression_type})",
                f"{self.bytes_per_event:,.0f} -> {self.compressed_bytes_per_event:,.0f}",
            ),
            ("wall time", f"{self.wall_s:,.1f} s"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        return table


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    rank = max(0, min(len(values) - 1, math.ceil(share * len(values)) - 1))
    return values[rank]


class _Tracker:
    """What the handlers saw: ids handled, end-to-end latencies, first handling time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handled: set[str] = set()
        self.latencies_ms: list[float] = []
        self.first_handled: float | None = None

    def handle(self, event: Event) -> None:
        handled_ms = time.time() * 1000
        with self.lock:
            if self.first_handled is None:
                self.first_handled = time.monotonic()
            self.handled.add(event.id)
            self.latencies_ms.append(handled_ms - event.timestamp)


# Cluster --------------------------------------------------------------------------


@contextmanager
def _cluster(
    settings: StreamkitSettings, console: Console
) -> Iterator[tuple[StreamkitSettings, str]]:
    """The settings to use, starting a throwaway Kafka and/or registry when not configured."""
    need_kafka = "bootstrap_servers" not in settings.kafka.model_fields_set
    need_registry = settings.schema_registry.url is None
    if not need_kafka and not need_registry:
        yield settings, "existing"
        return
    # The throwaway cluster comes from the test kit, an extra: imported only on this path.
    require("testing", "testcontainers")
    from streamkit.testing.containers import KafkaContainer, RegistryContainer
    from streamkit.testing.images import REGISTRY, ensure_image

    registry_image = ensure_image(REGISTRY) if need_registry else ""
    # Confluent's registry keeps its schemas in Kafka: it starts once Kafka answers.
    confluent = "cp-schema-registry" in registry_image
    started: dict[str, Any] = {}
    what = " and ".join(
        name for name, need in (("kafka", need_kafka), ("registry", need_registry)) if need
    )
    try:
        with (
            console.status(f"starting a throwaway {what} in containers ..."),
            ThreadPoolExecutor(2, thread_name_prefix="demo-start") as pool,
        ):
            registry: Future[Any] | None = None
            kafka = pool.submit(lambda: KafkaContainer().start()) if need_kafka else None
            if kafka is not None and confluent:
                started["kafka"] = kafka.result()
            if need_registry:
                bootstrap = (
                    started["kafka"].bootstrap_servers
                    if "kafka" in started
                    else settings.kafka.bootstrap_servers
                )
                registry = pool.submit(
                    lambda: RegistryContainer(
                        registry_image, kafka_bootstrap=bootstrap if confluent else None
                    ).start()
                )
            errors: list[BaseException] = []
            for name, future in (("kafka", kafka), ("registry", registry)):
                if future is None or name in started:
                    continue
                try:
                    started[name] = future.result()
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
        update: dict[str, Any] = {}
        if "kafka" in started:
            update["kafka"] = settings.kafka.model_copy(
                update={"bootstrap_servers": started["kafka"].bootstrap_servers}
            )
        if "registry" in started:
            update["schema_registry"] = settings.schema_registry.model_copy(
                update={"url": started["registry"].url}
            )
        console.print(f"[dim]throwaway {what} up[/dim]")
        yield settings.model_copy(update=update), "throwaway"
    finally:
        for container in started.values():
            try:
                container.stop()
            except Exception as exc:  # stopping is best effort; say what is left behind
                log.warning("could not stop container %s: %s", container, exc)


def _schemas(directory: Path | None) -> SchemaSet:
    """The schemas of ``directory``, by default the example schemas installed with streamkit."""
    where = directory if directory is not None else example_schemas_dir()
    schemas = load_schemas(where)
    if ORDER_SCHEMA not in list(schemas):  # SchemaSet lookups raise for unknown names
        raise ConfigError(
            [
                ConfigProblem(
                    "--schemas",
                    f"{str(where)!r} has no {ORDER_SCHEMA} schema",
                    "leave --schemas out to use the example schemas installed with streamkit",
                )
            ]
        )
    return schemas


def _demo_settings(settings: StreamkitSettings, group: str) -> StreamkitSettings:
    update: dict[str, Any] = {
        "consumer": settings.consumer.model_copy(update={"group_id": group}),
    }
    if "statistics_interval_ms" not in settings.metrics.model_fields_set:
        # Lag moves fast in a demo; a 5 s statistics interval would hardly show it.
        update["metrics"] = settings.metrics.model_copy(update={"statistics_interval_ms": 1000})
    return settings.model_copy(update=update)


# Run ------------------------------------------------------------------------------


class _Group:
    """K consumers in threads, sharing one dedup store when it lives in memory."""

    def __init__(
        self,
        settings: StreamkitSettings,
        topic: str,
        size: int,
        tracker: _Tracker,
        metrics: StreamkitMetrics,
    ) -> None:
        self.stores: list[DedupStore] = []
        self.consumers: list[EventConsumer] = []
        self.threads: list[threading.Thread] = []
        self._stopped = False
        url = settings.dedup.url or "memory://"
        shared: DedupStore | None = None
        if url.startswith("memory:"):
            # One store for all members: a memory store is private to its object, and
            # members of one group must see each other's claims.
            shared = open_store(
                url, claim_ttl_s=settings.dedup.claim_ttl_s, ttl_s=settings.dedup.ttl_s
            )
            self.stores.append(shared)
        for _ in range(size):
            store = shared
            if store is None:
                store = open_store_from_settings(settings.dedup)
                assert store is not None
                self.stores.append(store)
            consumer = EventConsumer(
                [topic], tracker.handle, settings=settings, dedup=store, metrics=metrics
            )
            self.consumers.append(consumer)

    def start(self) -> None:
        for index, consumer in enumerate(self.consumers):
            thread = threading.Thread(
                target=consumer.run,
                kwargs={"handle_signals": False},
                name=f"demo-consumer-{index}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)

    def stable(self, partitions: int) -> bool:
        """Every partition assigned, and every member holds one (when there are enough)."""
        owned = [consumer.assignment for consumer in self.consumers]
        union = set().union(*owned)
        members_ok = all(owned) or partitions < len(owned)
        return len(union) == partitions and members_ok

    def total(self, name: str) -> int:
        return sum(int(getattr(consumer.stats, name)) for consumer in self.consumers)

    def settled(self) -> int:
        """Messages whose fate is decided: handled, skipped or dead-lettered."""
        return (
            self.total("processed") + self.total("duplicates_skipped") + self.total("dead_lettered")
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for consumer in self.consumers:
            consumer.stop()
        for thread in self.threads:
            thread.join(60)
        for consumer in self.consumers:
            consumer.close()
        for store in self.stores:
            store.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


def run_demo(
    settings: StreamkitSettings,
    options: DemoOptions,
    *,
    console: Console | None = None,
    report: Callable[[DemoSummary], None] | None = None,
) -> DemoSummary:
    """Run the demo (see the module docstring) and return its summary.

    Args:
        settings: resolved settings; unset bootstrap servers / registry URL mean
            throwaway containers.
        options: sizes and switches of the run.
        console: where progress goes (default: stderr).
        report: called with the summary as soon as it is known, before the
            ``serve_after_s`` wait and before throwaway containers stop.

    Raises:
        StreamkitError: the cluster or registry could not be used.
        TestKitError: throwaway containers could not be started.
        MissingExtraError: throwaway containers need ``streamkit[testing]``.
    """
    console = console or Console(stderr=True)
    started = time.monotonic()
    schemas = _schemas(options.schemas_dir)
    run_id = uuid.uuid4().hex[:8]
    topic = f"orders-{run_id}"
    group = f"streamkit-demo-{run_id}"
    metrics = StreamkitMetrics()
    with ExitStack() as stack:
        traces = configure_from_env(service_name="streamkit-demo")
        if traces is not None:
            stack.callback(traces.shutdown)  # exports the spans still buffered
            console.print("traces: exported over OTLP to OTEL_EXPORTER_OTLP_ENDPOINT")
        settings, cluster = stack.enter_context(_cluster(settings, console))
        settings = _demo_settings(settings, group)
        port = options.metrics_port if options.metrics_port is not None else settings.metrics.port
        # Without a configured port the metrics are still served, on a free one.
        server = stack.enter_context(
            MetricsServer(metrics, host=settings.metrics.host, port=port or 0)
        )
        console.print(f"metrics: {server.url}/metrics  (health: /healthz, /readyz)")
        partitions = max(options.partitions, options.consumers)
        dlq = topic + settings.consumer.dead_letter_suffix
        StreamkitAdmin(settings).ensure_topics(
            [TopicSpec(topic, partitions=partitions), TopicSpec(dlq, partitions=1)]
        )
        producer = stack.enter_context(EventProducer(settings, schemas=schemas, metrics=metrics))
        producer.encoder(topic, ORDER_SCHEMA)  # registers <topic>-value (topic strategy)
        tracker = _Tracker()
        consumers = _Group(settings, topic, options.consumers, tracker, metrics)
        stack.callback(consumers.stop)
        consumers.start()
        with console.status(f"waiting for {options.consumers} consumers to share {topic} ..."):
            deadline = time.monotonic() + _GROUP_TIMEOUT_S
            while not consumers.stable(partitions) and time.monotonic() < deadline:
                time.sleep(_TICK_S)
        server.ready = True
        startup_s = time.monotonic() - started
        outcome = _pump(settings, options, topic, producer, consumers, tracker, console)
        summary = _summary(options, outcome, tracker, consumers)
        summary.startup_s = round(startup_s, 3)
        summary.time_to_first_event_s = round((tracker.first_handled or started) - started, 3)
        summary.wall_s = round(time.monotonic() - started, 3)
        summary.topic, summary.group, summary.cluster = topic, group, cluster
        summary.bootstrap_servers = settings.kafka.bootstrap_servers
        summary.metrics_url = f"{server.url}/metrics"
        summary.compression_type = settings.producer.compression_type
        summary.bytes_per_event, summary.compressed_bytes_per_event = _bytes_per_event(
            metrics, topic, settings.metrics.statistics_interval_ms
        )
        consumers.stop()
        if report is not None:
            report(summary)
        if options.serve_after_s > 0:
            console.print(f"serving metrics for {options.serve_after_s:.0f} s more ...")
            time.sleep(options.serve_after_s)
    return summary


@dataclass
class _Outcome:
    acknowledged: set[str] = field(default_factory=set)
    delivery_errors: int = 0
    duplicates: int = 0
    poison: int = 0
    produce_s: float = 0.0
    pipeline_s: float = 0.0


def _pump(
    settings: StreamkitSettings,
    options: DemoOptions,
    topic: str,
    producer: EventProducer,
    consumers: _Group,
    tracker: _Tracker,
    console: Console,
) -> _Outcome:
    """Produce events, duplicates and poison; wait until every message is settled."""
    rng = random.Random()
    duplicated = set(
        rng.sample(range(options.events), round(options.events * options.duplicate_share))
    )
    poison_at = {
        (index + 1) * options.events // (options.poison + 1) for index in range(options.poison)
    }
    total = options.events + len(duplicated) + len(poison_at)
    outcome = _Outcome()
    futures: list[DeliveryFuture] = []
    pending: list[tuple[int, dict[str, Any], str, str, int]] = []
    raw = Producer(client_config(settings, "producer", overrides={"logger": log}))
    sent = 0
    with _progress(console) as progress:
        produce_bar = progress.add_task("produce", total=total, note="")
        consume_bar = progress.add_task("consume", total=total, note="")

        def refresh() -> None:
            progress.update(produce_bar, completed=sent)
            progress.update(
                consume_bar,
                completed=min(total, consumers.settled()),
                note=(
                    f"dup skipped {consumers.total('duplicates_skipped')}  "
                    f"dead-lettered {consumers.total('dead_lettered')}"
                ),
            )

        began = time.monotonic()
        for seq in range(options.events + _DUPLICATE_DELAY):
            if seq < options.events:
                now_ms = time.time_ns() // 1_000_000
                payload, key = order_payload(seq, now_ms), f"customer-{seq % 97}"
                future = producer.send(
                    topic, payload, key=key, schema=ORDER_SCHEMA, timestamp=now_ms
                )
                futures.append(future)
                sent += 1
                if seq in duplicated:
                    pending.append((seq + _DUPLICATE_DELAY, payload, key, future.event_id, now_ms))
                if seq in poison_at:
                    raw.produce(topic, b"\xde\xad\xbe\xef not avro", f"poison-{seq}".encode())
                    raw.poll(0)
                    outcome.poison += 1
                    sent += 1
            while pending and pending[0][0] <= seq:
                _, payload, key, event_id, ts = pending.pop(0)
                futures.append(
                    producer.send(
                        topic,
                        payload,
                        key=key,
                        schema=ORDER_SCHEMA,
                        event_id=event_id,
                        timestamp=ts,
                    )
                )
                outcome.duplicates += 1
                sent += 1
            if seq % 200 == 0:
                refresh()
        if producer.flush(60) or raw.flush(60):
            log.warning("some records were not acknowledged within 60 s")
        outcome.produce_s = time.monotonic() - began
        for future in futures:
            if not future.done() or future.exception(0) is not None:
                outcome.delivery_errors += 1
            else:
                outcome.acknowledged.add(future.event_id)
        last_progress, last_settled = time.monotonic(), -1
        while consumers.settled() < total:
            settled = consumers.settled()
            if settled != last_settled:
                last_progress, last_settled = time.monotonic(), settled
            elif time.monotonic() - last_progress > options.idle_timeout_s:
                log.warning(
                    "no progress for %.0f s with %d of %d messages settled; giving up",
                    options.idle_timeout_s,
                    settled,
                    total,
                )
                break
            refresh()
            time.sleep(_TICK_S)
        outcome.pipeline_s = time.monotonic() - began
        refresh()
    return outcome


def _bytes_per_event(
    metrics: StreamkitMetrics, topic: str, interval_ms: int
) -> tuple[float, float]:
    """(uncompressed, compressed) bytes per produced record, from the producer statistics."""
    deadline = time.monotonic() + interval_ms / 1000 + 0.5  # one statistics window at most
    while True:
        figures = [
            metrics.registry.get_sample_value(
                "streamkit_produced_bytes_per_event", {"topic": topic, "stage": stage}
            )
            for stage in BYTE_STAGES
        ]
        if all(figures) or interval_ms <= 0 or time.monotonic() > deadline:
            return round(figures[0] or 0.0, 1), round(figures[1] or 0.0, 1)
        time.sleep(_TICK_S)


def _summary(
    options: DemoOptions, outcome: _Outcome, tracker: _Tracker, consumers: _Group
) -> DemoSummary:
    with tracker.lock:
        latencies = sorted(tracker.latencies_ms)
        lost = len(outcome.acknowledged - tracker.handled)
    consumed = consumers.total("consumed")
    return DemoSummary(
        produced=len(outcome.acknowledged),
        consumed=consumed,
        duplicates_injected=outcome.duplicates,
        duplicates_skipped=consumers.total("duplicates_skipped"),
        poison_injected=outcome.poison,
        dead_lettered=consumers.total("dead_lettered"),
        lost=lost,
        msgs_per_s=round(consumed / outcome.pipeline_s, 1) if outcome.pipeline_s else 0.0,
        p50_ms=round(percentile(latencies, 0.50), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        max_ms=round(latencies[-1], 2) if latencies else 0.0,
        delivery_errors=outcome.delivery_errors,
        produce_msgs_per_s=(
            round((options.events + outcome.duplicates) / outcome.produce_s, 1)
            if outcome.produce_s
            else 0.0
        ),
        consumers=options.consumers,
    )


# Command --------------------------------------------------------------------------


def demo_command(
    events: Annotated[int, typer.Option(min=1, help="Unique order events to produce.")] = 10_000,
    consumers: Annotated[int, typer.Option(min=1, help="Members of the consumer group.")] = 3,
    duplicates: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events re-sent with the same id.")
    ] = 0.1,
    poison: Annotated[int, typer.Option(min=0, help="Undecodable messages to inject.")] = 5,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the demo topic.")] = 6,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve metrics on this port (default STREAMKIT_METRICS__PORT, else a free one).",
        ),
    ] = None,
    serve_after: Annotated[
        float, typer.Option(min=0.0, help="Keep serving metrics this many seconds at the end.")
    ] = 0.0,
    schemas: Annotated[
        Path | None,
        typer.Option(help="Directory of .avsc files (default: the installed example schemas)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object, last line.")
    ] = False,
) -> None:
    """The main job: produce, deduplicate, dead-letter and measure, end to end.

    Without STREAMKIT_KAFKA__BOOTSTRAP_SERVERS (and STREAMKIT_SCHEMA_REGISTRY__URL) it
    starts a throwaway Kafka and schema registry in containers and removes them at the
    end. Exits 1 if any acknowledged event was not handled.
    """
    from rich.logging import RichHandler

    stderr = Console(stderr=True)
    handler = RichHandler(console=stderr, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    options = DemoOptions(
        events=events,
        consumers=consumers,
        duplicate_share=duplicates,
        poison=poison,
        partitions=partitions,
        metrics_port=metrics_port,
        serve_after_s=serve_after,
        schemas_dir=schemas,
    )

    def report(summary: DemoSummary) -> None:
        if as_json:
            stderr.print(summary.table())
            typer.echo(json.dumps(summary.as_dict(), sort_keys=True))
        else:
            Console().print(summary.table())

    try:
        summary = run_demo(load_settings(), options, console=stderr, report=report)
    except StreamkitError as exc:  # TestKitError and MissingExtraError among them
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if summary.lost:
        typer.echo(f"error: {summary.lost} acknowledged events were never handled", err=True)
        raise typer.Exit(1)
