"""A consumer service run as a subprocess by the tests, configured from STREAMKIT_* only.

Usage: python -m tests.integration.consume.consumer_proc TOPIC HANDLED_FILE [--sleep S] [--dedup]

Each handled event id is appended to HANDLED_FILE (flushed and fsynced) before the
handler returns, so the file is the ground truth of what was handled when the process
is killed. Prints "ready" once partitions are assigned.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import open_store_from_settings
from streamkit.serde.events import Event
from streamkit.settings import load_settings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("topic")
    parser.add_argument("handled_file")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--dedup", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    handled = open(args.handled_file, "a", encoding="utf-8")  # noqa: SIM115

    def handle(event: Event) -> None:
        if args.sleep:
            time.sleep(args.sleep)
        handled.write(f"{event.id} {event.partition} {event.offset}\n")
        handled.flush()
        os.fsync(handled.fileno())

    def assigned(_partitions: list[Any]) -> None:
        print("ready", flush=True)

    store = open_store_from_settings(settings.dedup) if args.dedup else None
    consumer = EventConsumer(
        [args.topic], handle, settings=settings, dedup=store, batch_size=50, on_assign=assigned
    )
    with consumer:
        stats = consumer.run()
    print(f"stopped processed={stats.processed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
