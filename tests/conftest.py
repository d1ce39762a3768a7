"""Shared fixtures: every test starts with no STREAMKIT_* variables set."""

from __future__ import annotations

import os

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
