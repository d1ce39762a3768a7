"""Sample payloads for the example schemas in schemas/ (shared by tests and benchmarks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamkit.cli.demo import ORDER_SCHEMA, order_payload
from streamkit.serde.events import RawHeaders

__all__ = ["ORDER_SCHEMA", "PAYMENT_SCHEMA", "SAMPLES", "FakeMessage", "order", "payment"]

PAYMENT_SCHEMA = "streamkit.examples.orders.PaymentReceived"


def order(seq: int) -> dict[str, Any]:
    """An Order payload (the demo's); ``seq`` makes it unique."""
    return order_payload(seq, int(time.time() * 1000))


def payment(seq: int) -> dict[str, Any]:
    """A Payment payload."""
    return {
        "payment_id": f"payment-{seq}",
        "order_id": f"order-{seq}",
        "amount_cents": 4247,
        "currency": "EUR",
        "method": "CARD",
    }


SAMPLES = {ORDER_SCHEMA: order, PAYMENT_SCHEMA: payment}

# JSON Schema twin of the order envelope (tests only: schemas/ stays Avro, see the README).
JSON_SCHEMAS_DIR = Path(__file__).parent / "integration" / "schemas" / "json"
JSON_EVOLUTION_DIR = JSON_SCHEMAS_DIR.parent / "json-evolution"
JSON_ORDER_SCHEMA = "streamkit.examples.json.OrderPlaced"


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
