from __future__ import annotations

import json

import pytest

pytest.importorskip("typer", reason="the CLI needs streamkit[cli]")

from typer.testing import CliRunner

from streamkit.cli.main import app

SECRET = "s3cr3t-Pa55word-xyz"
runner = CliRunner()


@pytest.fixture
def secured_env(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("STREAMKIT_SECURITY__SASL_MECHANISM", "PLAIN")
    env.setenv("STREAMKIT_SECURITY__SASL_USERNAME", "alice")
    env.setenv("STREAMKIT_SECURITY__SASL_PASSWORD", SECRET)
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO", f"reg:{SECRET}")
    env.setenv("STREAMKIT_PRODUCER__EXTRA", f'{{"sasl.password": "{SECRET}", "linger.ms": 9}}')
    return env


@pytest.mark.parametrize("args", [["config", "show"], ["config", "show", "--json"]])
def test_config_show_masks_secrets(secured_env: pytest.MonkeyPatch, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "alice" in result.output


def test_config_show_json_is_one_object(secured_env: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["config", "show", "--json"])
    shown = json.loads(result.output)
    assert shown["security"]["sasl_password"] == "**********"
    assert shown["producer"]["extra"] == {"sasl.password": "**********", "linger.ms": 9}
    assert shown["kafka"]["bootstrap_servers"] == "127.0.0.1:9092"


def test_config_show_fails_on_bad_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_SSL")
    env.setenv("STREAMKIT_SECURITY__SASL_PASSWORD", SECRET)
    env.setenv("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS", "")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "STREAMKIT_SECURITY__SASL_MECHANISM" in result.output
    assert "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS" in result.output
    assert SECRET not in result.output
