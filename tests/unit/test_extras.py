"""A missing extra fails with the ``pip install`` line that brings it."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from streamkit._extras import require
from streamkit.dedup.factory import open_store
from streamkit.errors import ConfigError, MissingExtraError, StreamkitError


def test_an_installed_module_is_returned() -> None:
    assert require("cli", "json").__name__ == "json"


@pytest.mark.parametrize(("extra", "module"), [("testing", "testcontainers"), ("redis", "redis")])
def test_a_missing_module_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, extra: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError) as caught:
        require(extra, module)
    assert caught.value.install == f"pip install 'streamkit[{extra}]'"
    assert caught.value.install in str(caught.value)
    assert isinstance(caught.value, ImportError | StreamkitError)
    assert caught.value.name == module


@pytest.mark.parametrize(
    ("url", "hidden", "extra", "module"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "redis", "redis"),
        ("postgresql://u:p@127.0.0.1:5432/db", "psycopg", "postgres", "psycopg"),
        ("postgresql://u:p@127.0.0.1:5432/db", "psycopg_pool", "postgres", "psycopg_pool"),
    ],
)
def test_a_dedup_store_without_its_extra_fails_like_every_other_missing_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, hidden: str, extra: str, module: str
) -> None:
    if hidden == "psycopg_pool":  # psycopg itself present, whether installed or not
        monkeypatch.setitem(sys.modules, "psycopg", types.ModuleType("psycopg"))
    monkeypatch.setitem(sys.modules, hidden, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError) as caught:
        open_store(url)
    error = caught.value
    # One kind of error for every missing extra, caught by what callers already catch.
    assert isinstance(error, ConfigError)
    assert isinstance(error, StreamkitError)
    assert isinstance(error, ImportError)
    assert (error.extra, error.name) == (extra, module)
    assert str(error) == (
        f"this needs the {module!r} package of the streamkit[{extra}] extra, which is not "
        f"installed (hint: pip install 'streamkit[{extra}]')"
    )
    assert error.env_vars == (f"streamkit[{extra}]",)


def test_the_command_without_the_cli_extra_prints_the_install_line() -> None:
    # A fresh interpreter, as the console script starts (typer may already be imported here).
    script = "import sys; sys.modules['typer'] = None; from streamkit.cli import main; main()"
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 2
    assert "pip install 'streamkit[cli]'" in ran.stderr
