"""Fakes for the consume unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamkit.serde.events import RawHeaders


@dataclass
class FakeMessage:
    """Stands in for confluent_kafka.Message."""

    _headers: RawHeaders = field(default_factory=list)
    _topic: str = "orders"
    _partition: int = 2
    _offset: int = 41
    _key: bytes | None = b"k"
    _value: bytes | None = b"v"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> RawHeaders:
        return self._headers

    def error(self) -> None:
        return None
