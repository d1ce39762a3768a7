"""Concurrent handlers against the real broker (and a real redis-server): per-key order
at concurrency 64, coroutine handlers that overlap and await send_async, and a slow
event that holds the commit below it. A smaller per-key order test, on threads and on
tasks, runs in the broker-less slice too (librdkafka's mock cluster)."""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from streamkit.consume.aio import AsyncEventConsumer
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.processing import ConsumerStats
from streamkit.dedup import open_store
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from streamkit.testing.redis import RedisEndpoint
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import ConsumerRunner
from tests.integration.consume.conftest import Recorder, Report
from tests.integration.consume.test_consumer import _committed

EVENTS = 20_000
KEYS = 500
PARTITIONS = 6


def _produce(producer: EventProducer, topic: str, count: int, keys: int) -> list[str]:
    futures = [
        producer.send(topic, order(i), key=f"key-{i % keys}", schema=ORDER_SCHEMA)
        for i in range(count)
    ]
    assert producer.flush(60) == 0
    assert all(future.exception(0) is None for future in futures)
    return [future.event_id for future in futures]


@pytest.mark.broker_less
@pytest.mark.parametrize("runner", ["threads", "tasks"])
def test_per_key_order_at_concurrency_16(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    runner: str,
    report: Report,
) -> None:
    count, keys, partitions, concurrency = 3_000, 60, 4, 16
    topic = topic_factory(partitions)
    sent = _produce(producer, topic, count, keys)
    recorder = Recorder()
    rng = random.Random(7)
    bounds: dict[str, Any] = {"max_messages": count, "idle_timeout_s": 30, "handle_signals": False}

    def enter(event: Event) -> float:
        recorder.enter(event)
        return rng.random() * 0.002  # 0-2 ms of "I/O"

    started = time.monotonic()
    if runner == "threads":

        def handle(event: Event) -> None:
            time.sleep(enter(event))
            recorder.leave(event)

        with EventConsumer(
            [topic], handle, settings=streamkit_settings, concurrency=concurrency
        ) as consumer:
            stats = consumer.run(**bounds)
    else:

        async def handle_async(event: Event) -> None:
            await asyncio.sleep(enter(event))
            recorder.leave(event)

        async def main() -> ConsumerStats:
            async with AsyncEventConsumer(
                [topic], handle_async, settings=streamkit_settings, concurrency=concurrency
            ) as consumer:
                return await asyncio.wait_for(consumer.run(**bounds), 120)

        stats = asyncio.run(main())
    elapsed = time.monotonic() - started

    ids = Counter(call[3] for call in recorder.calls)
    report(
        f"per-key-order-broker-less-{runner}",
        events=count,
        keys=keys,
        partitions=partitions,
        concurrency=concurrency,
        seconds=round(elapsed, 2),
        peak_running=recorder.peak,
        out_of_order=recorder.out_of_order(),
        key_overlaps=recorder.overlaps,
        lost=len(set(sent) - set(ids)),
        handled_twice=sum(n - 1 for n in ids.values() if n > 1),
    )
    assert recorder.out_of_order() == 0, "a key's events were handled out of offset order"
    assert recorder.overlaps == 0, "two events of one key ran at once"
    assert ids == Counter(sent), "an event was lost or handled twice"
    assert 1 < recorder.peak <= concurrency
    assert stats.processed == count
    per_partition = Counter(call[1] for call in recorder.calls)
    assert _committed(streamkit_settings, topic, partitions) == dict(per_partition)


