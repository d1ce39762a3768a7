"""A transactional processor run as a subprocess by the transactional-mode tests.

Usage: python -m tests.integration.consume.tx_worker INPUT OUTPUT [--hang-after N] [--batch-size B]

Configured from ``STREAMKIT_*`` only (group id, transactional id, session timeout).
Each input order becomes one output order on OUTPUT with status ``PAID``, except
``order(seq)`` with ``seq % 250 == 7``, whose transform always raises (dead letters). With
``--hang-after N``, the first transform call from the N-th on that is not the first of
its transaction prints ``mid-transaction`` and blocks: outputs of that transaction are
then produced but uncommitted, and the test kills the process. On SIGTERM prints a line
``stats {json}`` with the processor's counters and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading

from streamkit.consume.transactional import Output, TransactionalProcessor
from streamkit.serde.events import Event
from streamkit.settings import load_settings
from tests.factories import ORDER_SCHEMA

FAILING_EVERY, FAILING_AT = 250, 7


def order_seq(event: Event) -> int:
    """The ``seq`` of tests.factories.order(seq) that made the event's payload."""
    return int(event.payload["order_id"].rpartition("-")[2])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--hang-after", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    calls = 0
    calls_in_txn = 0
    seen_committed = -1

    def transform(event: Event) -> list[Output]:
        nonlocal calls, calls_in_txn, seen_committed
        if processor.stats.committed != seen_committed:  # a new transaction began
            seen_committed, calls_in_txn = processor.stats.committed, 0
        calls += 1
        calls_in_txn += 1
        if args.hang_after and calls >= args.hang_after and calls_in_txn > 1:
            print("mid-transaction", flush=True)
            threading.Event().wait()  # until SIGKILL
        if order_seq(event) % FAILING_EVERY == FAILING_AT:
            raise ValueError(f"cannot bill {event.payload['order_id']}")
        # Decoded timestamp-millis fields are datetimes; the encoder's check wants ints.
        placed_at = int(event.payload["placed_at"].timestamp() * 1000)
        paid = {**event.payload, "status": "PAID", "placed_at": placed_at}
        return [Output(args.output, paid, event.key, ORDER_SCHEMA)]

    processor = TransactionalProcessor(
        [args.input],
        transform,
        settings=load_settings(),
        batch_size=args.batch_size,
    )
    with processor:
        print("started", flush=True)
        stats = processor.run()
    print(f"stats {json.dumps(dataclasses.asdict(stats))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
