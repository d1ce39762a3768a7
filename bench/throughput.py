"""Produce and consume throughput: streamkit against hand-written loops, side by side.

    python bench/throughput.py [--messages N] [--rounds R]

Starts a throwaway broker and registry with the test kit unless
STREAMKIT_KAFKA__BOOTSTRAP_SERVERS and STREAMKIT_SCHEMA_REGISTRY__URL are set. Each
contender runs in its own process on the same topic data, alternating over rounds; the
table shows the best round of each as msgs/s and as a ratio to the hand-written floor
(a confluent_kafka.Producer/Consumer + fastavro schemaless loop with no validation).
Every produced message is acknowledged; every consumed one is decoded and committed.
Writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.factories import ORDER_SCHEMA, order  # noqa: E402

WARMUP = 2000


def _settings(env: dict[str, str], group: str | None = None) -> Any:
    from streamkit.settings import load_settings

    return load_settings(
        kafka={"bootstrap_servers": env["bootstrap"]},
        schema_registry={"url": env["registry"]},
        consumer={"group_id": group or f"bench-{uuid.uuid4().hex[:8]}"},
    )


def _payloads(count: int) -> list[dict[str, Any]]:
    return [order(i) for i in range(count)]


# --- produce contenders: (env, topic, count) -> seconds for `count` acknowledged sends ---


def produce_floor(env: dict[str, str], topic: str, count: int) -> float:
    from confluent_kafka import Producer
    from fastavro import schemaless_writer

    from streamkit.clientconfig import client_config
    from streamkit.events import EventEncoder, frame
    from streamkit.producer import EventProducer

    settings = _settings(env)
    with EventProducer(settings) as helper:  # only to register and get the schema id
        encoder = helper.encoder(topic, ORDER_SCHEMA)
    parsed, prefix = encoder.schema.parsed, frame(encoder.schema_id, b"")
    producer = Producer(client_config(settings, "producer"))
    payloads = _payloads(count + WARMUP)
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1

    def send(payload: dict[str, Any], seq: int) -> None:
        record = {
            "id": str(uuid.uuid4()),
            "timestamp": int(time.time() * 1000),
            "type": "OrderPlaced",
            "payload": payload,
        }
        buffer = io.BytesIO()
        buffer.write(prefix)
        schemaless_writer(buffer, parsed, record)
        headers = [("event-id", record["id"].encode())]
        while True:
            try:
                producer.produce(
                    topic,
                    buffer.getvalue(),
                    str(seq).encode(),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)

    del EventEncoder
    for i in range(WARMUP):
        send(payloads[i], i)
    producer.flush(60)
    delivered = 0
    started = time.perf_counter()
    for i in range(count):
        send(payloads[WARMUP + i], i)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    assert delivered == count, f"floor: {delivered}/{count} delivered"
    return elapsed


def produce_streamkit(env: dict[str, str], topic: str, count: int) -> float:
    from streamkit.producer import EventProducer

    payloads = _payloads(count + WARMUP)
    with EventProducer(_settings(env)) as producer:
        for i in range(WARMUP):
            producer.send(topic, payloads[i], key=str(i), schema=ORDER_SCHEMA)
        producer.flush(60)
        started = time.perf_counter()
        futures = [
            producer.send(topic, payloads[WARMUP + i], key=str(i), schema=ORDER_SCHEMA)
            for i in range(count)
        ]
        producer.flush(120)
        elapsed = time.perf_counter() - started
    failed = sum(1 for f in futures if f.exception(0) is not None)
    assert failed == 0, f"streamkit: {failed} failed"
    return elapsed


def produce_confluent_serializing(env: dict[str, str], topic: str, count: int) -> float:
    from confluent_kafka import SerializingProducer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import StringSerializer

    from streamkit.clientconfig import client_config
    from streamkit.schemas import load_schemas

    settings = _settings(env)
    schema = load_schemas(REPO / "schemas")[ORDER_SCHEMA]
    payloads = _payloads(count + WARMUP)
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1

    with SchemaRegistryClient(client_config(settings, "schema_registry")) as registry:
        producer = SerializingProducer(
            {
                **client_config(settings, "producer"),
                "key.serializer": StringSerializer(),
                "value.serializer": AvroSerializer(registry, schema.text),
            }
        )

        def send(payload: dict[str, Any], seq: int) -> None:
            record = {
                "id": str(uuid.uuid4()),
                "timestamp": int(time.time() * 1000),
                "type": "OrderPlaced",
                "payload": payload,
            }
            while True:
                try:
                    producer.produce(topic, key=str(seq), value=record, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)

        for i in range(WARMUP):
            send(payloads[i], i)
        producer.flush(60)
        delivered = 0
        started = time.perf_counter()
        for i in range(count):
            send(payloads[WARMUP + i], i)
        producer.flush(120)
        elapsed = time.perf_counter() - started
    assert delivered == count
    return elapsed


# --- consume contenders: (env, topic, count) -> seconds to decode+commit `count` ---


def consume_floor(env: dict[str, str], topic: str, count: int) -> float:
    import struct

    from confluent_kafka import Consumer
    from fastavro import schemaless_reader

    from streamkit.clientconfig import client_config
    from streamkit.registry import SchemaRegistry

    settings = _settings(env)
    consumer = Consumer(client_config(settings, "consumer"))
    consumer.subscribe([topic])
    writers: dict[int, Any] = {}
    seen = 0
    started = 0.0
    with SchemaRegistry(settings) as registry:
        deadline = time.monotonic() + 300
        while seen < count + WARMUP and time.monotonic() < deadline:
            messages = consumer.consume(500, 1.0)
            for message in messages:
                value = message.value()
                schema_id = struct.unpack(">I", value[1:5])[0]
                writer = writers.get(schema_id)
                if writer is None:
                    writer = writers[schema_id] = registry.schema_by_id(schema_id).parsed
                schemaless_reader(io.BytesIO(value[5:]), writer, None)
                seen += 1
                consumer.store_offsets(message=message)
                if seen == WARMUP:
                    started = time.perf_counter()
            if messages:
                consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - started
    consumer.close()
    assert seen >= count + WARMUP, f"floor consumed {seen}"
    return elapsed


def consume_streamkit(env: dict[str, str], topic: str, count: int) -> float:
    from streamkit.consumer import EventConsumer

    seen = 0
    started = 0.0

    def handle(_event: Any) -> None:
        nonlocal seen, started
        seen += 1
        if seen == WARMUP:
            started = time.perf_counter()

    with EventConsumer([topic], handle, settings=_settings(env)) as consumer:
        consumer.run(max_messages=count + WARMUP, idle_timeout_s=30, handle_signals=False)
    elapsed = time.perf_counter() - started
    assert seen >= count + WARMUP, f"streamkit consumed {seen}"
    return elapsed


PRODUCERS: dict[str, Callable[[dict[str, str], str, int], float]] = {
    "floor": produce_floor,
    "streamkit": produce_streamkit,
    "confluent-serializing": produce_confluent_serializing,
}
CONSUMERS: dict[str, Callable[[dict[str, str], str, int], float]] = {
    "floor": consume_floor,
    "streamkit": consume_streamkit,
}


def _child(name: str, kind: str, env: dict[str, str], topic: str, count: int, out: Any) -> None:
    table = PRODUCERS if kind == "produce" else CONSUMERS
    out.send(table[name](env, topic, count))
    out.close()


def _run(name: str, kind: str, env: dict[str, str], topic: str, count: int) -> float:
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_child, args=(name, kind, env, topic, count, send))
    process.start()
    send.close()
    elapsed = receive.recv() if receive.poll(600) else float("nan")
    process.join(60)
    if process.exitcode != 0:
        raise RuntimeError(f"{kind} {name} failed (exit {process.exitcode})")
    return float(elapsed)


def _cluster() -> tuple[dict[str, str], list[Any]]:
    bootstrap = os.environ.get("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS")
    registry = os.environ.get("STREAMKIT_SCHEMA_REGISTRY__URL")
    if bootstrap and registry:
        return {"bootstrap": bootstrap, "registry": registry}, []
    from streamkit.testing.containers import KafkaContainer, RegistryContainer

    kafka = KafkaContainer().start()
    registry_container = RegistryContainer().start()
    return (
        {"bootstrap": kafka.bootstrap_servers, "registry": registry_container.url},
        [kafka, registry_container],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn")
    env, containers = _cluster()
    results: dict[str, dict[str, dict[str, float]]] = {"produce": {}, "consume": {}}
    try:
        from streamkit.admin import StreamkitAdmin, TopicSpec

        admin = StreamkitAdmin(_settings(env))
        for kind, table in (("produce", PRODUCERS), ("consume", CONSUMERS)):
            best: dict[str, float] = {}
            for round_ in range(args.rounds):
                for name in table:
                    topic = f"bench-{kind}-{name}-{round_}-{uuid.uuid4().hex[:6]}"
                    admin.ensure_topics([TopicSpec(topic, partitions=3, replication_factor=1)])
                    if kind == "consume":  # same data for every consumer: written by the floor
                        _run("floor", "produce", env, topic, args.messages + WARMUP)
                    seconds = _run(name, kind, env, topic, args.messages)
                    rate = args.messages / seconds
                    best[name] = max(best.get(name, 0.0), rate)
                    print(
                        f"  {kind:8} {name:22} round {round_ + 1}: {rate:10.0f} msgs/s", flush=True
                    )
            floor = best["floor"]
            for name, rate in best.items():
                results[kind][name] = {"msgs_per_s": round(rate), "ratio": round(rate / floor, 3)}
    finally:
        for container in containers:
            container.stop()
    print(f"\n{'':9}{'contender':24}{'msgs/s':>10}{'x floor':>10}")
    for kind, table_results in results.items():
        for name, figures in table_results.items():
            print(f"{kind:9}{name:24}{figures['msgs_per_s']:>10}{figures['ratio']:>10.2f}")
    out = REPO / "bench" / "results" / "latest.json"
    out.write_text(json.dumps({**results, "messages": args.messages}, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