def test_per_key_order_at_concurrency_64_with_a_dedup_store(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
    redis_server: RedisEndpoint,
    report: Report,
) -> None:
    topic = topic_factory(PARTITIONS)
    sent = _produce(producer, topic, EVENTS, KEYS)
    store = open_store(f"{redis_server.url}?prefix=order-{uuid.uuid4().hex[:8]}:")
    recorder = Recorder()
    rng = random.Random(11)

    def handle(event: Event) -> None:
        recorder.enter(event)
        time.sleep(rng.random() * 0.005)  # 0-5 ms of "I/O"
        recorder.leave(event)

    consumer = EventConsumer(
        [topic], handle, settings=streamkit_settings, dedup=store, concurrency=64
    )
    started = time.monotonic()
    consumers.start(consumer)
    consumers.wait_for(lambda: len(recorder.calls) >= EVENTS, 120)
    elapsed = time.monotonic() - started
    consumers.wait_for(lambda: consumer.pipeline.held == 0, 30)
    time.sleep(1.0)  # a duplicate would show now
    consumers.stop(consumer)
    store.close()

    ids = Counter(call[3] for call in recorder.calls)
    lost = len(set(sent) - set(ids))
    twice = sum(n - 1 for n in ids.values() if n > 1)
    delays = sorted(consumer.stats.mark_delays)
    report(
        "per-key-order",
        events=EVENTS,
        keys=KEYS,
        partitions=PARTITIONS,
        concurrency=64,
        handler_ms="0-5",
        seconds=round(elapsed, 2),
        msgs_per_s=round(EVENTS / elapsed),
        peak_running=recorder.peak,
        out_of_order=recorder.out_of_order(),
        key_overlaps=recorder.overlaps,
        lost=lost,
        handled_twice=twice,
        in_flight_peak=consumer.stats.in_flight_peak,
        mark_delay_p50_ms=round(statistics.median(delays) * 1000, 1),
        mark_delay_p99_ms=round(delays[int(len(delays) * 0.99)] * 1000, 1),
        mark_delay_max_ms=round(delays[-1] * 1000, 1),
    )
    assert recorder.out_of_order() == 0, "a key's events were handled out of offset order"
    assert recorder.overlaps == 0, "two events of one key ran at once"
    assert lost == 0
    assert twice == 0
    assert recorder.peak > 1, "handlers did not run concurrently"
    assert recorder.peak <= 64
    assert consumer.stats.in_flight_peak <= 640
    per_partition = Counter(call[1] for call in recorder.calls)
    assert _committed(streamkit_settings, topic, PARTITIONS) == dict(per_partition)


def test_coroutine_handlers_overlap_and_await_send_async(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    report: Report,
) -> None:
    source, sink = topic_factory(PARTITIONS), topic_factory(PARTITIONS)
    count = 2_000
    sent = _produce(producer, source, count, 200)
    recorder = Recorder()
    delivered: list[Any] = []

    async def main() -> float:
        async def handle(event: Event) -> None:
            recorder.enter(event)
            await asyncio.sleep(0.005)
            report_ = await producer.send_async(
                sink, event.payload, key=event.key, schema=ORDER_SCHEMA
            )
            delivered.append(report_)
            recorder.leave(event)
            if len(delivered) == count:
                consumer.stop()

        consumer = AsyncEventConsumer([source], handle, settings=streamkit_settings, concurrency=64)
        started = time.monotonic()
        async with consumer:
            await asyncio.wait_for(consumer.run(handle_signals=False), 120)
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    report(
        "coroutine-overlap",
        events=count,
        concurrency=64,
        peak_running=recorder.peak,
        send_async_acknowledged=len(delivered),
        seconds=round(elapsed, 2),
        out_of_order=recorder.out_of_order(),
    )
    assert sorted(call[3] for call in recorder.calls) == sorted(sent)
    assert len(delivered) == count
    assert {r.topic for r in delivered} == {sink}
    assert recorder.peak >= 16, "coroutine handlers did not overlap"
    assert recorder.peak <= 64
    assert recorder.out_of_order() == 0
    assert recorder.overlaps == 0


def test_a_slow_event_holds_the_committed_offset_until_it_finishes(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    consumers: ConsumerRunner,
    report: Report,
) -> None:
    topic = topic_factory(1)
    total, slow_at = 200, 40
    sent = _produce(producer, topic, total, total)  # a key each: nothing waits for the slow one
    release = threading.Event()
    handled: list[int] = []

    def handle(event: Event) -> None:
        if event.offset == slow_at:
            release.wait(60)
        handled.append(event.offset or 0)

    consumer = consumers.start(
        EventConsumer([topic], handle, settings=streamkit_settings, concurrency=8)
    )
    consumers.wait_for(lambda: len(handled) == total - 1, 60)
    seen: list[int] = []
    for _ in range(8):  # several commit intervals
        seen.append(_committed(streamkit_settings, topic, 1)[0])
        time.sleep(0.2)
    release.set()
    consumers.wait_for(lambda: _committed(streamkit_settings, topic, 1)[0] == total, 30)
    consumers.stop(consumer)
    report(
        "commit-safety-slow-event",
        events=total,
        slow_offset=slow_at,
        finished_above_while_slow=total - 1 - slow_at,
        highest_committed_while_slow=max(seen),
        committed_after=total,
    )
    assert len(sent) == total
    assert max(seen) <= slow_at, "committed past an unfinished event"
    assert max(seen) == slow_at, "everything below the slow event was committed"
