"""A real PostgreSQL server for tests; the body of the session-scoped ``postgres_server`` fixture.

:class:`PostgresServer` runs Debian's ``postgresql`` binaries (``initdb``, ``postgres``,
``pg_isready``; found on ``PATH`` or under ``/usr/lib/postgresql/<version>/bin``): a
fresh cluster in a temporary directory, password authentication (SCRAM) for the user
``streamkit``, listening on 127.0.0.1 and a free port only. PostgreSQL refuses to run
as root, so when the tests run as root the server runs as the ``postgres`` user (made
by the Debian package), else ``nobody``. Durability settings are relaxed
(``fsync=off``): a killed *client* loses nothing, only a crash of the machine would.

The fixture uses an existing server instead when ``STREAMKIT_TEST_POSTGRES_URL`` is set
(e.g. ``postgresql://user:pass@127.0.0.1:5432/db``); tests then keep to their own
table names rather than dropping anything. A missing binary fails the test with the
reason; it never skips.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from streamkit.dedup.base import mask_url
from streamkit.testing.images import TestKitError
from streamkit.testing.process import ChildServer

__all__ = ["POSTGRES_URL_ENV", "PostgresEndpoint", "PostgresServer", "serve_postgres"]

POSTGRES_URL_ENV = "STREAMKIT_TEST_POSTGRES_URL"
USER = "streamkit"
DATABASE = "postgres"
_DEBIAN_BIN = Path("/usr/lib/postgresql")
_INITDB_TIMEOUT_S = 120.0


def find_binary(name: str) -> str | None:
    """``name`` on ``PATH``, else in the newest ``/usr/lib/postgresql/<version>/bin``.

    Debian installs the server binaries outside ``PATH`` (only the clients are linked
    into ``/usr/bin``).
    """
    found = shutil.which(name)
    if found:
        return found
    if not _DEBIAN_BIN.is_dir():
        return None
    versions = [p for p in _DEBIAN_BIN.iterdir() if p.name.isdigit()]
    for version in sorted(versions, key=lambda p: int(p.name), reverse=True):
        candidate = version / "bin" / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless running as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise TestKitError(
        "PostgreSQL refuses to run as root and neither user 'postgres' nor 'nobody' "
        "exists (hint: apt-get install postgresql creates 'postgres')"
    )


class PostgresServer(ChildServer):
    """A PostgreSQL server child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the ``postgres`` server binary.
        settings: more server settings, e.g. ``{"max_connections": "200"}``.
        password: the ``streamkit`` user's password (random by default).
    """

    package = "postgresql"
    start_timeout_s = 60.0
    # SIGINT is PostgreSQL's "fast shutdown": clients are disconnected. SIGTERM ("smart")
    # would wait for every pooled connection a test left open.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        binary: str = "postgres",
        *,
        settings: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(binary)
        self.settings = dict(settings or {})
        self.password = password or secrets.token_hex(12)
        self._user = _server_user()

    @property
    def url(self) -> str:
        """``postgresql://streamkit:PASSWORD@127.0.0.1:PORT/postgres`` of the running server."""
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self._running_port()}/{DATABASE}"

    def _executable(self) -> str:
        found = find_binary(self.binary)
        if found is None:
            raise TestKitError(
                f"{self.binary!r} not found on PATH nor under {_DEBIAN_BIN}/*/bin (hint: "
                f"apt-get install {self.package}, or run scripts/ensure-packages.sh)"
            )
        return found

    def _sibling(self, name: str) -> str:
        """Another binary of the same installation (initdb, pg_isready)."""
        beside = Path(self._executable()).resolve().parent / name
        if os.access(beside, os.X_OK):
            return str(beside)
        found = find_binary(name)
        if found is None:
            raise TestKitError(f"{name!r} not found beside {self._executable()}")
        return found

    @property
    def _uid(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._user is None else self._user.pw_gid

    def _prepare(self, workdir: Path) -> None:
        if self._user is not None:
            os.chown(workdir, self._user.pw_uid, self._user.pw_gid)
        pwfile = workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        pwfile.chmod(0o600)
        command = [
            self._sibling("initdb"),
            "--pgdata", str(workdir / "data"),
            "--username", USER,
            "--pwfile", str(pwfile),
            "--auth", "scram-sha-256",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
        ]  # fmt: skip
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_INITDB_TIMEOUT_S,
            check=False,
            cwd=workdir,
            user=self._uid,
            group=self._gid,
        )
        pwfile.unlink()
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise TestKitError(f"initdb failed with code {result.returncode}:\n{tail}")

    def _arguments(self, executable: str, port: int, workdir: Path, log: Path) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(workdir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            **self.settings,
        }
        options = [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
        return [executable, "-D", str(workdir / "data"), *options]

    def _launch(self, args: list[str], log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        if self._user is not None:
            log = Path(log_file.name)
            os.chown(log, self._user.pw_uid, self._user.pw_gid)
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            user=self._uid,
            group=self._gid,
        )

    def _ready(self, port: int) -> bool:
        # pg_isready says "accepting connections" only once recovery/start-up is over.
        result = subprocess.run(
            [self._sibling("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def _hint(self) -> str:
        return f"run {self.binary} -D <datadir> by hand to see why, or set {POSTGRES_URL_ENV}"

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop the server (fast shutdown), wait ``down_s``, start it on the same port.

        The data stays: this is the "database restarted under a running service" case.
        """
        port = self._running_port()
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(self.stop_signal)
            process.wait(30)
        time.sleep(down_s)
        error = self._try_start(self._executable(), port)
        if error:
            raise TestKitError(error)

    def __repr__(self) -> str:
        state = f"port={self.port}, pid={self.pid}" if self.port else "stopped"
        return f"PostgresServer({self.binary!r}, {state})"


@dataclass(frozen=True)
class PostgresEndpoint:
    """A reachable PostgreSQL; ``server`` is None when it came from the environment."""

    url: str
    port: int
    server: PostgresServer | None = None

    def __repr__(self) -> str:
        # The URL carries a password.
        return f"PostgresEndpoint(url={mask_url(self.url)!r}, port={self.port})"


def start_or_fail(server: PostgresServer) -> PostgresServer:
    """Start ``server``, turning a test-kit failure into a failed test (never a skip)."""
    try:
        return server.start()
    except TestKitError as exc:
        pytest.fail(f"streamkit test kit: {exc}", pytrace=False)


def serve_postgres() -> Iterator[PostgresEndpoint]:
    """Yield a running PostgreSQL: a fresh server child, or ``STREAMKIT_TEST_POSTGRES_URL``.

    The body of the ``postgres_server`` fixture; a failure to start fails the test.
    """
    existing = os.environ.get(POSTGRES_URL_ENV)
    if existing:
        yield PostgresEndpoint(existing, urlsplit(existing).port or 5432)
        return
    server = start_or_fail(PostgresServer())
    try:
        assert server.port is not None
        yield PostgresEndpoint(server.url, server.port, server)
    finally:
        server.stop()
