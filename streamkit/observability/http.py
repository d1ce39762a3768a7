"""The metrics HTTP endpoint, in a background thread.

The endpoint serves ``/metrics`` (Prometheus text format), ``/healthz`` (the process is
up), ``/readyz`` (503 until :attr:`MetricsServer.ready` is set, or while the ``ready``
callable returns False) and ``/livez`` (503 while the ``live`` callable returns False,
e.g. :meth:`EventConsumer.is_alive <streamkit.consume.consumer.EventConsumer.is_alive>`:
its poll loop stalled or its member was evicted).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from streamkit.observability.metrics import StreamkitMetrics

__all__ = ["MetricsServer", "serve_metrics"]

log = logging.getLogger(__name__)

_Start = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` and ``/livez`` over HTTP, in a background thread.

    Args:
        metrics: whose registry to serve (or a ``CollectorRegistry``).
        host: bind address (default loopback only).
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        ready: readiness check for ``/readyz``; default: the :attr:`ready` flag.
        live: liveness check for ``/livez``; default: always live.
    """

    def __init__(
        self,
        metrics: StreamkitMetrics | CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Callable[[], bool] | None = None,
        live: Callable[[], bool] | None = None,
    ) -> None:
        registry = metrics.registry if isinstance(metrics, StreamkitMetrics) else metrics
        self.host = host
        self.port = port
        self.ready = False
        self._ready_check = ready
        self._live_check = live
        self._metrics_app = make_wsgi_app(registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"MetricsServer({state})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9400``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def is_ready(self) -> bool:
        """What ``/readyz`` answers."""
        return self._ready_check() if self._ready_check is not None else self.ready

    def is_live(self) -> bool:
        """What ``/livez`` answers."""
        return self._live_check() if self._live_check is not None else True

    def _app(self, environ: dict[str, Any], start_response: _Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self.is_ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "not ready\n")
        if path == "/livez":
            if self.is_live():
                return _text(start_response, "200 OK", "live\n")
            return _text(start_response, "503 Service Unavailable", "not live\n")
        return _text(start_response, "404 Not Found", "try /metrics, /healthz, /readyz or /livez\n")

    def start(self) -> Self:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            return self
        server_class = _ThreadingServer6 if ":" in self.host else _ThreadingServer
        server = make_server(
            self.host, self.port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self._server = server
        self.port = int(server.server_port)
        self._thread = threading.Thread(
            target=server.serve_forever, name="streamkit-metrics", daemon=True
        )
        self._thread.start()
        log.info("serving metrics on %s/metrics", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _text(start_response: _Start, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def serve_metrics(
    metrics: StreamkitMetrics | CollectorRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[], bool] | None = None,
    live: Callable[[], bool] | None = None,
) -> MetricsServer:
    """Start a :class:`MetricsServer` (stop it, or use it as a context manager)."""
    return MetricsServer(metrics, host=host, port=port, ready=ready, live=live).start()
