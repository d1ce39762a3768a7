"""The Grafana dashboard and Prometheus config of deploy/ match what streamkit exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamkit.consume.retry_topics import retry_topic_name
from streamkit.observability.metrics import StreamkitMetrics
from streamkit.settings import ConsumerSettings

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "streamkit.json"
# Words of PromQL that can stand where a metric name does, but are not one.
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from _panels(panel)  # rows may nest panels


def metric_names(expr: str) -> set[str]:
    """streamkit metric names a PromQL expression uses (label values removed first)."""
    return {
        word
        for word in _IDENTIFIER.findall(_STRINGS.sub('""', expr))
        if word.startswith("streamkit_")
    }


def test_metric_names_parser() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(streamkit_x_bucket{group=~"streamkit_no"}[1m]))) / streamkit_y_total'
    )
    assert metric_names(expr) == {"streamkit_x_bucket", "streamkit_y_total"}


def test_dashboard_queries_name_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = StreamkitMetrics().sample_names()
    panels = [panel for panel in _panels(dashboard) if panel.get("type") != "row"]
    assert len(panels) >= 8
    used: set[str] = set()
    for panel in panels:
        exprs = [target["expr"] for target in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"panel {panel['title']!r}: {expr!r} names no streamkit metric"
            unknown = names - exported
            assert not unknown, f"panel {panel['title']!r} uses unknown metrics {unknown}"
            used |= names
    for variable in dashboard["templating"]["list"]:
        assert metric_names(variable["definition"]) <= exported
    # Every metric family streamkit exports is on the dashboard somewhere.
    families = StreamkitMetrics().metric_names()
    shown = {name for name in families if any(u.startswith(name) for u in used)}
    assert shown == families


def test_retry_topics_variable_matches_the_default_retry_topic_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = (v for v in dashboard["templating"]["list"] if v["name"] == "retry_topics")
    # Prometheus anchors a label regex at both ends, as fullmatch does.
    pattern = re.compile(variable["query"])
    template = ConsumerSettings.model_fields["retry_topic_template"].default
    for delay in ("5s", "1m", "10m"):
        assert pattern.fullmatch(retry_topic_name(template, "orders", delay))
    assert not pattern.fullmatch("orders")
    assert not pattern.fullmatch("orders.dlq")


@pytest.mark.parametrize(
    "path",
    [
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/provisioning/dashboards/streamkit.yml",
        "deploy/prometheus/prometheus.yml",
    ],
)
def test_provisioning_files_exist(path: str) -> None:
    assert (REPO / path).read_text().strip()


FAKE_DOCKER = """#!/bin/sh
# docker image inspect NAME: present when NAME is in $FAKE_IMAGES; nothing can be pulled.
[ "$1 $2" = "image inspect" ] || exit 1
case " $FAKE_IMAGES " in *" $3 "*) exit 0 ;; esac
exit 1
"""


@pytest.mark.parametrize(
    ("images", "registry", "started", "left_out"),
    [
        (
            "streamkit/kafka:4.1.1 streamkit/apicurio-registry:3.3.3",
            "http://127.0.0.1:8081/apis/ccompat/v7",
            "(kafka schema-registry)",
            ["Prometheus", "Grafana", "PostgreSQL", "Jaeger", "OTEL_", "--metrics-port"],
        ),
        (
            "apache/kafka:4.1.1 confluentinc/cp-schema-registry:8.0.0 prom/prometheus:v3.5.0",
            "http://127.0.0.1:8081\n",
            "(kafka schema-registry prometheus)",
            ["Grafana", "PostgreSQL", "Jaeger"],
        ),
    ],
)
def test_make_up_banner_lists_what_started_and_the_registry_url_to_use(
    tmp_path: Path, images: str, registry: str, started: str, left_out: list[str]
) -> None:
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_IMAGE")},
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "FAKE_IMAGES": images,
        "COMPOSE": "true",  # compose itself is not run
        "REGISTRY_WAIT_S": "0",
    }
    done = subprocess.run(
        [str(REPO / "scripts" / "compose-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"streamkit stack is up {started}:" in done.stdout
    assert f"STREAMKIT_SCHEMA_REGISTRY__URL={registry}" in done.stdout + "\n"
    for name in left_out:
        assert name not in done.stdout
