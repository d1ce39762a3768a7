"""streamkit: EventProducer.send and EventConsumer.run, as a service would use them.

``consume`` takes an optional dedup backend (``memory``, ``sqlite``, ``redis``): the
``streamkit-<backend>`` contenders claim and complete every event id in that store. The
I/O-bound phase adds a handler that waits (``time.sleep`` in a sync handler, or
``asyncio.sleep`` in a coroutine handler run by ``AsyncEventConsumer``) and a
``concurrency``.
"""

from __future__ import annotations

from dataclasses import replace
from multiprocessing.synchronize import Event as ReadyEvent
from typing import Any

from bench.common import (
    SCHEMA_NAME,
    SCHEMAS,
    Clock,
    Env,
    Pacer,
    Stopwatch,
    Timing,
    latency_ms,
    payloads,
)
from bench.common import sent_header as _sent_header
from bench.common import settings as _settings


def produce(env: Env, topic: str, count: int, warmup: int) -> Timing:
    from streamkit.produce.producer import EventProducer

    records = payloads(warmup + count)
    with EventProducer(_settings(env), schemas=SCHEMAS) as producer:
        for i in range(warmup):
            producer.send(topic, records[i], key=str(i), schema=SCHEMA_NAME)
        producer.flush(120)
        watch = Stopwatch()
        watch.start()
        futures = [
            producer.send(topic, records[i], key=str(i), schema=SCHEMA_NAME)
            for i in range(warmup, warmup + count)
        ]
        producer.flush(120)
        timing = watch.stop(count)
    failed = sum(1 for future in futures if future.exception(0) is not None)
    if failed:
        raise RuntimeError(f"streamkit: {failed}/{count} not acknowledged")
    return timing


def _store(env: Env, backend: str | None, directory: str) -> Any:
    if backend is None:
        return None
    from streamkit.dedup import open_store

    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{directory}/dedup.db",
        "redis": env.redis,
    }[backend]
    return open_store(url)


def consume(
    env: Env,
    topic: str,
    count: int,
    warmup: int,
    backend: str | None = None,
    concurrency: int = 1,
    handler_wait_s: float = 0.0,
    coroutine: bool = False,
) -> Timing:
    import tempfile

    name = "streamkit" + (f"-{backend}" if backend else "")
    bytes_per_id = None
    with tempfile.TemporaryDirectory() as directory:
        store = _store(env, backend, directory)
        try:
            run = _consume_async if coroutine else _consume_sync
            clock = run(env, topic, count, warmup, store, concurrency, handler_wait_s)
            if store is not None:
                bytes_per_id = store.stats().bytes_per_id
        finally:
            if store is not None:
                store.close()
    return replace(clock.timing(name), bytes_per_id=bytes_per_id)


def _consume_sync(
    env: Env,
    topic: str,
    count: int,
    warmup: int,
    store: Any,
    concurrency: int,
    handler_wait_s: float,
) -> Clock:
    import threading
    import time

    from streamkit.consume.consumer import EventConsumer

    clock = Clock(warmup, count)
    lock = threading.Lock()  # handlers may run on several threads
    consumer: EventConsumer | None = None

    def handle(_event: Any) -> None:
        if handler_wait_s:
            time.sleep(handler_wait_s)
        with lock:
            done = clock.tick()
        if done and consumer is not None:
            consumer.stop()

    consumer = EventConsumer(
        [topic], handle, settings=_settings(env), dedup=store, concurrency=concurrency
    )
    with consumer:
        consumer.run(idle_timeout_s=60, handle_signals=False)
    return clock


def _consume_async(
    env: Env,
    topic: str,
    count: int,
    warmup: int,
    store: Any,
    concurrency: int,
    handler_wait_s: float,
) -> Clock:
    import asyncio

    from streamkit.consume.aio import AsyncEventConsumer

    clock = Clock(warmup, count)

    async def main() -> None:
        consumer: AsyncEventConsumer | None = None

        async def handle(_event: Any) -> None:
            await asyncio.sleep(handler_wait_s)
            if clock.tick() and consumer is not None:
                consumer.stop()

        consumer = AsyncEventConsumer(
            [topic], handle, settings=_settings(env), dedup=store, concurrency=concurrency
        )
        async with consumer:
            await consumer.run(idle_timeout_s=60, handle_signals=False)

    asyncio.run(main())
    return clock


def latency_produce(env: Env, topic: str, total: int, rate: float) -> None:
    """Offer ``total`` events at ``rate`` per second, each stamped with its send time."""
    from streamkit.produce.producer import EventProducer

    records = payloads(total)
    pacer = Pacer(rate)
    with EventProducer(_settings(env), schemas=SCHEMAS) as producer:
        futures = []
        for i, payload in enumerate(records):
            pacer.wait()
            futures.append(
                producer.send(
                    topic, payload, key=str(i), schema=SCHEMA_NAME, headers=[_sent_header()]
                )
            )
    if any(future.exception(0) is not None for future in futures):
        raise RuntimeError("streamkit latency: not every event was acknowledged")


def latency_consume(env: Env, topic: str, count: int, warmup: int, ready: ReadyEvent) -> Timing:
    """Handle events; latency of each one after the warm-up, in ms."""
    from streamkit.consume.consumer import EventConsumer

    clock = Clock(warmup, count)
    samples: list[float] = []
    consumer: EventConsumer | None = None

    def handle(event: Any) -> None:
        if clock.seen >= warmup:
            samples.append(latency_ms(event.headers))
        if clock.tick() and consumer is not None:
            consumer.stop()

    consumer = EventConsumer(
        [topic], handle, settings=_settings(env), on_assign=lambda _partitions: ready.set()
    )
    with consumer:
        consumer.run(idle_timeout_s=60, handle_signals=False)
    return clock.timing("streamkit latency", samples)
