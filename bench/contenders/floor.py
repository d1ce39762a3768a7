"""The floor: hand-written confluent_kafka loops with fastavro, no validation, no framework.

This is what the machine and librdkafka can do with the same configuration streamkit
derives; every other figure is reported as a ratio to it.
"""

from __future__ import annotations

from multiprocessing.synchronize import Event as ReadyEvent
from typing import Any

from bench.common import (
    Clock,
    Env,
    Pacer,
    Stopwatch,
    Timing,
    avro_decoder,
    avro_encoder,
    consumer_config,
    envelope,
    headers,
    latency_ms,
    payloads,
    producer_config,
    register,
    sent_header,
)


class _Sender:
    """produce + poll(0) per record, retrying on a full queue; counts acknowledgements."""

    def __init__(self, env: Env, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.encode = avro_encoder(*register(env, topic))
        self.producer = Producer(producer_config(env))
        self.delivered = self.failed = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1

    def send(
        self, payload: dict[str, Any], seq: int, *, latency: bool = False, keys: int = 0
    ) -> None:
        record = envelope(payload)
        value = self.encode(record)
        envelope_headers = headers(record)
        if latency:
            envelope_headers.append(sent_header())
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value,
                    str(seq % keys if keys else seq).encode(),
                    headers=envelope_headers,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self.producer.poll(0.01)
        self.producer.poll(0)

    def settle(self, expected: int) -> None:
        remaining = self.producer.flush(120)
        if remaining or self.failed or self.delivered != expected:
            raise RuntimeError(f"floor: {self.delivered}/{expected} acknowledged")
        self.delivered = 0


def produce(env: Env, topic: str, count: int, warmup: int) -> Timing:

    sender = _Sender(env, topic)
    records = payloads(warmup + count)
    for i in range(warmup):
        sender.send(records[i], i)
    sender.settle(warmup)
    watch = Stopwatch()
    watch.start()
    for i in range(warmup, warmup + count):
        sender.send(records[i], i)
    sender.settle(count)
    return watch.stop(count)


def fill(env: Env, topic: str, count: int, keys: int = 0) -> None:
    """Write ``count`` records for the consume contenders (not timed); ``keys``: how many
    distinct keys (default: one per record)."""
    sender = _Sender(env, topic)
    for i, payload in enumerate(payloads(count)):
        sender.send(payload, i, keys=keys)
    sender.settle(count)


def consume(env: Env, topic: str, count: int, warmup: int, handler_wait_s: float = 0.0) -> Timing:
    """The hand-written loop: ``consume(500)``, decode, (wait ``handler_wait_s``: a
    sequential handler doing I/O), store the offset; a synchronous commit per batch."""
    import time
    import uuid

    from confluent_kafka import Consumer

    decode = avro_decoder(env)
    consumer = Consumer(consumer_config(env, f"floor-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    clock = Clock(warmup, count)
    done = False
    while not done:
        messages = consumer.consume(500, 1.0)
        for message in messages:
            if message.error():
                continue
            decode(message.value())
            if handler_wait_s:
                time.sleep(handler_wait_s)
            consumer.store_offsets(message=message)
            done = clock.tick() or done
            if done and handler_wait_s:
                break  # measured enough: the rest would only wait
        if messages:
            consumer.commit(asynchronous=False)
    consumer.close()
    return clock.timing("floor")


def latency_produce(env: Env, topic: str, total: int, rate: float) -> None:
    """Offer ``total`` records at ``rate`` per second, each stamped with its send time."""
    sender = _Sender(env, topic)
    pacer = Pacer(rate)
    for i, payload in enumerate(payloads(total)):
        pacer.wait()
        sender.send(payload, i, latency=True)
    sender.settle(total)


def latency_consume(env: Env, topic: str, count: int, warmup: int, ready: ReadyEvent) -> Timing:
    """Receive and decode; latency of each record after the warm-up, in ms."""
    import uuid

    from confluent_kafka import Consumer

    decode = avro_decoder(env)
    config = consumer_config(env, f"floor-lat-{uuid.uuid4().hex[:8]}")
    consumer = Consumer(config)
    consumer.subscribe([topic], on_assign=lambda _c, _p: ready.set())
    samples: list[float] = []
    clock = Clock(warmup, count)
    done = False
    while not done:
        messages = consumer.consume(500, 0.1)
        for message in messages:
            if message.error():
                continue
            decode(message.value())
            if clock.seen >= warmup:
                samples.append(latency_ms(message.headers()))
            consumer.store_offsets(message=message)
            done = clock.tick() or done
        if messages:
            consumer.commit(asynchronous=False)
    consumer.close()
    return clock.timing("floor latency", samples)
