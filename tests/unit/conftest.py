from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Set STREAMKIT_* variables with ``env.setenv``; runs in an empty directory (no .env)."""
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def pem_file(tmp_path: Path) -> Path:
    """A readable file standing in for a PEM path (settings only check readability)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path
