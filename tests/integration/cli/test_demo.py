"""`streamkit demo` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from streamkit.testing.images import docker_client
from streamkit.testing.postgres import PostgresEndpoint
from tests.integration.conftest import REPO
from tests.integration.dedup.conftest import with_param

STREAMKIT = str(Path(sys.executable).parent / "streamkit")


def _run_demo(env: dict[str, str], *args: str, timeout: float = 240) -> dict[str, Any]:
    result = subprocess.run(
        [STREAMKIT, "demo", *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def _check(summary: dict[str, Any], events: int) -> None:
    assert summary["produced"] == events
    assert summary["lost"] == 0
    assert summary["duplicates_injected"] > 0
    assert summary["duplicates_skipped"] == summary["duplicates_injected"]
    assert summary["poison_injected"] > 0
    assert summary["dead_lettered"] == summary["poison_injected"]
    assert summary["consumed"] == (
        events + summary["duplicates_injected"] + summary["poison_injected"]
    )
    assert summary["msgs_per_s"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    # The default codec (zstd) shrinks the order events well below their raw size.
    assert summary["compression_type"] == "zstd"
    assert 0 < summary["compressed_bytes_per_event"] < summary["bytes_per_event"] / 2


def test_demo_against_the_session_cluster(child_env: dict[str, str]) -> None:
    summary = _run_demo(child_env, "--events", "2000")
    _check(summary, 2000)
    assert summary["cluster"] == "existing"


def test_demo_with_a_postgresql_dedup_store(
    child_env: dict[str, str], postgres_server: PostgresEndpoint
) -> None:
    table = f"demo_{uuid.uuid4().hex[:12]}"
    url = with_param(postgres_server.url, "table", table)
    summary = _run_demo({**child_env, "STREAMKIT_DEDUP__URL": url}, "--events", "2000")
    _check(summary, 2000)
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE owner IS NULL").fetchone()  # noqa: S608
    assert row is not None
    assert row[0] >= 2000  # every event's done mark (plus the poison events' ids)


@pytest.mark.timeout(400)
def test_demo_starts_and_removes_a_throwaway_cluster() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STREAMKIT_") or k.startswith("STREAMKIT_TEST_")
    }
    env["PYTHONPATH"] = str(REPO)
    client = docker_client()
    try:
        before = {container.id for container in client.containers.list(all=True)}
        summary = _run_demo(env, "--events", "2000", "--consumers", "2", timeout=360)
        after = {container.id for container in client.containers.list(all=True)}
    finally:
        client.close()
    _check(summary, 2000)
    assert summary["cluster"] == "throwaway"
    assert after <= before, "the demo left containers behind"
