"""An idempotent consumer service run as a subprocess by the end-to-end dedup tests.

Usage: python -m tests.integration.consume.dedup_worker TOPIC EFFECTS [--batch-size N]
    [--concurrency N] [--sleep S]

Configured from ``STREAMKIT_*`` only (group id, dedup store URL, claim TTL, session
timeout). The dedup store named by ``STREAMKIT_DEDUP__URL`` is shared by every worker of
the group. The handler's side effect is one row per event in the ``effects`` table of
EFFECTS_DB (a plain INSERT, no unique constraint), written inside
:func:`streamkit.dedup.exactly_once` under the consumer's own dedup key, so that the row
and the event's "done" mark commit together: a worker killed after its row committed but
before the shared store heard of it cannot cause a second row. When EFFECTS_DB is the
SQLite store's own file, that mark *is* the store's. Each time the mark (rather than the
store) stopped a second effect, a row goes into ``marks_hit``, so the count survives kills.

EFFECTS may also be a ``postgresql://`` URL (its ``search_path`` naming the test's
schema): the same tables live there, and each handler call takes its own pooled
connection for :func:`exactly_once`, the shape a concurrent consumer's handlers use
(the pool holds up to ``max(4, concurrency)`` connections: one per handler thread).

Prints ``ready`` once partitions are first assigned, then ``stats {json}`` with the
consumer's counters every half second (the last one a killed worker printed is its
figure) and once more on SIGTERM, before it exits 0. With ``--concurrency N`` the
handler runs on N threads (SQLite: a connection per handler thread), sleeping ``S``
seconds per event first.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from streamkit.consume.consumer import EventConsumer, Handler
from streamkit.consume.processing import ConsumerStats
from streamkit.dedup import exactly_once, open_store_from_settings, scoped_key
from streamkit.serde.events import Event
from streamkit.settings import load_settings

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects ("
    " event_id TEXT NOT NULL, worker INTEGER NOT NULL,"
    " partition INTEGER NOT NULL, message_offset INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS marks_hit (event_id TEXT NOT NULL, worker INTEGER NOT NULL)",
)
REPORT_EVERY_S = 0.5


def connect(path: str) -> sqlite3.Connection:
    """A connection to the effects database: WAL, a generous busy timeout, autocommit.

    ``synchronous=NORMAL`` under WAL keeps every commit across a process crash (what the
    tests inflict); only a power loss could drop the last ones.
    """
    # check_same_thread off: each handler thread uses its own connection, and the main
    # thread closes them all once the consumer stopped.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


def effects_handler(
    connection: Callable[[], AbstractContextManager[Any]],
    param: str,
    group: str,
    worker: int,
    sleep_s: float = 0.0,
) -> Handler:
    """The handler: the effect row and the mark in one transaction of ``connection()``'s
    connection (``param``: the driver's placeholder), after sleeping ``sleep_s``."""
    # Only the driver's placeholder is spliced in.
    effect = f"INSERT INTO effects VALUES ({', '.join([param] * 4)})"  # noqa: S608
    mark_hit = f"INSERT INTO marks_hit VALUES ({param}, {param})"  # noqa: S608

    def handle(event: Event) -> None:
        if sleep_s:
            time.sleep(sleep_s)
        with connection() as conn, exactly_once(conn, scoped_key(group, event.id)) as tx:
            if tx is None:
                conn.execute(mark_hit, (event.id, worker))
                return
            tx.execute(effect, (event.id, worker, event.partition, event.offset))

    return handle


def postgres_handler(
    url: str, group: str, worker: int, sleep_s: float, pool_size: int = 4
) -> tuple[Handler, Callable[[], None]]:
    """Effects in PostgreSQL, each call on its own connection of a pool of at most
    ``pool_size`` (one per handler thread at most); and the pool's close."""
    import psycopg
    from psycopg_pool import ConnectionPool

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('dedup_worker'))")
        for statement in SCHEMA:
            conn.execute(statement)
    pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True)
    return effects_handler(pool.connection, "%s", group, worker, sleep_s), pool.close


def sqlite_handler(
    path: str, group: str, worker: int, sleep_s: float
) -> tuple[Handler, Callable[[], None]]:
    """Effects in an SQLite file, on a connection per handler thread; and their close."""
    local = threading.local()
    conns = [connect(path)]  # creates the tables now

    def connection() -> AbstractContextManager[sqlite3.Connection]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(path)
            conns.append(conn)
        return nullcontext(conn)

    def close() -> None:
        for conn in conns:
            conn.close()

    return effects_handler(connection, "?", group, worker, sleep_s), close


def report(stats: ConsumerStats) -> None:
    figures = {
        "worker": os.getpid(),
        "consumed": stats.consumed,
        "processed": stats.processed,
        "duplicates_skipped": stats.duplicates_skipped,
        "claim_conflicts": stats.claim_conflicts,
        "rebalances": stats.rebalances,
        "dead_lettered": stats.dead_lettered,
        "finished_before": stats.finished_before,
    }
    print(f"stats {json.dumps(figures)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("topic")
    parser.add_argument("effects")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    settings = load_settings()
    group = settings.consumer.group_id or ""
    if args.effects.startswith("postgresql:"):
        pool_size = max(4, args.concurrency)
        handle, close_effects = postgres_handler(
            args.effects, group, os.getpid(), args.sleep, pool_size
        )
    else:
        handle, close_effects = sqlite_handler(args.effects, group, os.getpid(), args.sleep)

    def assigned(_partitions: list[Any]) -> None:
        if not ready.is_set():
            ready.set()
            print("ready", flush=True)

    ready = threading.Event()
    stopped = threading.Event()
    store = open_store_from_settings(settings.dedup)
    try:
        with EventConsumer(
            [args.topic],
            handle,
            settings=settings,
            dedup=store,
            batch_size=args.batch_size,
            on_assign=assigned,
            concurrency=args.concurrency,
        ) as consumer:

            def reporter() -> None:
                while not stopped.wait(REPORT_EVERY_S):
                    report(consumer.stats)

            threading.Thread(target=reporter, daemon=True).start()
            stats = consumer.run()
            stopped.set()
    finally:
        if store is not None:
            store.close()
        close_effects()
    report(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
