from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("typer", reason="the CLI needs streamkit[cli]")

from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.dedup import SqliteDedupStore

runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    with SqliteDedupStore(tmp_path / "dedup.db", ttl_s=3600) as store:
        store.complete([f"order-{i}" for i in range(1200)])
    return f"sqlite:///{tmp_path}/dedup.db"


def test_stats_json_reports_ids_and_bytes(env: pytest.MonkeyPatch, store_url: str) -> None:
    env.setenv("STREAMKIT_DEDUP__TTL_S", "3600")
    result = runner.invoke(app, ["dedup", "stats", store_url, "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["url"] == store_url
    assert (stats["backend"], stats["remembered_ids"], stats["buckets"]) == ("sqlite", 1200, 1)
    assert (stats["ttl_s"], stats["bucket_s"]) == (3600, 450)
    assert stats["bytes_used"] > 0
    assert stats["bytes_per_id"] == round(stats["bytes_used"] / 1200, 1)


def test_stats_table_uses_the_settings_url(env: pytest.MonkeyPatch, store_url: str) -> None:
    env.setenv("STREAMKIT_DEDUP__URL", store_url)
    result = runner.invoke(app, ["dedup", "stats"])
    assert result.exit_code == 0, result.output
    assert "remembered ids" in result.output
    assert "1,200" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no dedup store: pass its URL or set STREAMKIT_DEDUP__URL"),
        (["kafka://x"], "unknown scheme 'kafka'"),
        (["redis://:hunter2@127.0.0.1:1/0?socket_connect_timeout=1"], "connect (PING) failed"),
    ],
)
def test_stats_errors_name_the_cause_and_hide_passwords(
    env: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["dedup", "stats", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "hunter2" not in result.output
