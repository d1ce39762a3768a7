"""Shared fixtures: every test starts with no STREAMKIT_* variables set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _scrub_streamkit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMKIT_") and not name.startswith("STREAMKIT_TEST_"):
            monkeypatch.delenv(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to real services."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def span_exporter() -> Any:
    """The real OpenTelemetry SDK's in-memory exporter (``get_finished_spans()``)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: Any) -> Iterator[Any]:
    """An SDK tracer provider (not the global one) exporting to ``span_exporter`` at once.

    OpenTelemetry is imported here, not at the top: the suite also runs without it.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()
