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

# Every Avro logical type the CLI maps to JSON (tests only).
LOGICAL_SCHEMAS_DIR = Path(__file__).parent / "integration" / "schemas" / "logical"
INVOICE_SCHEMA = "streamkit.test.logical.InvoiceIssued"


def invoice(seq: int) -> dict[str, Any]:
    """An Invoice payload as the Python API takes it (Decimal, datetime, date, bytes)."""
    from datetime import UTC, date, datetime
    from decimal import Decimal

    return {
        "invoice_id": f"00000000-0000-4000-8000-{seq:012d}",
        "total": Decimal("41.99"),
        "tax_rate": Decimal("0.1900"),
        "discount": Decimal("-2.50") if seq % 2 else None,
        "issued_at": datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC),
        "paid_at": datetime(2026, 3, 2, 8, 0, 0, 123_456, tzinfo=UTC) if seq % 2 else None,
        "due_on": date(2026, 3, 31),
        "signature": bytes([0, 255, seq % 256]),
        "lines": [
            {"sku": "A-1", "amount": Decimal("20.00")},
            {"sku": "B-2", "amount": Decimal("21.99")},
        ],
    }
