"""The streamkit command against the real broker and registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import EVOLUTION_DIR

runner = CliRunner()


@pytest.fixture
def cli_env(streamkit_settings: StreamkitSettings) -> dict[str, str]:
    return {
        "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": streamkit_settings.kafka.bootstrap_servers,
        "STREAMKIT_SCHEMA_REGISTRY__URL": str(streamkit_settings.schema_registry.url),
        "STREAMKIT_CONSUMER__GROUP_ID": str(streamkit_settings.consumer.group_id),
    }


def _schema_dir(tmp_path: Path, version: int, topic: str) -> Path:
    definition = json.loads((EVOLUTION_DIR / f"v{version}.avsc").read_text())
    definition["streamkit.topic"] = topic
    folder = tmp_path / f"v{version}"
    folder.mkdir()
    (folder / "customer.avsc").write_text(json.dumps(definition))
    return folder


def test_schemas_register_check_and_refuse(tmp_path: Path, cli_env: dict[str, str]) -> None:
    topic = f"cli-{tmp_path.name[-8:]}".replace("_", "-")
    v1, v2, v3 = (_schema_dir(tmp_path, v, topic) for v in (1, 2, 3))

    first = runner.invoke(app, ["schemas", "check", str(v1)], env=cli_env)
    assert first.exit_code == 0, first.output
    assert "new subject" in first.output

    registered = runner.invoke(app, ["schemas", "register", str(v1)], env=cli_env)
    assert registered.exit_code == 0, registered.output
    expected = f"{topic}-value: streamkit.test.evolution.Customer registered with id"
    assert expected in registered.output

    compatible = runner.invoke(app, ["schemas", "check", str(v2)], env=cli_env)
    assert compatible.exit_code == 0, compatible.output
    assert "compatible (BACKWARD)" in compatible.output

    broken = runner.invoke(app, ["schemas", "check", str(v3)], env=cli_env)
    assert broken.exit_code == 1, broken.output
    assert "INCOMPATIBLE" in broken.output

    refused = runner.invoke(app, ["schemas", "register", str(v3)], env=cli_env)
    assert refused.exit_code == 1
    assert "refused" in refused.output
    assert "/fields/0/type" in refused.output


def test_topics_ensure_is_idempotent(tmp_path: Path, cli_env: dict[str, str]) -> None:
    topic = f"cli-topic-{tmp_path.name[-8:]}".replace("_", "-")
    args = ["topics", "ensure", topic, "--partitions", "2", "--config", "retention.ms=3600000"]
    created = runner.invoke(app, args, env=cli_env)
    assert created.exit_code == 0, created.output
    assert f"{topic}: created" in created.output
    assert f"{topic}.dlq: created" in created.output
    again = runner.invoke(app, args, env=cli_env)
    assert again.exit_code == 0, again.output
    assert f"{topic}: unchanged" in again.output
    grown = runner.invoke(app, [*args[:3], "--partitions", "4"], env=cli_env)
    assert f"{topic}: partitions increased (2 -> 4)" in grown.output


def test_produce_then_consume(cli_env: dict[str, str], topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=1)
    payload = {
        "payment_id": "p-1",
        "order_id": "o-1",
        "amount_cents": 100,
        "currency": "EUR",
        "method": "CARD",
    }
    produced = runner.invoke(
        app,
        [
            "produce",
            topic,
            json.dumps(payload),
            "--schema",
            "streamkit.examples.orders.PaymentReceived",
            "--key",
            "o-1",
        ],
        env=cli_env,
    )
    assert produced.exit_code == 0, produced.output
    assert produced.output.startswith(f"{topic}[0]@0 ")

    invalid = runner.invoke(
        app,
        [
            "produce",
            topic,
            json.dumps({**payload, "amount_cents": "lots"}),
            "--schema",
            "streamkit.examples.orders.PaymentReceived",
        ],
        env=cli_env,
    )
    assert invalid.exit_code == 1
    assert "payload.amount_cents" in invalid.output

    consumed = runner.invoke(app, ["consume", topic, "--max", "1"], env=cli_env)
    assert consumed.exit_code == 0, consumed.output
    record = json.loads(consumed.output.strip().splitlines()[-1])
    assert record["payload"] == payload
    assert record["type"] == "PaymentReceived"
