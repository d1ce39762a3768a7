"""What every contender shares: the cluster it talks to, the payloads, the wire format.

Each contender runs in its own process and gets an :class:`Env` (plain strings, so it
pickles), a fresh topic and a message count; it returns a :class:`Timing` of the
measured part only (warm-up excluded), having confirmed delivery of every record it
produced or decoded and committed every record it consumed.
"""

from __future__ import annotations

import io
import resource
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.factories import ORDER_SCHEMA, order

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
SCHEMA_NAME = ORDER_SCHEMA
EVENT_TYPE = "OrderPlaced"
SENT_HEADER = "bench-sent-ns"  # latency runs: when the producer handed the record over
WIRE_HEADER = struct.Struct(">bI")


@dataclass(frozen=True)
class Env:
    """Where the broker, registry and Redis listen (all on 127.0.0.1)."""

    bootstrap: str
    registry: str
    redis: str = ""


HANDLER_WAIT_S = 0.005  # the I/O-bound phase: every handler waits this long


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds (the whole process: librdkafka's threads too) for the
    measured ``count`` records, and the process's peak RSS; latency runs add samples in
    ms; consumers with a dedup store add the store's bytes per remembered id."""

    seconds: float
    count: int
    cpu_seconds: float = 0.0
    latencies_ms: tuple[float, ...] = ()
    peak_rss_bytes: int = 0
    bytes_per_id: float | None = None

    @property
    def peak_rss_mb(self) -> float:
        """:attr:`peak_rss_bytes` in MiB, one decimal."""
        return round(self.peak_rss_bytes / 2**20, 1)


def peak_rss_bytes() -> int:
    """The most resident memory this process has used so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Stopwatch:
    """Wall clock and process CPU time from :meth:`start` to :meth:`stop`."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, count: int) -> Timing:
        return Timing(
            time.perf_counter() - self.wall,
            count,
            time.process_time() - self.cpu,
            peak_rss_bytes=peak_rss_bytes(),
        )


def settings(env: Env, group: str | None = None) -> Any:
    """streamkit settings for ``env``: the one librdkafka configuration all contenders use."""
    from streamkit.settings import load_settings

    return load_settings(
        kafka={"bootstrap_servers": env.bootstrap},
        schema_registry={"url": env.registry},
        consumer={"group_id": group or f"bench-{uuid.uuid4().hex[:8]}"},
    )


def producer_config(env: Env) -> dict[str, Any]:
    """The librdkafka producer properties streamkit derives (idempotent, acks=all, linger)."""
    from streamkit.client.config import client_config

    return dict(client_config(settings(env), "producer"))


def consumer_config(env: Env, group: str) -> dict[str, Any]:
    """The librdkafka consumer properties streamkit derives (manual offset store, earliest)."""
    from streamkit.client.config import client_config

    return dict(client_config(settings(env, group), "consumer"))


def order_schema() -> Any:
    """The benchmark's value schema: the OrderPlaced envelope (~10 payload fields)."""
    from streamkit.serde.schemas import load_schemas

    return load_schemas(SCHEMAS)[SCHEMA_NAME]


def payloads(count: int) -> list[dict[str, Any]]:
    """``count`` distinct Order payloads, built before the clock starts."""
    return [order(i) for i in range(count)]


def envelope(payload: dict[str, Any]) -> dict[str, Any]:
    """The record a hand-written producer writes: what EventProducer builds per send."""
    return {
        "id": str(uuid.uuid4()),
        "timestamp": time.time_ns() // 1_000_000,
        "type": EVENT_TYPE,
        "payload": payload,
    }


def headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The headers every contender sends: streamkit's envelope headers (id, type, time),
    so that every contender puts the same bytes on the wire."""
    return [
        ("event-id", record["id"].encode()),
        ("event-type", record["type"].encode()),
        ("event-time", str(record["timestamp"]).encode()),
    ]


def register(env: Env, topic: str) -> tuple[int, Any]:
    """Register the order schema for ``topic``; return (schema id, fastavro parsed schema)."""
    from streamkit.serde.registry import SchemaRegistry
    from streamkit.serde.schemas import subject_name

    schema = order_schema()
    with SchemaRegistry(settings(env)) as registry:
        schema_id = registry.register(subject_name("topic", topic, schema.name), schema)
    return schema_id, schema.parsed


def avro_encoder(schema_id: int, parsed: Any) -> Callable[[dict[str, Any]], bytes]:
    """Hand-written Confluent wire-format encoder: frame + fastavro schemaless writer."""
    from fastavro import schemaless_writer

    prefix = WIRE_HEADER.pack(0, schema_id)

    def encode(record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(prefix)
        schemaless_writer(buffer, parsed, record)
        return buffer.getvalue()

    return encode


def avro_decoder(env: Env) -> Callable[[bytes], Any]:
    """Hand-written wire-format decoder: writer schema by id (fetched once), fastavro reader."""
    from fastavro import schemaless_reader

    from streamkit.serde.registry import SchemaRegistry

    registry = SchemaRegistry(settings(env))
    writers: dict[int, Any] = {}

    def decode(value: bytes) -> Any:
        schema_id = WIRE_HEADER.unpack_from(value)[1]
        writer = writers.get(schema_id)
        if writer is None:
            writer = writers[schema_id] = registry.schema_by_id(schema_id).parsed
        return schemaless_reader(io.BytesIO(value[WIRE_HEADER.size :]), writer, None)

    return decode


class Clock:
    """Starts when the warm-up is over and stops at the last measured record."""

    def __init__(self, warmup: int, count: int) -> None:
        self.warmup, self.count, self.seen = warmup, count, 0
        self._watch = Stopwatch()
        self._timing: Timing | None = None

    def tick(self) -> bool:
        """Count one record; True once warm-up and measured records are all in."""
        self.seen += 1
        if self.seen == self.warmup:
            self._watch.start()
        if self.seen >= self.warmup + self.count:
            if self._timing is None:
                self._timing = self._watch.stop(self.count)
            return True
        return False

    def timing(self, name: str, latencies_ms: list[float] | None = None) -> Timing:
        """The measured part; fails loudly if fewer records than promised came in."""
        if self._timing is None:
            raise RuntimeError(f"{name}: only {self.seen}/{self.warmup + self.count} records")
        return replace(self._timing, latencies_ms=tuple(latencies_ms or ()))


class Pacer:
    """Offers records at a fixed rate (latency runs): sleep until each one's slot."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.start = time.perf_counter()
        self.sent = 0

    def wait(self) -> None:
        """Block until the next record's slot."""
        due = self.start + self.sent * self.interval
        self.sent += 1
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def sent_header() -> tuple[str, bytes]:
    """The latency header: wall-clock ns when the record was handed to the client."""
    return (SENT_HEADER, str(time.time_ns()).encode())


def latency_ms(headers: Any) -> float:
    """Milliseconds since the record's :data:`SENT_HEADER` (same host, same clock)."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in items:
        if key == SENT_HEADER:
            return (time.time_ns() - int(value)) / 1e6
    raise RuntimeError(f"record without {SENT_HEADER} header")
