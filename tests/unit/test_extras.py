"""A missing extra fails with the ``pip install`` line that brings it."""

from __future__ import annotations

import importlib
import sys

import pytest

import streamkit.cli
from streamkit._extras import require
from streamkit.errors import MissingExtraError, StreamkitError


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


def test_the_command_without_the_cli_extra_prints_the_install_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Importing the submodule streamkit.cli.main (other tests do) rebinds the package's
    # name ``main`` to it; reloading the package brings back the console-script function.
    entry = importlib.reload(streamkit.cli).main
    monkeypatch.setitem(sys.modules, "typer", None)
    with pytest.raises(SystemExit) as exited:
        entry()
    assert exited.value.code == 2
    assert "pip install 'streamkit[cli]'" in capsys.readouterr().err
