"""PostgreSQL restarted under a running relay and a consumer writing with exactly_once.

A server of its own (the session's is shared) is stopped with a fast shutdown while
the relay publishes and the consumer's handler writes effects; it comes back on the
same port 3 s later. Both must wait, resume, and leave every committed event exactly
once in the effects table, with nothing dead-lettered.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import exactly_once, scoped_key
from streamkit.produce.outbox import Outbox
from streamkit.produce.outbox_relay import OutboxRelay
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from streamkit.testing.postgres import PostgresServer, start_or_fail
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import ConsumerRunner

BEFORE, AFTER = 3_000, 1_000
DOWN_S = 3.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_or_fail(PostgresServer())
    try:
        yield server
    finally:
        server.stop()


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _write(url: str, producer: EventProducer, topic: str, numbers: range) -> list[str]:
    with psycopg.connect(url) as conn:
        outbox = Outbox(conn, encoders=producer)
        ids = []
        for n in numbers:
            with conn.transaction():
                ids.append(outbox.add(topic, order(n), key=f"k{n % 20}", schema=ORDER_SCHEMA))
        return ids


def test_relay_and_consumer_wait_out_a_database_restart(
    own_postgres: PostgresServer,
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
) -> None:
    url = own_postgres.url
    topic = topic_factory(3)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (event_id text NOT NULL)")
    settings = streamkit_settings.model_copy(
        update={
            # Handler failures during the outage are retried for ~40 s, not dead-lettered.
            "consumer": streamkit_settings.consumer.model_copy(
                update={"max_retries": 50, "retry_backoff_ms": 100, "retry_backoff_max_ms": 1000}
            )
        }
    )
    group = settings.consumer.group_id or ""
    sent = _write(url, producer, topic, range(BEFORE))

    pool = ConnectionPool(url, min_size=1, max_size=2, open=True)

    def handle(event: Event) -> None:
        with pool.connection() as conn, exactly_once(conn, scoped_key(group, event.id)) as tx:
            if tx is not None:
                tx.execute("INSERT INTO effects VALUES (%s)", (event.id,))

    relay = OutboxRelay(url, settings=settings)
    relay_thread = threading.Thread(target=relay.run, kwargs={"handle_signals": False})
    try:
        relay_thread.start()
        consumer = consumers.start(EventConsumer([topic], handle, settings=settings))
        consumers.wait_for(lambda: _count(url, "SELECT count(*) FROM effects") >= BEFORE // 5)
        effects_at_restart = _count(url, "SELECT count(*) FROM effects")
        restarted = time.monotonic()
        own_postgres.restart(down_s=DOWN_S)
        sent += _write(url, producer, topic, range(BEFORE, BEFORE + AFTER))
        consumers.wait_for(
            lambda: _count(url, "SELECT count(*) FROM effects") >= BEFORE + AFTER, timeout_s=120
        )
        recovered_s = time.monotonic() - restarted
        consumers.wait_for(
            lambda: _count(url, "SELECT count(*) FROM streamkit_outbox WHERE sent_at IS NULL") == 0
        )
        consumers.stop(consumer)
    finally:
        relay.stop()
        relay_thread.join(30)
        relay.close()
        pool.close()
    with psycopg.connect(url) as conn:
        effects = [row[0] for row in conn.execute("SELECT event_id FROM effects")]
    figures = {
        "events": len(sent),
        "effects": len(effects),
        "effects_at_restart": effects_at_restart,
        "down_s": DOWN_S,
        "all_effects_after_s": round(recovered_s, 1),
        "relay_database_outages": relay.stats.database_outages,
        "consumer_retries": consumer.stats.retries,
        "dead_lettered": consumer.stats.dead_lettered,
    }
    print(f"FIGURES postgres restart {json.dumps(figures)}")
    assert sorted(effects) == sorted(sent), "an event lost, or an effect twice"
    assert consumer.stats.dead_lettered == 0
    assert relay.stats.database_outages >= 1
    assert consumer.stats.retries >= 1  # the handler met the outage and waited it out
