"""Server binaries the test kit runs as child processes on 127.0.0.1 (Redis, Prometheus).

:class:`ChildServer` owns what every such server needs: finding the binary, a temporary
working directory, a free port (retried when another process takes it first), waiting
until the server answers, a failure message carrying its last log lines, and stopping
only the process it started. A subclass says how to launch and how to ask "ready?".
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from streamkit.testing.images import TestKitError
from streamkit.testing.network import free_port

__all__ = ["ChildServer"]

_PORT_ATTEMPTS = 3  # a port picked free can be taken before the server binds it
_STOP_TIMEOUT_S = 10.0


class ChildServer(ABC):
    """A server binary run as a child process on 127.0.0.1 (use as a context manager).

    Args:
        binary: path or name of the server binary; found on ``PATH``.
    """

    #: Debian package that provides the binary, named in the "missing" hint.
    package: str = ""
    #: How long the server may take to answer after it was launched.
    start_timeout_s: float = 30.0
    #: The signal that asks the server to stop (then SIGKILL after a timeout).
    stop_signal: int = signal.SIGTERM

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @abstractmethod
    def _arguments(self, executable: str, port: int, workdir: Path, log: Path) -> list[str]:
        """The command line that starts the server on ``port``."""

    @abstractmethod
    def _ready(self, port: int) -> bool:
        """Whether the server on ``port`` answers."""

    def _prepare(self, workdir: Path) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Write what the server needs in its working directory before the first start."""

    def _hint(self) -> str:
        """What to try when the server does not come up."""
        return f"run {self.binary} by hand to see why"

    @property
    def pid(self) -> int | None:
        """The process id of the server this object started, if running."""
        return None if self._process is None else self._process.pid

    @property
    def workdir(self) -> Path:
        """The server's temporary working directory (while started)."""
        if self._workdir is None:
            raise TestKitError(f"{self.binary} is not running (hint: call start() first)")
        return self._workdir

    def _running_port(self) -> int:
        if self.port is None:
            raise TestKitError(f"{self.binary} is not running (hint: call start() first)")
        return self.port

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise TestKitError(
                f"{self.binary!r} not found (hint: apt-get install {self.package}, "
                "or run scripts/ensure-packages.sh)"
            )
        return found

    def start(self) -> Self:
        """Start the server and wait until it answers.

        Raises:
            TestKitError: the binary is missing or the server did not come up; the
                message carries its last log lines.
        """
        executable = self._executable()
        name = Path(self.binary).name
        self._workdir = Path(tempfile.mkdtemp(prefix=f"streamkit-{name}-"))
        self._prepare(self._workdir)
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            last_error = self._try_start(executable, free_port())
            if not last_error:
                return self
            if "address already in use" not in last_error.lower():
                break  # only a lost port race is worth another attempt
        self.stop()
        raise TestKitError(last_error)

    def _try_start(self, executable: str, port: int) -> str:
        """Start on ``port``; an error message when the server did not come up, else ''."""
        workdir = self.workdir
        log = workdir / "server.log"
        args = self._arguments(executable, port, workdir, log)
        with log.open("ab") as log_file:
            process = self._launch(args, log_file)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return self._failure(f"exited with code {process.returncode}", log)
            if self._ready(port):
                self._process, self.port = process, port
                return ""
            time.sleep(0.05)
        _terminate(process, self.stop_signal)
        return self._failure(f"did not answer within {self.start_timeout_s:.0f} s", log)

    def _launch(self, args: list[str], log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start the server process (a subclass may run it as another user)."""
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )

    def _failure(self, what: str, log: Path) -> str:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        lines = "\n".join("  " + line for line in tail)
        return (
            f"{self.binary} {what}. Last log lines:\n{lines or '  (none)'}\n(hint: {self._hint()})"
        )

    def stop(self) -> None:
        """Terminate the server this object started, wait for it, remove its directory."""
        process, self._process, self.port = self._process, None, None
        if process is not None:
            _terminate(process, self.stop_signal)
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
        return f"{type(self).__name__}({self.binary!r}, {state})"


def _terminate(process: subprocess.Popen[bytes], stop_signal: int = signal.SIGTERM) -> None:
    process.send_signal(stop_signal)
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)
