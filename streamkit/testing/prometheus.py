"""A real Prometheus server for tests, served to the plugin's ``prometheus_server`` fixture.

:class:`PrometheusServer` starts the ``prometheus`` binary (Debian package ``prometheus``)
on 127.0.0.1 with a free port, its TSDB in a temporary directory and a scrape interval
of one second. What it scrapes is given at run time with :meth:`PrometheusServer.scrape`,
which rewrites a file-based service discovery file that Prometheus watches, so one
server serves the whole session. :meth:`~PrometheusServer.query` and
:meth:`~PrometheusServer.wait_for` use the HTTP API (``/api/v1/query``).

A missing binary fails the test with the reason; it never skips.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamkit.testing.images import TestKitError
from streamkit.testing.process import ChildServer

__all__ = ["PrometheusServer", "serve_prometheus"]

_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {job}
    file_sd_configs:
      - files: [{targets}]
        refresh_interval: 1s
"""


class PrometheusServer(ChildServer):
    """A ``prometheus`` child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the server binary; found on ``PATH``.
        scrape_interval: how often targets are scraped (Prometheus duration).
        job: the ``job`` label of the scraped series.
    """

    package = "prometheus"

    def __init__(
        self, binary: str = "prometheus", *, scrape_interval: str = "1s", job: str = "streamkit"
    ) -> None:
        super().__init__(binary)
        self.scrape_interval = scrape_interval
        self.job = job

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        return f"http://127.0.0.1:{self._running_port()}"

    def _prepare(self, workdir: Path) -> None:
        targets = workdir / "targets.json"
        targets.write_text("[]\n")
        config = _CONFIG.format(
            interval=self.scrape_interval, job=self.job, targets=json.dumps(str(targets))
        )
        (workdir / "prometheus.yml").write_text(config)

    def _arguments(self, executable: str, port: int, workdir: Path, log: Path) -> list[str]:
        return [
            executable,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]

    def _ready(self, port: int) -> bool:
        return _http_ok(f"http://127.0.0.1:{port}/-/ready")

    def _hint(self) -> str:
        return f"run {self.binary} --config.file=... by hand to see why"

    def scrape(self, *targets: str, labels: dict[str, str] | None = None) -> None:
        """Scrape these ``host:port`` targets from now on (replacing earlier ones)."""
        entry = [{"targets": list(targets), "labels": labels or {}}]
        path = self.workdir / "targets.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(entry))
        partial.replace(path)  # atomic: Prometheus never reads half a file

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query; the ``result`` list of ``/api/v1/query``."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback URL)
            body = json.load(response)
        if body.get("status") != "success":
            raise TestKitError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one series (None when it yields none)."""
        result = self.query(promql)
        if not result:
            return None
        return float(result[0]["value"][1])

    def wait_for(
        self,
        promql: str,
        condition: Callable[[float | None], bool],
        *,
        timeout_s: float = 30.0,
    ) -> float | None:
        """Poll ``promql`` until ``condition(value)`` holds; TestKitError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        value = self.value(promql)
        while not condition(value):
            if time.monotonic() > deadline:
                raise TestKitError(
                    f"prometheus: {promql!r} was {value} after {timeout_s:.0f} s; "
                    f"targets: {self.targets()}"
                )
            time.sleep(0.25)
            value = self.value(promql)
        return value

    def targets(self) -> list[dict[str, Any]]:
        """The active targets with their health and last error (for diagnostics)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:  # noqa: S310
            body = json.load(response)
        return [
            {key: target.get(key) for key in ("scrapeUrl", "health", "lastError")}
            for target in body["data"]["activeTargets"]
        ]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def serve_prometheus() -> Iterator[PrometheusServer]:
    """Yield a running Prometheus on 127.0.0.1 scraping every second what tests name with
    ``prometheus_server.scrape("127.0.0.1:PORT")`` (the ``prometheus_server`` fixture)."""
    server = PrometheusServer()
    try:
        server.start()
    except TestKitError as exc:
        pytest.fail(f"streamkit test kit: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
