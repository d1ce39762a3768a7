"""Confluent's own serializing clients: SerializingProducer + AvroSerializer,
DeserializingConsumer + AvroDeserializer, against the same registry."""

from __future__ import annotations

import uuid
from typing import Any

from bench.common import (
    Clock,
    Env,
    Stopwatch,
    Timing,
    consumer_config,
    envelope,
    headers,
    order_schema,
    payloads,
    producer_config,
)


def _registry(env: Env) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": env.registry})


def produce(env: Env, topic: str, count: int, warmup: int) -> Timing:
    from confluent_kafka import SerializingProducer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import StringSerializer

    producer = SerializingProducer(
        {
            **producer_config(env),
            "key.serializer": StringSerializer(),
            "value.serializer": AvroSerializer(_registry(env), order_schema().text),
        }
    )
    failed: list[Any] = []
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            failed.append(err)

    def send(payload: dict[str, Any], seq: int) -> None:
        record = envelope(payload)
        while True:
            try:
                producer.produce(
                    topic,
                    key=str(seq),
                    value=record,
                    headers=headers(record),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)

    records = payloads(warmup + count)
    for i in range(warmup):
        send(records[i], i)
    producer.flush(120)
    delivered = 0
    watch = Stopwatch()
    watch.start()
    for i in range(warmup, warmup + count):
        send(records[i], i)
    producer.flush(120)
    timing = watch.stop(count)
    if failed or delivered != count:
        raise RuntimeError(f"confluent: {delivered}/{count} acknowledged")
    return timing


def consume(env: Env, topic: str, count: int, warmup: int) -> Timing:
    from confluent_kafka import DeserializingConsumer
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    consumer = DeserializingConsumer(
        {
            **consumer_config(env, f"confluent-{uuid.uuid4().hex[:8]}"),
            "value.deserializer": AvroDeserializer(_registry(env)),
        }
    )
    consumer.subscribe([topic])
    clock = Clock(warmup, count)
    done = False
    while not done:
        # DeserializingConsumer has no batch consume(): one poll per message.
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        consumer.store_offsets(message=message)
        done = clock.tick()
        if done or clock.seen % 500 == 0:
            consumer.commit(asynchronous=False)
    consumer.close()
    return clock.timing("confluent")
