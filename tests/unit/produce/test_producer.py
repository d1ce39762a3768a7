"""EventProducer without a broker: delivery reports are served inline, never by a thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException

import streamkit.produce.producer
from streamkit.errors import AuthorizationError
from streamkit.produce.delivery import DeliveryReport
from streamkit.produce.producer import EventProducer
from streamkit.settings import load_settings
from tests.factories import ORDER_SCHEMA, order
from tests.fakes import FakeKafkaProducer, mock_registry


@pytest.fixture
def make_producer(monkeypatch: pytest.MonkeyPatch) -> Callable[[], EventProducer]:
    monkeypatch.setattr(streamkit.produce.producer, "Producer", FakeKafkaProducer)
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
    )
    return lambda: EventProducer(settings, registry=mock_registry(settings))


@pytest.fixture
def producer(make_producer: Callable[[], EventProducer]) -> Iterator[EventProducer]:
    with make_producer() as event_producer:
        yield event_producer


def test_reports_are_served_inline_every_few_sends(
    producer: EventProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        streamkit.produce.producer, "IDLE_SERVE_INTERVAL_S", 60.0
    )  # never idle here
    futures = [producer.send("orders", order(i), schema=ORDER_SCHEMA) for i in range(20)]
    served = [future.done() for future in futures]
    assert served == [True] * 16 + [False] * 4  # polled after the 8th and the 16th send
    assert futures[-1].result(timeout=5) == DeliveryReport("orders", 0, 19, futures[-1].event_id)
    assert all(future.done() for future in futures)


def test_an_idle_producer_is_served_by_its_helper_thread(producer: EventProducer) -> None:
    future = producer.send("orders", order(1), schema=ORDER_SCHEMA)
    deadline = time.monotonic() + 10
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)  # no result(), poll() or flush(): only the idle server can settle it
    assert future.done()


def test_callbacks_run_on_poll_and_close_serves_the_rest(
    make_producer: Callable[[], EventProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        streamkit.produce.producer, "IDLE_SERVE_INTERVAL_S", 60.0
    )  # never idle here
    producer = make_producer()
    seen: list[str] = []
    first = producer.send("orders", order(1), schema=ORDER_SCHEMA)
    first.add_done_callback(lambda future: seen.append(future.event_id))
    assert seen == []
    assert producer.poll() == 1
    assert seen == [first.event_id]
    last = producer.send("orders", order(2), schema=ORDER_SCHEMA)
    producer.close()
    assert last.done()
    assert last.exception() is None


class FatallyRefusedProducer(FakeKafkaProducer):
    """Fails every record with _FATAL, then raises the cause, as librdkafka's poll does."""

    def poll(self, _timeout: float = 0) -> int:
        served, self.queued = self.queued, []
        for callback, message in served:
            callback(KafkaError(KafkaError._FATAL, "Fatal error"), message)
        refused = KafkaError(
            KafkaError.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed", fatal=True
        )
        raise KafkaException(refused)

    def flush(self, _timeout: float = -1) -> int:
        return 0


def test_a_fatal_error_is_reported_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamkit.produce.producer, "Producer", FatallyRefusedProducer)
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
    )
    producer = EventProducer(settings, registry=mock_registry(settings))
    future = producer.send("orders", order(1), schema=ORDER_SCHEMA)

    with pytest.raises(AuthorizationError, match="CLUSTER_AUTHORIZATION_FAILED"):
        future.result(5)
    with pytest.raises(AuthorizationError):  # and a settled future says the same
        future.result(5)
    with pytest.raises(AuthorizationError):
        producer.send("orders", order(2), schema=ORDER_SCHEMA)
    producer.close()


def test_close_releases_the_librdkafka_handle() -> None:
    # A real librdkafka producer (nothing listens on the port): once closed it must not
    # linger until garbage collection, keeping connections and renewing OAuth tokens.
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
    )
    producer = EventProducer(settings, registry=mock_registry(settings))
    producer.close()
    with pytest.raises(RuntimeError, match="closed"):
        producer.client.poll(0)
    assert producer.poll(0) == 0  # the face stays safe to call


class FatalOnCloseProducer(FatallyRefusedProducer):
    """As librdkafka may: ``close()`` of the handle raises the fatal error once more."""

    def close(self) -> None:
        refused = KafkaError(
            KafkaError.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed", fatal=True
        )
        raise KafkaException(refused)


def test_closing_after_a_fatal_error_keeps_the_error_a_with_block_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streamkit.produce.producer, "Producer", FatalOnCloseProducer)
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
    )
    with (
        pytest.raises(AuthorizationError, match="CLUSTER_AUTHORIZATION_FAILED"),
        EventProducer(settings, registry=mock_registry(settings)) as producer,
    ):
        producer.send("orders", order(1), schema=ORDER_SCHEMA).result(5)
    producer.close()  # closed once: nothing more to raise
