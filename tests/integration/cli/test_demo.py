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


class _OtlpReceiver:
    """An OTLP/HTTP trace endpoint on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []  # type: list[bytes]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(service name, span name, attributes) of every span received."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        found = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: a.value.string_value for a in span.attributes}
                        found.append((resource["service.name"], span.name, attributes))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_demo_exports_its_traces_over_otlp(child_env: dict[str, str]) -> None:
    receiver = _OtlpReceiver()
    try:
        env = {**child_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        summary = _run_demo(env, "--events", "300", "--consumers", "1")
    finally:
        receiver.close()
    spans = receiver.spans()
    published = [s for s in spans if s[1] == f"publish {summary['topic']}"]
    # Every send() is a span: the events and their re-sent duplicates (poison is not sent
    # through streamkit).
    assert len(published) == summary["produced"] + summary["duplicates_injected"]
    assert {service for service, _, _ in published} == {"streamkit-demo"}
    assert all(a["messaging.system"] == "kafka" for _, _, a in published)
    print(f"FIGURES typed demo_otlp spans={len(published)} produced={summary['produced']}")
