"""Fixtures for integration tests: the example schemas, a registry face, producers."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, DeserializingConsumer, Message, Producer, TopicPartition
from confluent_kafka.serialization import Deserializer, StringDeserializer

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.dead_letter import dead_letter
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Headers
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet, load_schemas
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from streamkit.testing.security import SecureKafka

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from streamkit.testing.oauth import OAuthKafka

REPO = Path(__file__).resolve().parents[2]
EVOLUTION_DIR = Path(__file__).parent / "schemas" / "evolution"


def deserialized_values(
    settings: StreamkitSettings,
    topic: str,
    value_deserializer: Deserializer,
    count: int,
    *,
    polls: int,
) -> list[Any]:
    """Up to ``count`` values of ``topic`` as Confluent's ``DeserializingConsumer`` reads
    them (string keys), polling at most ``polls`` times for half a second."""
    consumer = DeserializingConsumer(
        {
            **client_config(settings, "consumer"),
            "key.deserializer": StringDeserializer(),
            "value.deserializer": value_deserializer,
        }
    )
    consumer.subscribe([topic])
    values: list[Any] = []
    try:
        for _ in range(polls):
            message = consumer.poll(0.5)
            if message is not None:
                values.append(message.value())
            if len(values) == count:
                break
    finally:
        consumer.close()
    return values


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> StreamkitSettings:
    """Settings read from the environment only, after replacing every
    ``STREAMKIT_SECURITY__*`` variable and setting ``env``."""
    import os

    from streamkit.settings import load_settings

    for name in [n for n in os.environ if n.startswith("STREAMKIT_SECURITY__")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def committed_offsets(
    settings: StreamkitSettings, group: str, topic: str, partitions: int = 1
) -> dict[int, int]:
    """The offsets ``group`` committed on each partition of ``topic`` (-1001: none)."""
    probe = Consumer({**client_config(settings, "consumer"), "group.id": group})
    try:
        found = probe.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        probe.close()
    return {tp.partition: tp.offset for tp in found}


def raw_messages(
    settings: StreamkitSettings, topic: str, count: int, *, polls: int = 120
) -> list[Message]:
    """Up to ``count`` records of ``topic`` as a plain confluent-kafka consumer reads them
    (bytes and headers untouched), polling at most ``polls`` times for half a second."""
    consumer = Consumer(client_config(settings, "consumer"))
    consumer.subscribe([topic])
    messages: list[Message] = []
    try:
        for _ in range(polls):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
            if len(messages) == count:
                break
    finally:
        consumer.close()
    return messages


def consumer_settings(base: StreamkitSettings, **consumer: Any) -> StreamkitSettings:
    """``base`` with some ``consumer`` settings replaced."""
    return base.model_copy(update={"consumer": base.consumer.model_copy(update=consumer)})


def read_raw(
    settings: StreamkitSettings, topic: str, count: int, *, timeout_s: float = 60.0
) -> list[Any]:
    """Up to ``count`` raw messages of ``topic`` from its start (a throwaway group), waiting
    at most ``timeout_s``; then whatever else arrives within half a second."""
    reader = Consumer(
        {**client_config(settings, "consumer"), "group.id": f"reader-{time.monotonic_ns()}"}
    )
    reader.subscribe([topic])
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            found.extend(m for m in reader.consume(500, 0.5) if m.error() is None)
        found.extend(m for m in reader.consume(500, 0.5) if m.error() is None)
    finally:
        reader.close()
    return found


@dataclass(frozen=True)
class FailedMessage:
    """A message of ``topic`` that a consumer gave up on (for :func:`write_dead_letters`)."""

    source: str
    seq: int
    partitions: int
    body: bytes

    def topic(self) -> str:
        return self.source

    def partition(self) -> int:
        return self.seq % self.partitions

    def offset(self) -> int:
        return self.seq // self.partitions

    def key(self) -> bytes:
        return f"k{self.seq}".encode()

    def value(self) -> bytes:
        return self.body

    def headers(self) -> Headers:
        return [("event-id", f"id-{self.seq}".encode())]


def write_dead_letters(
    settings: StreamkitSettings,
    topic: str,
    failures: Sequence[BaseException],
    *,
    partitions: int = 3,
    body: bytes = b"\x00\x7f\xff\xff\xff" + bytes(200),  # a schema id no registry has
) -> str:
    """Write one dead letter per failure to ``<topic>.dlq`` as a consumer builds them
    (:func:`~streamkit.consume.processing.dead_letter`); return the dead-letter topic."""
    dlq = f"{topic}{settings.consumer.dead_letter_suffix}"
    StreamkitAdmin(settings).ensure_topics([TopicSpec(dlq, partitions=partitions)])
    raw = Producer(client_config(settings, "producer"))
    for seq, error in enumerate(failures):
        source = FailedMessage(topic, seq, partitions, body)
        letter = dead_letter(source, error, attempts=3, group="g", suffix=".dlq")
        while True:
            try:
                raw.produce(letter.topic, letter.value, letter.key, headers=letter.headers)
                break
            except BufferError:
                raw.poll(0.05)
    assert raw.flush(60) == 0
    return dlq


@pytest.fixture(scope="session")
def schemas() -> SchemaSet:
    """The example schemas of schemas/."""
    return load_schemas(REPO / "schemas")


@pytest.fixture
def registry(streamkit_settings: StreamkitSettings) -> Iterator[SchemaRegistry]:
    """A schema registry face for the test registry."""
    with SchemaRegistry(streamkit_settings) as face:
        yield face


@pytest.fixture
def producer(
    streamkit_settings: StreamkitSettings, schemas: SchemaSet, registry: SchemaRegistry
) -> Iterator[EventProducer]:
    """An EventProducer for the test broker; closed (flushed) after the test."""
    with EventProducer(streamkit_settings, schemas=schemas, registry=registry) as event_producer:
        yield event_producer


@pytest.fixture
def child_env(streamkit_settings: StreamkitSettings) -> dict[str, str]:
    """Environment for a streamkit subprocess pointed at the test broker and registry."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMKIT_")}
    env.update(
        {
            "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": streamkit_settings.kafka.bootstrap_servers,
            "STREAMKIT_SCHEMA_REGISTRY__URL": str(streamkit_settings.schema_registry.url),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocesses."""
    return sys.executable


class ConsumerRunner:
    """Runs EventConsumers in threads until a condition holds (bounded in time)."""

    def __init__(self) -> None:
        self._running: list[tuple[EventConsumer, threading.Thread]] = []

    def start(self, consumer: EventConsumer) -> EventConsumer:
        """Run ``consumer`` in a background thread."""
        thread = threading.Thread(
            target=consumer.run, kwargs={"handle_signals": False}, daemon=True
        )
        thread.start()
        self._running.append((consumer, thread))
        return consumer

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Block until ``condition()`` holds; fail the test after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not reached within {timeout_s} s")
            time.sleep(0.05)

    def stop(self, consumer: EventConsumer) -> None:
        """Stop one consumer, wait for its thread, close it."""
        for running, thread in list(self._running):
            if running is consumer:
                consumer.stop()
                thread.join(60)
                assert not thread.is_alive(), "consumer did not stop"
                consumer.close()
                self._running.remove((running, thread))

    def stop_all(self) -> None:
        """Stop every consumer still running."""
        for consumer, _ in list(self._running):
            self.stop(consumer)


@pytest.fixture
def consumers() -> Iterator[ConsumerRunner]:
    """Start EventConsumers in threads; all are stopped and closed after the test."""
    runner = ConsumerRunner()
    yield runner
    runner.stop_all()


@pytest.fixture
def secure_topic(secure_kafka: SecureKafka) -> str:
    """A fresh one-partition topic on the secured broker (created as its super user)."""
    from confluent_kafka.admin import AdminClient

    return TopicFactory(AdminClient({"bootstrap.servers": secure_kafka.bootstrap_servers}))(
        1, prefix="secure"
    )


@pytest.fixture
def oauth_topic(oauth_kafka: OAuthKafka) -> str:
    """A fresh three-partition topic on the OAuth broker (created as its super user)."""
    from confluent_kafka.admin import AdminClient

    return TopicFactory(AdminClient({"bootstrap.servers": oauth_kafka.bootstrap_servers}))(
        3, prefix="oauth"
    )


@pytest.fixture
def oauth_admin(oauth_kafka: OAuthKafka) -> StreamkitAdmin:
    """An admin authenticated by OAuth as the broker's super user ``admin-service``."""
    from streamkit.testing.oauth import SUPER_CLIENT

    return StreamkitAdmin(oauth_kafka.endpoint("sasl_ssl", client=SUPER_CLIENT).settings())


def span_chain(spans: list[ReadableSpan], *names: str) -> list[ReadableSpan]:
    """The spans named ``names``, in that order (each must be there)."""
    by_name = {span.name: span for span in spans}
    assert set(names) <= set(by_name), sorted(by_name)
    return [by_name[name] for name in names]
