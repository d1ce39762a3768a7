"""The transactional outbox end to end: real PostgreSQL, real Kafka, relay processes.

A workload of writer threads commits business transactions that each update a per-key
version row and add one outbox event, and rolls back some others. The version a
transaction got is its commit order for that key, so the topic must carry each key's
events in increasing version order, every committed event at least once, and no
rolled-back one.
"""
# ruff: noqa: S608 - SQL over table names the tests generate

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import MemoryDedupStore
from streamkit.errors import OutboxError, SchemaValidationError
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.produce.outbox import Outbox, create_outbox_table
from streamkit.produce.outbox_relay import OutboxRelay
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event, header_value
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from streamkit.testing.postgres import PostgresEndpoint
from tests.factories import ORDER_SCHEMA, PAYMENT_SCHEMA, order, payment
from tests.integration.conftest import consumer_settings, span_chain
from tests.integration.produce.conftest import Record, RelayProcesses, read_topic

PARTITIONS = 6
HOLD_LOCK = 4242  # advisory lock the kill test holds to stop a relay before it marks


@dataclass
class Workload:
    """Writer threads: each transaction adds an outbox event and bumps its key's version."""

    url: str
    table: str
    topic: str
    encoders: EventProducer
    keys: int = 50
    committed: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> key, version
    rolled_back: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_tables(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            create_outbox_table(conn, self.table)
            conn.execute(f"CREATE TABLE {self.table}_versions (key text PRIMARY KEY, v int)")
            conn.execute(
                f"INSERT INTO {self.table}_versions SELECT 'k' || n, 0 "
                f"FROM generate_series(0, {self.keys - 1}) n"
            )
            conn.execute(f"CREATE TABLE {self.table}_markers (event_id text PRIMARY KEY)")

    def run(
        self,
        transactions: int,
        *,
        rollback_every: int,
        threads: int = 4,
        markers: frozenset[int] = frozenset(),
    ) -> list[threading.Thread]:
        """Start ``threads`` writers sharing ``transactions``; every ``rollback_every``-th
        rolls back; the transactions numbered in ``markers`` also record a kill marker."""
        started = [
            threading.Thread(
                target=self._write, args=(range(n, transactions, threads), rollback_every, markers)
            )
            for n in range(threads)
        ]
        for thread in started:
            thread.start()
        return started

    def _write(self, numbers: range, rollback_every: int, markers: frozenset[int]) -> None:
        try:
            with psycopg.connect(self.url) as conn:
                outbox = Outbox(conn, encoders=self.encoders, table=self.table)
                for n in numbers:
                    key = f"k{n % self.keys}"
                    rollback = n % rollback_every == rollback_every - 1
                    with conn.transaction():
                        # The event first, the version second: without add's per-key lock
                        # a later add could commit first and be published first.
                        event_id = outbox.add(self.topic, order(n), key=key, schema=ORDER_SCHEMA)
                        row = conn.execute(
                            f"UPDATE {self.table}_versions SET v = v + 1 WHERE key = %s "
                            "RETURNING v",
                            (key,),
                        ).fetchone()
                        assert row is not None
                        if n in markers:
                            conn.execute(
                                f"INSERT INTO {self.table}_markers VALUES (%s)", (event_id,)
                            )
                        if rollback:
                            raise psycopg.Rollback()  # quietly ends the block
                    with self._lock:
                        if rollback:
                            self.rolled_back.add(event_id)
                        else:
                            self.committed[event_id] = (key, row[0])
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def check(self, records: list[Record]) -> int:
        """Assert what the topic must show; return the number of duplicates on it."""
        assert not self.errors
        on_topic = Counter(record.event_id for record in records)
        assert not self.rolled_back & set(on_topic), "a rolled-back event was published"
        assert set(on_topic) == set(self.committed), "a committed event is missing"
        first_value: dict[str, bytes] = {}
        per_key: dict[bytes | None, list[str]] = defaultdict(list)
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            # A duplicate is the same event: same id, same bytes.
            assert first_value.setdefault(record.event_id, record.value) == record.value
            per_key[record.key].append(record.event_id)
        assert len(per_key) == self.keys
        for key, ids in per_key.items():
            firsts = list(dict.fromkeys(ids))
            assert {self.committed[e][0].encode() for e in firsts} == {key}
            versions = [self.committed[e][1] for e in firsts]
            assert versions == list(range(1, len(versions) + 1)), f"key {key!r} out of order"
        return len(records) - len(on_topic)


def pending(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE sent_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# Small cases, relay in process ------------------------------------------------------------


def test_commit_order_per_key_and_nothing_rolled_back(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
) -> None:
    topic = topic_factory(PARTITIONS)
    metrics = StreamkitMetrics()
    with psycopg.connect(postgres_server.url) as conn:
        outbox = Outbox(conn, encoders=producer, table=outbox_table)
        expected: dict[str, list[str]] = defaultdict(list)
        rolled_back: set[str] = set()
        for n in range(30):
            key = f"key-{n % 3}"
            with conn.transaction():
                event_id = outbox.add(topic, order(n), key=key, schema=ORDER_SCHEMA)
                if n % 5 == 4:
                    rolled_back.add(event_id)
                    raise psycopg.Rollback()  # quietly ends the block: the with swallows it
            if event_id not in rolled_back:
                expected[key].append(event_id)
        with OutboxRelay(settings=outbox_settings, metrics=metrics) as relay:
            assert relay.backlog()[0] == 24
            stats = relay.run(idle_timeout_s=1.0, handle_signals=False)
            assert relay.backlog() == (0, 0.0)
    records = read_topic(outbox_settings, topic, PARTITIONS)
    per_key: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        per_key[record.key.decode()].append(record.event_id)
    assert per_key == expected
    assert not rolled_back & {record.event_id for record in records}
    assert stats.published == 24
    assert (
        metrics.registry.get_sample_value(
            "streamkit_outbox_published_total", {"table": outbox_table}
        )
        == 24
    )


def test_delete_mode_and_metrics_of_the_backlog(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
) -> None:
    topic = topic_factory(1)
    metrics = StreamkitMetrics()
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        create_outbox_table(conn, outbox_table)
        outbox = Outbox(conn, encoders=producer, table=outbox_table)
        ids = [outbox.add(topic, order(n), schema=ORDER_SCHEMA) for n in range(5)]
        time.sleep(0.3)  # the oldest row's age becomes visible
        with OutboxRelay(settings=outbox_settings, metrics=metrics, on_sent="delete") as relay:
            relay._housekeeping()  # samples the backlog before publishing
            age = metrics.registry.get_sample_value(
                "streamkit_outbox_oldest_pending_age_seconds", {"table": outbox_table}
            )
            assert (
                metrics.registry.get_sample_value(
                    "streamkit_outbox_pending_rows", {"table": outbox_table}
                )
                == 5
            )
            assert age is not None
            assert age >= 0.25
            relay.run(idle_timeout_s=0.5, handle_signals=False)
        row = conn.execute(f"SELECT count(*) FROM {outbox_table}").fetchone()
        assert row == (0,)
    assert [r.event_id for r in read_topic(outbox_settings, topic, 1)] == ids


def test_a_record_breaking_its_schema_fails_at_add(
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
) -> None:
    topic = topic_factory(1)
    bad = order(1)
    bad["items"][0]["quantity"] = "three"
    with psycopg.connect(postgres_server.url) as conn:
        outbox = Outbox(conn, encoders=producer, table=outbox_table)
        with pytest.raises(SchemaValidationError, match=r"items\[0\]\.quantity"):
            outbox.add(topic, bad, key="k", schema=ORDER_SCHEMA)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing sent
        row = conn.execute(f"SELECT count(*) FROM {outbox_table}").fetchone()
    assert row == (0,)


def test_a_wrong_database_url_fails_at_start_naming_the_variable(
    postgres_server: PostgresEndpoint,
    streamkit_settings: StreamkitSettings,
    python: str,
    child_env: dict[str, str],
) -> None:
    user, _, rest = postgres_server.url.partition("@")
    wrong = user.rsplit(":", 1)[0] + ":wrong-secret@" + rest
    with pytest.raises(OutboxError) as info:
        OutboxRelay(wrong, settings=streamkit_settings)
    assert "STREAMKIT_OUTBOX__URL" in str(info.value)
    assert "wrong-secret" not in str(info.value)
    # The same through the command, which exits 1 with the message.
    import subprocess

    result = subprocess.run(
        [python, "-c", "from streamkit.cli.app import main; main()", "outbox", "relay"],
        env={**child_env, "STREAMKIT_OUTBOX__URL": wrong},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "STREAMKIT_OUTBOX__URL" in result.stderr
    assert "password" in result.stderr
    assert "wrong-secret" not in result.stderr + result.stdout


# End to end, relay processes --------------------------------------------------------------


def _relay_blocked_before_marking(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND wait_event = 'advisory' AND query LIKE 'UPDATE%%'"
        ).fetchone()
    return row is not None and row[0] > 0


def _handle_each_once(settings: StreamkitSettings, topic: str, messages: int) -> dict[str, Any]:
    """A deduplicating consumer over the topic; what it handled, and what it skipped."""
    handled: Counter[str] = Counter()

    def handle(event: Event) -> None:
        handled[event.id] += 1

    with EventConsumer([topic], handle, settings=settings, dedup=MemoryDedupStore()) as consumer:
        stats = consumer.run(max_messages=messages, idle_timeout_s=30, handle_signals=False)
    return {"handled": handled, "skipped": stats.duplicates_skipped}


def test_relay_killed_twice_mid_batch(
    outbox_settings: StreamkitSettings,
    streamkit_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
    relays: Callable[..., RelayProcesses],
) -> None:
    """10,000 committed + 1,000 rolled back; the relay is SIGKILLed twice after Kafka
    acknowledged a batch and before the rows were marked, and restarted each time."""
    url = postgres_server.url
    topic = topic_factory(PARTITIONS)
    workload = Workload(url, outbox_table, topic, producer)
    workload.create_tables()
    hold = psycopg.connect(url, autocommit=True)
    # A relay marking a batch that holds a marker row waits on HOLD_LOCK: published,
    # not marked. That is where the kills land, every time.
    hold.execute(
        f"CREATE FUNCTION {outbox_table}_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF EXISTS (SELECT 1 FROM {outbox_table}_markers WHERE event_id = OLD.event_id) THEN "
        f"PERFORM pg_advisory_xact_lock({HOLD_LOCK}); END IF; RETURN NEW; END $$"
    )
    hold.execute(
        f"CREATE TRIGGER hold BEFORE UPDATE ON {outbox_table} "
        f"FOR EACH ROW EXECUTE FUNCTION {outbox_table}_hold()"
    )
    hold.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
    group = relays(STREAMKIT_OUTBOX__BATCH_SIZE="500")
    started = time.monotonic()
    relay = group.start()
    writers = workload.run(11_000, rollback_every=11, markers=frozenset({3003, 7007}))
    try:
        for _ in range(2):
            wait_for(lambda: _relay_blocked_before_marking(url), "the relay to block")
            group.kill(relay)
            hold.execute(f"DELETE FROM {outbox_table}_markers WHERE event_id IN (SELECT "
                         f"event_id FROM {outbox_table}_markers LIMIT 1)")  # fmt: skip
            hold.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))  # the killed one's
            hold.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))  # backend gives up
            relay = group.start()
        for writer in writers:
            writer.join(120)
        wait_for(lambda: pending(url, outbox_table) == 0, "the relay to drain the outbox")
        elapsed = time.monotonic() - started
        group.stop_all()
    finally:
        hold.close()
    records = read_topic(outbox_settings, topic, PARTITIONS)
    duplicates = workload.check(records)
    dedup = _handle_each_once(streamkit_settings, topic, len(records))
    figures = {
        "committed": len(workload.committed),
        "rolled_back": len(workload.rolled_back),
        "on_topic": len(records),
        "duplicates": duplicates,
        "kills": group.killed,
        "handled_once": sum(1 for n in dedup["handled"].values() if n == 1),
        "skipped_by_dedup": dedup["skipped"],
        "seconds": round(elapsed, 1),
    }
    print(f"FIGURES postgres outbox kills {json.dumps(figures)}")
    assert len(workload.committed) == 10_000
    assert len(workload.rolled_back) == 1_000
    assert group.killed == 2
    # Both killed batches were acknowledged before the kill: published again.
    assert duplicates >= 2
    assert dedup["handled"] == Counter(dict.fromkeys(workload.committed, 1))
    assert dedup["skipped"] == duplicates


