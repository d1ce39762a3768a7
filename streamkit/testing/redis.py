"""A real ``redis-server`` for tests, served to the plugin's ``redis_server`` fixture.

:class:`RedisServer` starts the ``redis-server`` binary on 127.0.0.1 with a free port,
no persistence (``--save '' --appendonly no``) and a temporary working directory,
waits until it answers PING, and on :meth:`~RedisServer.stop` terminates the process it
started. No container and no Python redis client are needed.

The fixture uses an existing server instead when ``STREAMKIT_TEST_REDIS_URL`` is set
(e.g. ``redis://127.0.0.1:6379/0``); tests must then use their own key prefixes rather
than flushing the database. A missing binary fails the test with the reason; it never
skips.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from streamkit.dedup.base import mask_url
from streamkit.testing.images import TestKitError
from streamkit.testing.process import ChildServer

__all__ = ["REDIS_URL_ENV", "RedisEndpoint", "RedisServer", "serve_redis"]

REDIS_URL_ENV = "STREAMKIT_TEST_REDIS_URL"


def _ping(port: int, timeout_s: float = 0.5) -> bool:
    """Whether a server listens on 127.0.0.1:port and answers the inline command PING.

    ``+PONG``, or ``-NOAUTH`` from a server started with ``--requirepass``: either way
    it is up and serving commands.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer(ChildServer):
    """A ``redis-server`` child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the server binary; found on ``PATH`` by default.
        extra_args: more server options, e.g. ``("--requirepass", "secret")``.
    """

    package = "redis-server"
    start_timeout_s = 10.0

    def __init__(self, binary: str = "redis-server", *, extra_args: Sequence[str] = ()) -> None:
        super().__init__(binary)
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server."""
        return f"redis://127.0.0.1:{self._running_port()}/0"

    def _arguments(self, executable: str, port: int, workdir: Path, log: Path) -> list[str]:
        return [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--logfile", str(log),
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip

    def _ready(self, port: int) -> bool:
        return _ping(port)

    def _hint(self) -> str:
        return f"run {self.binary} by hand to see why, or set {REDIS_URL_ENV}"


@dataclass(frozen=True)
class RedisEndpoint:
    """A reachable Redis; ``server`` is None when it came from ``STREAMKIT_TEST_REDIS_URL``."""

    url: str
    port: int
    server: RedisServer | None = None

    def __repr__(self) -> str:
        # The URL of an existing server may carry a password.
        return f"RedisEndpoint(url={mask_url(self.url)!r}, port={self.port})"


def serve_redis() -> Iterator[RedisEndpoint]:
    """Yield a running Redis: a fresh ``redis-server`` child, or ``STREAMKIT_TEST_REDIS_URL``.

    The body of the ``redis_server`` fixture; a failure to start fails the test.
    """
    existing = os.environ.get(REDIS_URL_ENV)
    if existing:
        yield RedisEndpoint(existing, urlsplit(existing).port or 6379)
        return
    server = RedisServer()
    try:
        server.start()
    except TestKitError as exc:
        pytest.fail(f"streamkit test kit: {exc}", pytrace=False)
    try:
        assert server.port is not None
        yield RedisEndpoint(server.url, server.port, server)
    finally:
        server.stop()
