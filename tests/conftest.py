"""Shared fixtures: every test starts with no STREAMKIT_* variables set."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _scrub_streamkit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMKIT_") and not name.startswith("STREAMKIT_TEST_"):
            monkeypatch.delenv(name)
