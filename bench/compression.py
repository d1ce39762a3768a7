"""Compression codecs side by side: bytes on the wire per event and throughput.

    python bench/compression.py [--messages N] [--rounds R] [--codecs zstd,lz4,...]

Produces the example order events (Avro, the ``OrderPlaced`` envelope) with
streamkit's EventProducer once per codec, the codecs alternating over rounds, on the
real broker (the test kit starts a throwaway one unless STREAMKIT_KAFKA__BOOTSTRAP_SERVERS
and STREAMKIT_SCHEMA_REGISTRY__URL are set). Everything but the codec stays at the
settings' defaults (``linger.ms``, ``batch.size``, acks=all, idempotence).

Per codec: bytes per event before compression (key + value) and after (the record
batches as sent, which is what the broker stores: librdkafka's topic ``batchsize``,
read through streamkit's ``streamkit_produced_bytes_per_event`` metric), the produce
rate (acknowledged sends), the rate of a plain librdkafka producer sending the same
events pre-encoded (where the codec's own CPU cost shows) and the consume rate of a plain
consumer reading the topic back (decompression included). Sizes are the mean over
rounds, rates the best round. Writes bench/results/compression.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.throughput import _cluster  # noqa: E402
from tests.factories import ORDER_SCHEMA, order  # noqa: E402

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
WARMUP = 1000
STATS_INTERVAL_MS = 250
PARTITIONS = 3


def _settings(env: dict[str, str], codec: str) -> Any:
    from streamkit.settings import load_settings

    return load_settings(
        kafka={"bootstrap_servers": env["bootstrap"]},
        schema_registry={"url": env["registry"]},
        producer={"compression_type": codec},
        consumer={"group_id": f"bench-{uuid.uuid4().hex[:8]}"},
        metrics={"statistics_interval_ms": STATS_INTERVAL_MS},
    )


def _produce(settings: Any, topic: str, count: int) -> tuple[float, dict[str, float]]:
    """Seconds for ``count`` acknowledged sends, and bytes per event by stage."""
    from streamkit.observability.metrics import BYTE_STAGES, StreamkitMetrics
    from streamkit.produce.producer import EventProducer

    payloads = [order(seq) for seq in range(count + WARMUP)]
    metrics = StreamkitMetrics()
    with EventProducer(settings, schemas=REPO / "schemas", metrics=metrics) as producer:

        def send(seq: int) -> Any:
            key = f"customer-{seq % 97}"
            return producer.send(topic, payloads[seq], key=key, schema=ORDER_SCHEMA)

        for seq in range(WARMUP):
            send(seq)
        producer.flush(60)
        started = time.perf_counter()
        futures = [send(WARMUP + seq) for seq in range(count)]
        producer.flush(120)
        elapsed = time.perf_counter() - started
        failed = sum(1 for future in futures if future.exception(0) is not None)
        assert failed == 0, f"{failed} sends failed"
        # The figures of the last statistics window arrive one interval after the flush.
        time.sleep(2 * STATS_INTERVAL_MS / 1000)
        per_event = {
            stage: metrics.registry.get_sample_value(
                "streamkit_produced_bytes_per_event", {"topic": topic, "stage": stage}
            )
            or 0.0
            for stage in BYTE_STAGES
        }
    return elapsed, per_event


def _produce_raw(settings: Any, topic: str, count: int) -> float:
    """Seconds for a plain librdkafka producer to get ``count`` pre-encoded events acknowledged.

    Same client configuration, no Python encoding per record: the codec's own cost shows.
    """
    from confluent_kafka import Producer

    from streamkit.client.config import client_config
    from streamkit.produce.producer import EventProducer
    from streamkit.serde.events import Event

    with EventProducer(settings, schemas=REPO / "schemas") as producer:
        encoder = producer.encoder(topic, ORDER_SCHEMA)
        values = [encoder.encode(Event(order(seq), "OrderPlaced")) for seq in range(count)]
    raw = Producer(client_config(settings, "producer"))
    raw.produce(topic, values[0])  # connect and get the idempotent producer id first
    assert raw.flush(60) == 0
    started = time.perf_counter()
    for seq, value in enumerate(values):
        while True:
            try:
                raw.produce(topic, value, f"customer-{seq % 97}".encode())
                break
            except BufferError:
                raw.poll(0.01)
    assert raw.flush(120) == 0
    return time.perf_counter() - started


def _consume(settings: Any, topic: str, count: int) -> float:
    """Seconds for a plain consumer to read ``count`` messages (fetch + decompress)."""
    from confluent_kafka import Consumer

    from streamkit.client.config import client_config

    consumer = Consumer(client_config(settings, "consumer"))
    consumer.subscribe([topic])
    seen, started = 0, 0.0
    deadline = time.monotonic() + 120
    try:
        while seen < count and time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            if batch and not started:
                started = time.perf_counter()
            seen += sum(1 for message in batch if message.error() is None)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    assert seen >= count, f"read {seen} of {count}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    codecs = args.codecs.split(",")
    env, containers = _cluster()
    best: dict[str, dict[str, float]] = {}
    try:
        from streamkit.ops.admin import StreamkitAdmin, TopicSpec

        admin = StreamkitAdmin(_settings(env, "none"))
        for round_ in range(args.rounds):
            order_ = codecs if round_ % 2 == 0 else codecs[::-1]
            for codec in order_:
                settings = _settings(env, codec)
                topic = f"bench-compression-{codec}-{round_}-{uuid.uuid4().hex[:6]}"
                admin.ensure_topics([TopicSpec(topic, PARTITIONS, replication_factor=1)])
                produce_s, per_event = _produce(settings, topic, args.messages)
                consume_s = _consume(settings, topic, args.messages + WARMUP)
                raw_s = _produce_raw(settings, topic, args.messages)
                figures = {
                    "bytes_per_event": round(per_event["uncompressed"], 1),
                    "compressed_bytes_per_event": round(per_event["compressed"], 1),
                    "produce_msgs_per_s": round(args.messages / produce_s),
                    "raw_produce_msgs_per_s": round(args.messages / raw_s),
                    "consume_msgs_per_s": round((args.messages + WARMUP) / consume_s),
                }
                print(f"  round {round_ + 1} {codec:7} {figures}", flush=True)
                kept = best.setdefault(codec, dict(figures))
                for name in ("produce_msgs_per_s", "raw_produce_msgs_per_s", "consume_msgs_per_s"):
                    kept[name] = max(kept[name], figures[name])
                for name in ("bytes_per_event", "compressed_bytes_per_event"):
                    # Sizes vary a little with how records fall into batches: the mean.
                    kept[name] = round((kept[name] * round_ + figures[name]) / (round_ + 1), 1)
    finally:
        for container in containers:
            container.stop()
    # "none" still frames records and carries the event headers: the honest saving of a
    # codec is against the uncompressed batches, not against key + value alone.
    baseline = best.get("none", {}).get("compressed_bytes_per_event")
    for figures in best.values():
        wire = figures["compressed_bytes_per_event"]
        figures["saving_vs_none"] = round(1 - wire / baseline, 3) if baseline else 0.0
    print(
        f"\n{'codec':8}{'B/event raw':>12}{'B/event wire':>13}{'vs none':>9}"
        f"{'produce msg/s':>15}{'raw produce':>13}{'consume msg/s':>15}"
    )
    for codec, f in best.items():
        print(
            f"{codec:8}{f['bytes_per_event']:>12.1f}{f['compressed_bytes_per_event']:>13.1f}"
            f"{-f['saving_vs_none']:>9.0%}{f['produce_msgs_per_s']:>15,}"
            f"{f['raw_produce_msgs_per_s']:>13,}{f['consume_msgs_per_s']:>15,}"
        )
    out = REPO / "bench" / "results" / "compression.json"
    result = {
        "messages": args.messages,
        "rounds": args.rounds,
        "partitions": PARTITIONS,
        "event": ORDER_SCHEMA,
        "codecs": best,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
