"""The exactly-once recipe of docs/how-to/first-service.md, run as written against the
real broker: the service's own table in the dedup file, an invoice row and an
``InvoiceIssued`` event per order, once, however often the order is delivered."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.consume.transactional import output_event_id
from streamkit.dedup import SqliteDedupStore, scoped_key
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet, load_schemas
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import (
    INVOICE_SCHEMA,
    LOGICAL_SCHEMAS_DIR,
    ORDER_SCHEMA,
    invoice,
    order,
)


def billing_service(
    settings: StreamkitSettings,
    store: SqliteDedupStore,
    producer: EventProducer,
    out: str,
    schema: str | None = None,
) -> Any:
    """The handler of the recipe (the documentation shows the same code)."""
    # The service's own table lives in the dedup store's file, created once at start-up.
    with closing(sqlite3.connect(store.path)) as setup, setup:
        setup.execute(
            "CREATE TABLE IF NOT EXISTS invoices ("
            " order_id TEXT PRIMARY KEY, total TEXT NOT NULL, event_id TEXT NOT NULL)"
        )
    group = settings.consumer.require_group()

    def handle(event: Event) -> None:
        with store.transaction(scoped_key(group, event.id)) as conn:
            if conn is None:
                return  # this order was billed before: its row and its event exist
            total = Decimal(event.payload["total_cents"]) / 100
            invoice_id = output_event_id(event.id, 0)  # stable across redeliveries
            conn.execute(
                "INSERT INTO invoices VALUES (?, ?, ?)",
                (event.payload["order_id"], str(total), invoice_id),
            )
            # Sent, and acknowledged, before the row commits: a crash in between bills the
            # redelivered order again and re-sends the same event id, which readers'
            # dedup skips; an event is never lost for a committed row.
            payload = {**invoice(1), "total": total.quantize(Decimal("0.01"))}
            producer.send(out, payload, key=event.key, event_id=invoice_id, schema=schema).result(
                timeout=30
            )

    return handle


@pytest.fixture
def both_schemas(schemas: SchemaSet) -> SchemaSet:
    logical = load_schemas(LOGICAL_SCHEMAS_DIR)
    return SchemaSet({**dict(schemas), **dict(logical)})


def test_each_order_is_billed_once_with_one_row_and_one_event(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    both_schemas: SchemaSet,
    topic_factory: TopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    orders, invoices = topic_factory(partitions=2), topic_factory(partitions=1)
    sent = [producer.send(orders, order(n), schema=ORDER_SCHEMA, key=f"c-{n}") for n in range(3)]
    ids = [future.result(timeout=30).event_id for future in sent]
    # A re-send of order 0 with its id: the consumer must not bill it twice.
    producer.send(orders, order(0), schema=ORDER_SCHEMA, key="c-0", event_id=ids[0]).result(
        timeout=30
    )
    store = SqliteDedupStore("billing.db")
    with (
        closing(store),
        EventProducer(streamkit_settings, schemas=both_schemas) as billing_out,
        EventConsumer(
            [orders],
            billing_service(streamkit_settings, store, billing_out, invoices, INVOICE_SCHEMA),
            settings=streamkit_settings,
            dedup=store,
        ) as consumer,
    ):
        consumer.run(max_messages=4, idle_timeout_s=30, handle_signals=False)
    with closing(sqlite3.connect(tmp_path / "billing.db")) as conn:
        rows = conn.execute("SELECT order_id, event_id FROM invoices ORDER BY order_id").fetchall()
    assert [row[0] for row in rows] == [order(n)["order_id"] for n in range(3)]
    issued: list[Event] = []
    reader = streamkit_settings.with_group("invoice-reader")
    with EventConsumer([invoices], issued.append, settings=reader) as check:
        check.run(max_messages=3, idle_timeout_s=30, handle_signals=False)
    assert sorted(e.id for e in issued) == sorted(row[1] for row in rows)
    assert sorted(e.payload["total"] for e in issued) == sorted(
        (Decimal(order(n)["total_cents"]) / 100).quantize(Decimal("0.01")) for n in range(3)
    )