def test_two_relays_at_once_lose_nothing_and_keep_key_order(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
    relays: Callable[..., RelayProcesses],
) -> None:
    topic = topic_factory(PARTITIONS)
    workload = Workload(postgres_server.url, outbox_table, topic, producer)
    workload.create_tables()
    group = relays(STREAMKIT_OUTBOX__BATCH_SIZE="50")
    group.start()
    group.start()
    writers = workload.run(4_400, rollback_every=11)
    for writer in writers:
        writer.join(120)
    wait_for(lambda: pending(postgres_server.url, outbox_table) == 0, "the relays to drain")
    group.stop_all()
    published = [
        int(line.split()[1])
        for line in group.log.read_text().splitlines()
        if line.startswith("published ")
    ]
    records = read_topic(outbox_settings, topic, PARTITIONS)
    duplicates = workload.check(records)
    figures = {"committed": len(workload.committed), "per_relay": published}
    print(f"FIGURES postgres outbox two_relays {json.dumps({**figures, 'duplicates': duplicates})}")
    assert len(published) == 2
    # Both relays ran; which one drains which lane is up to the lock race (on a loaded
    # machine the second may find every lane taken), so the split is a figure, not a rule.
    assert sum(published) == 4_000
    assert duplicates == 0


def test_a_row_keeps_the_trace_of_the_handler_that_added_it(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    schemas: SchemaSet,
    registry: SchemaRegistry,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """Producer → service A (its handler adds an outbox row) → relay → service B: one
    trace, each span the child of the one before; the row's own headers are published."""
    orders, payments = topic_factory(1, prefix="outbox-orders"), topic_factory(1)
    with EventProducer(
        outbox_settings, schemas=schemas, registry=registry, tracer_provider=tracer_provider
    ) as origin:
        origin.send(orders, order(1), key="customer-1", schema=ORDER_SCHEMA).result(30)

    def service_a(event: Event) -> None:
        with psycopg.connect(postgres_server.url) as conn, conn.transaction():
            Outbox(conn, encoders=producer, table=outbox_table).add(
                payments,
                payment(1),
                key=event.key,
                schema=PAYMENT_SCHEMA,
                headers=[("tenant", b"acme")],
            )

    with EventConsumer(
        [orders],
        service_a,
        settings=outbox_settings,
        registry=registry,
        tracer_provider=tracer_provider,
    ) as consumer:
        consumer.run(max_messages=1, handle_signals=False)
    with OutboxRelay(settings=outbox_settings, tracer_provider=tracer_provider) as relay:
        assert relay.run(idle_timeout_s=1.0, handle_signals=False).published == 1
    received: list[Event] = []
    with EventConsumer(
        [payments],
        received.append,
        settings=consumer_settings(outbox_settings, group_id=f"b-{outbox_table}"),
        registry=registry,
        tracer_provider=tracer_provider,
    ) as service_b:
        service_b.run(max_messages=1, handle_signals=False)

    chain = span_chain(
        list(span_exporter.get_finished_spans()),
        f"publish {orders}",
        f"process {orders}",
        f"publish {payments}",
        f"process {payments}",
    )
    assert [span.kind for span in chain] == [SpanKind.PRODUCER, SpanKind.CONSUMER] * 2
    assert len({span.context.trace_id for span in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    assert header_value(received[0].headers, "tenant") == b"acme"
    traceparents = [v for k, v in received[0].headers or () if k == "traceparent"]
    assert len(traceparents) == 1  # the relay's span replaced the row's context
    print(f"FIGURES outbox trace: spans={len(chain)} traces=1 parent_child_pairs=3")


def test_an_untraced_relay_passes_the_rows_context_on(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
    tracer_provider: TracerProvider,
) -> None:
    """A relay without a tracer provider publishes the context the row kept as it is."""
    topic = topic_factory(1)
    tracer = tracer_provider.get_tracer("test")
    with (
        tracer.start_as_current_span("adds the row") as span,
        psycopg.connect(postgres_server.url) as conn,
        conn.transaction(),
    ):
        Outbox(conn, encoders=producer, table=outbox_table).add(
            topic, order(1), schema=ORDER_SCHEMA
        )
    with OutboxRelay(settings=outbox_settings) as relay:
        relay.run(idle_timeout_s=1.0, handle_signals=False)
    (record,) = read_topic(outbox_settings, topic, 1)
    trace_id = f"{span.get_span_context().trace_id:032x}"
    span_id = f"{span.get_span_context().span_id:016x}"
    traceparent = record.headers.get("traceparent") or b""
    assert traceparent.decode().startswith(f"00-{trace_id}-{span_id}-")


def test_a_table_from_before_headers_is_upgraded_by_migrate(
    outbox_settings: StreamkitSettings,
    postgres_server: PostgresEndpoint,
    outbox_table: str,
    producer: EventProducer,
    topic_factory: TopicFactory,
) -> None:
    """Adding to an outbox table without the ``headers`` column fails with the hint to
    migrate; ``create_outbox_table`` (what ``streamkit db migrate`` runs) adds it."""
    topic = topic_factory(1)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        create_outbox_table(conn, outbox_table)
        conn.execute(f"ALTER TABLE {outbox_table} DROP COLUMN headers")
        outbox = Outbox(conn, encoders=producer, table=outbox_table)
        with pytest.raises(OutboxError, match="streamkit db migrate"):
            outbox.add(topic, order(1), schema=ORDER_SCHEMA)
        assert create_outbox_table(conn, outbox_table) is False  # found, then upgraded
        event_id = outbox.add(topic, order(2), schema=ORDER_SCHEMA, headers=[("h", "v")])
    with OutboxRelay(settings=outbox_settings) as relay:
        relay.run(idle_timeout_s=1.0, handle_signals=False)
    (record,) = read_topic(outbox_settings, topic, 1)
    assert record.event_id == event_id
    assert record.headers.get("h") == b"v"
