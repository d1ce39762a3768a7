"""The Grafana dashboard and Prometheus config of deploy/ match what streamkit exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamkit.observability.metrics import StreamkitMetrics

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
