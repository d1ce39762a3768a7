"""Fixtures of the consume integration tests: a one-line figures report, and a
recorder of what concurrent handlers saw."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from streamkit.serde.events import Event

Report = Callable[..., None]


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Report:
    """``report(name, key=value, ...)`` prints ``FIGURES name: key=value ...`` on the
    terminal (past output capture), so that a run's figures can be quoted."""

    def emit(name: str, **figures: Any) -> None:
        line = " ".join(f"{key}={value}" for key, value in figures.items())
        with capsys.disabled():
            print(f"\nFIGURES {name}: {line}", flush=True)

    return emit


class Recorder:
    """What a handler saw, in the order handler calls started (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[bytes | None, int, int, str]] = []  # key, partition, offset, id
        self.running: Counter[bytes | None] = Counter()
        self.now = self.peak = 0
        self.overlaps = 0  # two calls of one key at once (must stay 0)

    def enter(self, event: Event) -> None:
        with self.lock:
            self.running[event.key] += 1
            if self.running[event.key] > 1:
                self.overlaps += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.calls.append((event.key, event.partition or 0, event.offset or 0, event.id))

    def leave(self, event: Event) -> None:
        with self.lock:
            self.running[event.key] -= 1
            self.now -= 1

    def out_of_order(self) -> int:
        """Calls of a key whose offset is below the previous call's of that key."""
        last: dict[bytes | None, int] = {}
        found = 0
        for key, _, offset, _ in self.calls:
            if offset < last.get(key, -1):
                found += 1
            last[key] = offset
        return found
