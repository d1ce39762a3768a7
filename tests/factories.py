"""Sample payloads for the example schemas (shared by tests and benchmarks)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamkit.cli.examples import ORDER_SCHEMA, PAYMENT_SCHEMA, order_payload

__all__ = ["ORDER_SCHEMA", "PAYMENT_SCHEMA", "SAMPLES", "order", "payment"]


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
