"""Sample payloads for the example schemas in schemas/ (shared by tests and benchmarks)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

ORDER_SCHEMA = "streamkit.examples.orders.OrderPlaced"
PAYMENT_SCHEMA = "streamkit.examples.orders.PaymentReceived"


def order(seq: int) -> dict[str, Any]:
    """An Order payload; ``seq`` makes it unique."""
    return {
        "order_id": f"order-{seq}",
        "customer_id": f"customer-{seq % 97}",
        "status": "PLACED",
        "items": [
            {"sku": f"sku-{seq % 13}", "quantity": 1 + seq % 3, "unit_price_cents": 1999},
            {"sku": "sku-gift-wrap", "quantity": 1, "unit_price_cents": 250},
        ],
        "total_cents": 1999 * (1 + seq % 3) + 250,
        "currency": "EUR",
        "shipping_address": {
            "street": f"{seq % 200} Harbour Street",
            "city": "Hamburg",
            "postal_code": "20457",
            "country": "DE",
        },
        "channel": "web",
        "coupon": None if seq % 5 else "WELCOME10",
        "placed_at": int(time.time() * 1000),
    }


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
