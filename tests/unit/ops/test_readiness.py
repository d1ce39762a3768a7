"""Readiness report shape and the `streamkit check` exit code, with nothing listening."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("typer", reason="the CLI needs streamkit[cli]")

from typer.testing import CliRunner

from streamkit.cli.main import app
from streamkit.ops.readiness import check_connectivity
from streamkit.settings import load_settings


def test_unreachable_broker_fails_first_item_and_skips_the_rest() -> None:
    report = check_connectivity(load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"}))
    assert not report.ok
    broker, authenticated, topics, registry = report.items
    assert not broker.ok
    assert "127.0.0.1:1" in broker.detail
    assert authenticated.skipped
    assert topics.skipped
    assert registry.skipped
    assert report.as_dict()["ok"] is False


def test_check_command_exits_non_zero(env: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(
        app, ["check", "--json"], env={"STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["items"][0]["name"] == "broker reachable"
