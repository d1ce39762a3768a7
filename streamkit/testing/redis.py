"""A real ``redis-server`` for tests, and the session-scoped ``redis_server`` fixture.

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
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import pytest

from streamkit.dedup.base import mask_url
from streamkit.testing.images import TestKitError

__all__ = ["REDIS_URL_ENV", "RedisEndpoint", "RedisServer", "redis_server"]

REDIS_URL_ENV = "STREAMKIT_TEST_REDIS_URL"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3  # a port picked free can be taken before redis binds it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the server binary; found on ``PATH`` by default.
        extra_args: more server options, e.g. ``("--requirepass", "secret")``.
    """

    def __init__(self, binary: str = "redis-server", *, extra_args: Sequence[str] = ()) -> None:
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server."""
        if self.port is None:
            raise TestKitError("redis-server is not running (hint: call start() first)")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the server this object started, if running."""
        return None if self._process is None else self._process.pid

    def start(self) -> Self:
        """Start the server and wait until it answers PING.

        Raises:
            TestKitError: the binary is missing, or the server did not come up; the
                message carries the server's last log lines.
        """
        executable = shutil.which(self.binary)
        if executable is None:
            raise TestKitError(
                f"{self.binary!r} not found on PATH (hint: apt-get install redis-server, "
                f"or set {REDIS_URL_ENV} to an existing server)"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="streamkit-redis-"))
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            last_error = self._try_start(executable, _free_port())
            if not last_error:
                return self
            if "Address already in use" not in last_error:
                break  # only a lost port race is worth another attempt
        self.stop()
        raise TestKitError(last_error)

    def _try_start(self, executable: str, port: int) -> str:
        """Start on ``port``; an error message when the server did not come up, else ''."""
        assert self._workdir is not None
        log = self._workdir / "redis.log"
        args = [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--logfile", str(log),
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _, stderr = process.communicate()  # also closes the pipe
                return self._failure(
                    f"exited with code {process.returncode}", log, stderr.decode(errors="replace")
                )
            if _ping(port):
                self._process, self.port = process, port
                return ""
            time.sleep(0.02)
        process.terminate()
        process.communicate(timeout=_STOP_TIMEOUT_S)
        return self._failure(f"did not answer PING within {_START_TIMEOUT_S:.0f} s", log, "")

    def _failure(self, what: str, log: Path, stderr: str) -> str:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        lines = "\n".join(["  " + line for line in [*stderr.splitlines(), *tail]])
        return (
            f"redis-server {what}. Last log lines:\n{lines or '  (none)'}\n"
            f"(hint: run {self.binary} by hand to see why, or set {REDIS_URL_ENV})"
        )

    def stop(self) -> None:
        """Terminate the server this object started, wait for it, remove its directory."""
        process, self._process, self.port = self._process, None, None
        if process is not None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT_S)
            if process.stderr is not None:
                process.stderr.close()
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
        return f"RedisServer({self.binary!r}, {state})"


@dataclass(frozen=True)
class RedisEndpoint:
    """A reachable Redis; ``server`` is None when it came from ``STREAMKIT_TEST_REDIS_URL``."""

    url: str
    port: int
    server: RedisServer | None = None

    def __repr__(self) -> str:
        # The URL of an existing server may carry a password.
        return f"RedisEndpoint(url={mask_url(self.url)!r}, port={self.port})"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisEndpoint]:
    """A running Redis: a fresh ``redis-server`` child, or ``STREAMKIT_TEST_REDIS_URL``."""
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
