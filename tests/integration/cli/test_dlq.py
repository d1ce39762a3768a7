"""``streamkit dlq inspect`` and ``streamkit dlq replay`` against the real broker."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.errors import DeserializationError
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import write_dead_letters

runner = CliRunner()


@pytest.fixture
def dlq(streamkit_settings: StreamkitSettings, topic_factory: TopicFactory) -> str:
    """A dead-letter topic of 6 handler failures (4 + 2 types) and 3 undecodable messages."""
    failures: list[BaseException] = [
        *[TimeoutError("db")] * 4,
        *[KeyError("sku")] * 2,
        *[DeserializationError("not wire format")] * 3,
    ]
    return write_dead_letters(streamkit_settings, topic_factory(partitions=3), failures)


def _json(arguments: list[str], env: dict[str, str]) -> dict[str, object]:
    result = runner.invoke(app, arguments, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_inspect_json_shape(dlq: str, child_env: dict[str, str]) -> None:
    report = _json(["dlq", "inspect", dlq, "--json", "--samples", "2"], child_env)
    assert report["topic"] == dlq
    assert report["count"] == 9
    assert report["by_reason"] == {"handler_failed": 6, "undecodable": 3}
    assert report["by_error_type"] == {
        "builtins.TimeoutError": 4,
        "streamkit.errors.DeserializationError": 3,
        "builtins.KeyError": 2,
    }
    assert sum(report["by_source_partition"].values()) == 9  # type: ignore[attr-defined]
    samples = report["samples"]
    assert isinstance(samples, list)
    assert len(samples) == 2
    assert set(samples[0]) == {
        "partition",
        "offset",
        "key",
        "failed_at",
        "reason",
        "error_type",
        "error",
        "source",
        "source_offset",
        "attempts",
        "headers",
        "history",
        "payload",
        "decode_error",
    }
    assert samples[0]["decode_error"]  # the bodies name an unknown schema id


def test_inspect_text_and_missing_topic(dlq: str, child_env: dict[str, str]) -> None:
    shown = runner.invoke(app, ["dlq", "inspect", dlq], env=child_env)
    assert shown.exit_code == 0, shown.output
    assert f"{dlq}: 9 dead letters" in shown.stdout
    assert "builtins.TimeoutError" in shown.stdout
    missing = runner.invoke(app, ["dlq", "inspect", f"{dlq}-nowhere"], env=child_env)
    assert missing.exit_code == 1
    assert f"{dlq}-nowhere" in missing.stderr
    assert "does not exist" in missing.stderr


def test_replay_dry_run_filters_then_continues(dlq: str, child_env: dict[str, str]) -> None:
    failed = ["--reason", "handler_failed"]
    dry = _json(["dlq", "replay", dlq, *failed, "--dry-run", "--json"], child_env)
    assert (dry["selected"], dry["sent"], dry["dry_run"]) == (6, 0, True)
    typed = _json(["dlq", "replay", dlq, "--error-type", "KeyError", "--json"], child_env)
    assert (typed["selected"], typed["sent"]) == (2, 2)
    first = _json(["dlq", "replay", dlq, "--reason", "handler_failed", "--json"], child_env)
    assert (first["sent"], first["passed_over"]) == (6, 3)
    second = runner.invoke(app, ["dlq", "replay", dlq, "--reason", "handler_failed"], env=child_env)
    assert second.exit_code == 0, second.output
    assert "sent 0 of 0 read" in second.stdout


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--since", "yesterday", "not a time"), ("--reason", "bored", "not one of")],
)
def test_replay_bad_parameters_exit_2(
    dlq: str, child_env: dict[str, str], option: str, value: str, message: str
) -> None:
    result = runner.invoke(app, ["dlq", "replay", dlq, option, value], env=child_env)
    assert result.exit_code == 2
    assert message in result.stderr
