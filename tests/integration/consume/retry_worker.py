"""A consumer with retry topics, run as a subprocess by the retry tests (STREAMKIT_* only).

Usage: python -m tests.integration.consume.retry_worker TOPIC HANDLED_FILE

Events keyed ``flaky-*`` fail on their first two attempts (the ``retry-attempt`` header
says which attempt a delivery is) and succeed on the third; ``poison-*`` always fail;
the others succeed at once. Each success appends ``<event id> <attempt>`` to
HANDLED_FILE, flushed and fsynced before the handler returns (the ground truth when the
process is killed). Prints "ready" once partitions are assigned.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import open_store_from_settings
from streamkit.serde.events import Event, header_value
from streamkit.settings import load_settings


def attempt_of(event: Event) -> int:
    """Which attempt this delivery of ``event`` is (1 unless it came from a retry topic)."""
    value = header_value(event.headers, "retry-attempt")
    return int(value) if value else 1


def main() -> int:
    topic, handled_file = sys.argv[1:3]
    settings = load_settings()
    handled = open(handled_file, "a", encoding="utf-8")  # noqa: SIM115

    def handle(event: Event) -> None:
        key = (event.key or b"").decode()
        attempt = attempt_of(event)
        if key.startswith("poison-") or (key.startswith("flaky-") and attempt < 3):
            raise RuntimeError(f"{key} refused on attempt {attempt}")
        handled.write(f"{event.id} {attempt}\n")
        handled.flush()
        os.fsync(handled.fileno())

    def assigned(_partitions: list[Any]) -> None:
        print("ready", flush=True)

    store = open_store_from_settings(settings.dedup) if settings.dedup.url else None
    with EventConsumer([topic], handle, settings=settings, dedup=store, on_assign=assigned) as c:
        stats = c.run()
    print(f"stopped processed={stats.processed} retries={stats.retries}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
