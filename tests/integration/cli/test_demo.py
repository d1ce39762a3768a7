"""`streamkit demo` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamkit.testing.images import docker_client
from tests.integration.conftest import REPO

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
