"""quixstreams: a topic with its AvroSerializer/AvroDeserializer (registry mode, so the
values are in the Confluent wire format), the Application's producer, and a
StreamingDataFrame run by ``Application.run`` for consuming (at-least-once, committing
every 500 records like the floor's batches)."""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

from bench.common import (
    Clock,
    Env,
    Stopwatch,
    Timing,
    envelope,
    headers,
    order_schema,
    payloads,
    producer_config,
)


def _application(env: Env, directory: str, group: str | None = None) -> Any:
    from quixstreams import Application

    # Same producer semantics as every contender (idempotent, acks=all, linger 5 ms).
    base = producer_config(env)
    extra = {key: base[key] for key in ("enable.idempotence", "acks", "linger.ms", "batch.size")}
    return Application(
        broker_address=env.bootstrap,
        consumer_group=group or f"quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        commit_every=500,
        producer_extra_config=extra,
        state_dir=directory,
        loglevel="WARNING",
        auto_create_topics=False,
    )


def _topic(app: Any, env: Env, name: str) -> Any:
    from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
    from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig

    registry = SchemaRegistryClientConfig(url=env.registry)
    return app.topic(
        name,
        key_serializer="string",
        key_deserializer="string",
        value_serializer=AvroSerializer(
            order_schema().definition, schema_registry_client_config=registry
        ),
        value_deserializer=AvroDeserializer(schema_registry_client_config=registry),
    )


def produce(env: Env, topic: str, count: int, warmup: int) -> Timing:
    records = payloads(warmup + count)
    failed: list[Any] = []
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            failed.append(err)

    with tempfile.TemporaryDirectory() as directory:
        app = _application(env, directory)
        target = _topic(app, env, topic)
        with app.get_producer() as producer:

            def send(index: int) -> None:
                record = envelope(records[index])
                message = target.serialize(key=str(index), value=record)
                producer.produce(
                    topic=target.name,
                    key=message.key,
                    value=message.value,
                    headers=headers(record),
                    on_delivery=on_delivery,
                )

            for i in range(warmup):
                send(i)
            producer.flush(120)
            delivered = 0
            watch = Stopwatch()
            watch.start()
            for i in range(warmup, warmup + count):
                send(i)
            producer.flush(120)
            timing = watch.stop(count)
    if failed or delivered != count:
        raise RuntimeError(f"quixstreams: {delivered}/{count} acknowledged")
    return timing


def consume(env: Env, topic: str, count: int, warmup: int, handler_wait_s: float = 0.0) -> Timing:
    """A StreamingDataFrame over the topic; ``handler_wait_s``: the handler waits that long
    (quixstreams processes one message at a time: it has no concurrency option)."""
    import time

    clock = Clock(warmup, count)
    with tempfile.TemporaryDirectory() as directory:
        app = _application(env, directory)
        frame = app.dataframe(_topic(app, env, topic))

        def handle(_order: Any) -> None:
            if handler_wait_s:
                time.sleep(handler_wait_s)
            if clock.tick():
                app.stop()

        frame.update(handle)
        app.run()
    return clock.timing("quixstreams")
