"""Test doubles shared by the unit tests, on confluent-kafka's own objects where they fit.

- :func:`message`: a real ``confluent_kafka.Message`` (constructible for tests).
- :func:`mock_registry`: streamkit's :class:`~streamkit.serde.registry.SchemaRegistry` on a
  fresh ``mock://`` scope (confluent's ``MockSchemaRegistryClient``).
- :class:`FakeKafkaProducer`: a librdkafka ``Producer`` that acknowledges every record at
  once, its delivery reports served by ``poll``/``flush`` as librdkafka serves them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from streamkit.serde.registry import SchemaRegistry
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["FakeKafkaProducer", "message", "mock_registry"]

Headers = list[tuple[str, bytes | None]]
Callback = Callable[[Any, Any], None]


def message(
    *,
    topic: str = "orders",
    partition: int = 2,
    offset: int = 41,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: Headers | None = None,
) -> Message:
    """A consumed record as librdkafka hands it over."""
    return Message(
        topic=topic, partition=partition, offset=offset, key=key, value=value, headers=headers
    )


def mock_registry(settings: StreamkitSettings | None = None) -> SchemaRegistry:
    """A registry face on a new, empty ``mock://`` scope (``settings`` give the rest)."""
    base = settings or load_settings()
    url = f"mock://unit-{uuid.uuid4().hex[:12]}"
    scoped = base.model_copy(
        update={"schema_registry": base.schema_registry.model_copy(update={"url": url})}
    )
    return SchemaRegistry(scoped)


class FakeKafkaProducer:
    """Acknowledges every record at once; reports wait until poll/flush serves them."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.queued: list[tuple[Callback, Message]] = []
        self.polls = 0
        self.produced = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, **options: Any) -> None:
        delivered = message(topic=topic, partition=0, offset=self.produced, key=key, value=value)
        self.queued.append((options["on_delivery"], delivered))
        self.produced += 1

    def poll(self, _timeout: float = 0) -> int:
        self.polls += 1
        served, self.queued = self.queued, []
        for callback, delivered in served:
            callback(None, delivered)
        return len(served)

    def flush(self, _timeout: float = -1) -> int:
        self.poll()
        return 0
