"""Model-first typed events for the tests: nested models, enums, decimals, timestamps,
dates, UUIDs, optional fields with defaults, lists and maps (shared by unit and
integration tests; ``streamkit schemas generate tests.typed_models`` writes their
schemas)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from dataclasses_avroschema.pydantic import AvroBaseModel
from pydantic import Field

__all__ = ["Address", "Invoice", "InvoiceLine", "InvoiceStatus", "invoice"]


class InvoiceStatus(enum.StrEnum):
    DRAFT = "DRAFT"
    SENT = "SENT"
    PAID = "PAID"


class Address(AvroBaseModel):
    street: str
    city: str
    country: str = "DE"


class InvoiceLine(AvroBaseModel):
    sku: str
    quantity: int
    unit_price: Decimal = Field(max_digits=10, decimal_places=2)


class Invoice(AvroBaseModel):
    """An invoice was issued."""

    invoice_id: uuid.UUID
    status: InvoiceStatus
    lines: list[InvoiceLine]
    total: Decimal = Field(max_digits=12, decimal_places=2)
    issued_at: datetime
    due: date
    billing_address: Address
    shipping_address: Address | None = None
    note: str | None = None
    channel: str = "web"
    labels: dict[str, str] = Field(default_factory=dict)

    class Meta:
        namespace = "tests.typed"
        topic = "invoices"


def invoice(seq: int, *, shipped: bool = True) -> Invoice:
    """A sample invoice; ``seq`` makes it unique."""
    lines = [
        InvoiceLine(sku=f"sku-{seq}-{n}", quantity=n + 1, unit_price=Decimal("19.99"))
        for n in range(3)
    ]
    return Invoice(
        invoice_id=uuid.uuid4(),
        status=InvoiceStatus.SENT,
        lines=lines,
        total=sum((line.unit_price * line.quantity for line in lines), Decimal("0.00")),
        issued_at=datetime(2026, 11, 30, 12, 0, seq % 60, 123000, tzinfo=UTC),
        due=date(2026, 12, 31),
        billing_address=Address(street="Hauptstr. 1", city="Berlin"),
        shipping_address=Address(street="Dock 7", city="Hamburg") if shipped else None,
        note=None if seq % 2 else f"note {seq}",
        labels={"seq": str(seq)},
    )
