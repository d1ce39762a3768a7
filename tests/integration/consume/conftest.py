"""Fixtures of the consume integration tests: a one-line figures report, a recorder of
what concurrent handlers saw, and a producer offering events at a steady rate."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from tests.factories import ORDER_SCHEMA, order

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


class PacedProducer:
    """Sends order events to ``topic`` at about ``rate_per_s`` from a thread, keys
    ``key-<n % keys>``, until :meth:`stop` (or ``max_s``)."""

    def __init__(
        self, producer: EventProducer, topic: str, rate_per_s: int, *, keys: int, max_s: float
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._burst = max(1, rate_per_s // 20)
        self._keys = keys
        self._max_s = max_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.futures: list[DeliveryFuture] = []

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_s
        seq = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            for _ in range(self._burst):
                key = f"key-{seq % self._keys}"
                self.futures.append(
                    self._producer.send(self._topic, order(seq), key=key, schema=ORDER_SCHEMA)
                )
                seq += 1
            self._producer.poll(0)
            time.sleep(0.05)

    def stop(self) -> set[str]:
        """Stop sending; return the ids of the events the cluster acknowledged."""
        self._stop.set()
        self._thread.join(60)
        assert self._producer.flush(120) == 0
        return {f.event_id for f in self.futures if f.exception(0) is None}
