"""A handler blocked longer than max.poll.interval.ms: at concurrency > 1 the poll loop
goes on and the member keeps its partitions; at concurrency 1 (the handler runs on the
poll thread) the stall shows on /livez."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.observability.http import serve_metrics
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import ConsumerRunner
from tests.integration.consume.conftest import Report

SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms
MAX_POLL_INTERVAL_MS = 7_000  # librdkafka wants it >= session.timeout.ms
BLOCKED_S = 10.0
EVENTS = 60


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_handler_blocked_past_max_poll_interval(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
    concurrency: int,
    report: Report,
) -> None:
    topic = topic_factory(1)
    sent = {
        producer.send(topic, order(i), key=f"key-{i}", schema=ORDER_SCHEMA).event_id
        for i in range(EVENTS)
    }
    assert producer.flush(30) == 0
    settings = streamkit_settings.model_copy(
        update={
            "consumer": streamkit_settings.consumer.model_copy(
                update={
                    "session_timeout_ms": SESSION_TIMEOUT_MS,
                    "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
                }
            )
        }
    )
    blocked, release = threading.Event(), threading.Event()
    handled: list[str] = []

    def handle(event: Event) -> None:
        if event.offset == 5 and not blocked.is_set():
            blocked.set()
            release.wait(BLOCKED_S)
        handled.append(event.id)

    consumer = EventConsumer([topic], handle, settings=settings, concurrency=concurrency)
    with serve_metrics(StreamkitMetrics(), live=consumer.is_alive) as server:
        consumers.start(consumer)
        assert blocked.wait(60)
        blocked_at = time.monotonic()
        statuses: list[tuple[float, int]] = []
        while time.monotonic() - blocked_at < BLOCKED_S - 0.5:
            statuses.append((time.monotonic() - blocked_at, _status(f"{server.url}/livez")))
            time.sleep(0.25)
        handled_while_blocked = len(handled)
        release.set()
        consumers.wait_for(lambda: sent <= set(handled), 60)
        handled_all_at = time.monotonic()
        status_when_handled = _status(f"{server.url}/livez")
        # An evicted member rejoins on its next poll after the handler returns: the
        # join and sync take a moment after the last event was handled.
        consumers.wait_for(lambda: _status(f"{server.url}/livez") == 200, 30)
        live_again_after_s = round(time.monotonic() - handled_all_at, 1)
    consumers.stop(consumer)
    first_503 = next((round(at, 1) for at, status in statuses if status == 503), None)
    report(
        f"blocked-handler-concurrency-{concurrency}",
        blocked_s=BLOCKED_S,
        max_poll_interval_s=MAX_POLL_INTERVAL_MS / 1000,
        livez_503_after_s=first_503,
        livez_200_samples=sum(1 for _, status in statuses if status == 200),
        livez_503_samples=sum(1 for _, status in statuses if status == 503),
        handled_while_blocked=handled_while_blocked,
        rebalances=consumer.stats.rebalances,
        livez_when_all_handled=status_when_handled,
        live_again_after_handled_s=live_again_after_s,
    )
    if concurrency == 1:
        assert first_503 is not None, "/livez did not report the stalled poll loop"
        assert first_503 >= MAX_POLL_INTERVAL_MS / 1000 - 1.5
    else:
        assert all(status == 200 for _, status in statuses), "the member looked dead"
        assert consumer.stats.rebalances == 1, "the member was evicted and rejoined"
        assert handled_while_blocked == EVENTS - 1, "other keys flowed meanwhile"
        assert status_when_handled == 200, "the member that kept polling never left"
