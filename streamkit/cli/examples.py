"""The demo's example schemas (package data under ``streamkit/cli/schemas``) and payloads."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["ORDER_SCHEMA", "PAYMENT_SCHEMA", "example_schemas_dir", "order_payload"]

ORDER_SCHEMA = "streamkit.examples.orders.OrderPlaced"
PAYMENT_SCHEMA = "streamkit.examples.orders.PaymentReceived"


def example_schemas_dir() -> Path:
    """The directory of the example ``.avsc`` files installed with streamkit."""
    # Wheels install into a directory, so the resource is a real path.
    return Path(str(files("streamkit.cli") / "schemas"))


def order_payload(seq: int, now_ms: int) -> dict[str, Any]:
    """An ``Order`` payload of the example schema; ``seq`` makes it unique."""
    quantity = 1 + seq % 3
    return {
        "order_id": f"order-{seq}",
        "customer_id": f"customer-{seq % 97}",
        "status": "PLACED",
        "items": [
            {"sku": f"sku-{seq % 13}", "quantity": quantity, "unit_price_cents": 1999},
            {"sku": "sku-gift-wrap", "quantity": 1, "unit_price_cents": 250},
        ],
        "total_cents": 1999 * quantity + 250,
        "currency": "EUR",
        "shipping_address": {
            "street": f"{seq % 200} Harbour Street",
            "city": "Hamburg",
            "postal_code": "20457",
            "country": "DE",
        },
        "channel": "web",
        "coupon": None if seq % 5 else "WELCOME10",
        "placed_at": now_ms,
    }
