"""mypy (strict, the project's configuration) accepts typed handler code and catches
misuse of a typed payload."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="runs mypy (a dev tool)")

REPO = Path(__file__).resolve().parents[3]

GOOD = """
from collections.abc import Iterator
from decimal import Decimal

from streamkit import (
    AsyncEventConsumer,
    Event,
    EventConsumer,
    EventProducer,
    Output,
    TransactionalProcessor,
)
from tests.typed_models import Invoice, InvoiceStatus


def handle(event: Event[Invoice]) -> Decimal:
    invoice = event.payload
    if invoice.status is InvoiceStatus.PAID:
        return Decimal(0)
    city: str = invoice.billing_address.city
    assert city
    return invoice.total - sum(line.unit_price for line in invoice.lines)


def untyped(event: Event) -> object:  # a bare Event carries a dict
    return event.payload["total"]


def forward(producer: EventProducer, event: Event[Invoice]) -> str:
    return producer.send("invoices", event.payload, key=str(event.payload.invoice_id)).event_id


def record(event: Event[Invoice]) -> None:
    print(event.payload.total, event.payload.billing_address.city)


async def record_async(event: Event[Invoice]) -> None:
    print(event.payload.due.isoformat())


def to_addresses(event: Event[Invoice]) -> Iterator[Output]:
    yield Output("addresses", event.payload.billing_address, key=event.key)


def consumers() -> tuple[EventConsumer, AsyncEventConsumer, TransactionalProcessor]:
    return (
        EventConsumer(["invoices"], record, payload_type=Invoice, concurrency=8),
        AsyncEventConsumer(["invoices"], record_async, payload_type={"billing.Invoice": Invoice}),
        TransactionalProcessor(["invoices"], to_addresses, payload_type=Invoice),
    )
"""

BAD = """
from streamkit import Event
from tests.typed_models import Invoice


def handle(event: Event[Invoice]) -> int:
    return event.payload.totl
"""


def mypy(source: str, tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / f"{name}.py"
    module.write_text(textwrap.dedent(source))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(module),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_mypy_accepts_typed_handlers_and_catches_a_wrong_field(tmp_path: Path) -> None:
    good = mypy(GOOD, tmp_path, "typed_good")
    assert good.returncode == 0, good.stdout
    bad = mypy(BAD, tmp_path, "typed_bad")
    assert bad.returncode == 1, bad.stdout
    assert '"Invoice" has no attribute "totl"' in bad.stdout
