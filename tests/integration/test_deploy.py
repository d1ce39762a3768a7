"""docker-compose.yml and the Prometheus config validate with the real tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def test_docker_compose_file_validates() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_IMAGE")}
    result = subprocess.run(
        [*_compose(), "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_bind_loopback_only() -> None:
    result = subprocess.run(
        [*_compose(), "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config = result.stdout
    assert "0.0.0.0" not in config  # noqa: S104 (asserting it is absent)
    assert config.count("network_mode: host") == 6
    assert "apache/kafka:4.1.1" in config


def test_jaeger_listens_on_loopback_only() -> None:
    text = (REPO / "deploy" / "jaeger" / "config.yaml").read_text()
    endpoints = [
        line.split("endpoint:", 1)[1].strip().strip('"')
        for line in text.splitlines()
        if line.strip().startswith("endpoint:")
    ]
    assert len(endpoints) == 4  # UI, query gRPC, OTLP gRPC, OTLP HTTP
    assert all(endpoint.startswith("127.0.0.1:") for endpoint in endpoints), endpoints
    assert "level: none" in text  # no listener for Jaeger's own metrics


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "check", "config", "deploy/prometheus/prometheus.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
