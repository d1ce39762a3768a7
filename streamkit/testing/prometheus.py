"""A real Prometheus server for tests, and the session-scoped ``prometheus_server`` fixture.

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
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from streamkit.testing.containers import free_port
from streamkit.testing.images import TestKitError

__all__ = ["PrometheusServer", "prometheus_server"]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3
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


class PrometheusServer:
    """A ``prometheus`` child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the server binary; found on ``PATH`` (or /usr/bin).
        scrape_interval: how often targets are scraped (Prometheus duration).
        job: the ``job`` label of the scraped series.
    """

    def __init__(
        self, binary: str = "prometheus", *, scrape_interval: str = "1s", job: str = "streamkit"
    ) -> None:
        self.binary = binary
        self.scrape_interval = scrape_interval
        self.job = job
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self.port is None:
            raise TestKitError("prometheus is not running (hint: call start() first)")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id of the server this object started, if running."""
        return None if self._process is None else self._process.pid

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None and os.access(f"/usr/bin/{self.binary}", os.X_OK):
            found = f"/usr/bin/{self.binary}"
        if found is None:
            raise TestKitError(
                f"{self.binary!r} not found (hint: apt-get install prometheus, "
                "or run scripts/ensure-packages.sh)"
            )
        return found

    def start(self) -> Self:
        """Start the server and wait until ``/-/ready`` answers.

        Raises:
            TestKitError: the binary is missing or the server did not come up; the
                message carries its last log lines.
        """
        executable = self._executable()
        self._workdir = Path(tempfile.mkdtemp(prefix="streamkit-prometheus-"))
        targets = self._workdir / "targets.json"
        targets.write_text("[]\n")
        config = self._workdir / "prometheus.yml"
        config.write_text(
            _CONFIG.format(
                interval=self.scrape_interval, job=self.job, targets=json.dumps(str(targets))
            )
        )
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            last_error = self._try_start(executable, config, free_port())
            if not last_error:
                return self
            if "address already in use" not in last_error:
                break  # only a lost port race is worth another attempt
        self.stop()
        raise TestKitError(last_error)

    def _try_start(self, executable: str, config: Path, port: int) -> str:
        assert self._workdir is not None
        log = self._workdir / "prometheus.log"
        args = [
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={self._workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return self._failure(f"exited with code {process.returncode}", log)
            if _http_ok(f"http://127.0.0.1:{port}/-/ready"):
                self._process, self.port = process, port
                return ""
            time.sleep(0.1)
        _terminate(process)
        return self._failure(f"was not ready within {_START_TIMEOUT_S:.0f} s", log)

    def _failure(self, what: str, log: Path) -> str:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        lines = "\n".join("  " + line for line in tail)
        return (
            f"prometheus {what}. Last log lines:\n{lines or '  (none)'}\n"
            f"(hint: run {self.binary} --config.file=... by hand to see why)"
        )

    def scrape(self, *targets: str, labels: dict[str, str] | None = None) -> None:
        """Scrape these ``host:port`` targets from now on (replacing earlier ones)."""
        if self._workdir is None:
            raise TestKitError("prometheus is not running (hint: call start() first)")
        entry = [{"targets": list(targets), "labels": labels or {}}]
        path = self._workdir / "targets.json"
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

    def stop(self) -> None:
        """Terminate the server this object started, wait for it, remove its directory."""
        process, self._process, self.port = self._process, None, None
        if process is not None:
            _terminate(process)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}, pid={self.pid}" if self.port else "stopped"
        return f"PrometheusServer({self.binary!r}, {state})"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """A running Prometheus on 127.0.0.1 scraping every second what tests name with
    ``prometheus_server.scrape("127.0.0.1:PORT")``."""
    server = PrometheusServer()
    try:
        server.start()
    except TestKitError as exc:
        pytest.fail(f"streamkit test kit: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
