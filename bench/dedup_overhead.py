"""What deduplication costs: bytes per remembered id in each store, and consumer throughput.

    .venv-bench/bin/python -m bench.dedup_overhead [--ids N] [--messages N] [--rounds R]
                                                   [--skip-consume]

1. **Bytes per remembered id.** Each store (memory, SQLite, Redis, PostgreSQL) completes ``--ids``
   unique event ids (``scoped_key(group, uuid4)``, batches of 500) in a process of its
   own; the figure is the growth of what holds them: traced Python memory (memory
   store), the database file after a WAL checkpoint (SQLite), ``used_memory`` of a
   ``redis-server`` of its own (Redis), the table with its indexes after a ``VACUUM``
   (PostgreSQL, a server of its own). Beside it: the store's own estimate
   (``stats()``), the process's peak RSS, and the ids completed per second.
2. **Consumer throughput** with each store (``bench.run``'s consume contenders, against
   a broker and registry started with the test kit): msgs/s, CPU µs per message, peak
   RSS, and the store's bytes per id after the run. ``--skip-consume`` leaves it out.
3. **Cost table**: what marks take at 100 / 1,000 / 10,000 events/s for 1 h / 24 h /
   7 d of retention, from part 1's bytes per id, planning for the top of a bucket cycle
   (``rate × ttl × 9/8`` ids held; see ``streamkit.dedup.marks``).

Writes ``bench/results/dedup.json``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, peak_rss_bytes

BATCH = 500
RATES = (100, 1_000, 10_000)  # events per second
RETENTIONS = (("1 h", 3600), ("24 h", 86_400), ("7 d", 7 * 86_400))
HELD = 9 / 8  # ids held at the top of a bucket cycle, per id of rate × ttl
CONSUME = ("streamkit", "streamkit-memory", "streamkit-sqlite", "streamkit-redis")


def _keys(count: int) -> list[str]:
    from streamkit.dedup import scoped_key

    return [scoped_key("billing-service", str(uuid.uuid4())) for _ in range(count)]


def _fill(store: Any, count: int) -> float:
    """Complete ``count`` fresh ids; seconds spent in the store."""
    spent = 0.0
    for _ in range(count // BATCH):
        keys = _keys(BATCH)
        started = time.perf_counter()
        store.complete(keys)
        spent += time.perf_counter() - started
    return spent


def _figures(grown: int, count: int, seconds: float, store: Any) -> dict[str, Any]:
    stats = store.stats()
    return {
        "bytes_per_id": round(grown / count, 1),
        "stats_bytes_per_id": round(stats.bytes_per_id or 0, 1),
        "remembered_ids": stats.remembered_ids,
        "ids_per_s": round(count / seconds),
        "peak_rss_mib": round(peak_rss_bytes() / 2**20, 1),
    }


def measure_memory(count: int) -> dict[str, Any]:
    from streamkit.dedup import MemoryDedupStore

    store = MemoryDedupStore(max_entries=2 * count)
    _fill(store, BATCH)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seconds = _fill(store, count)  # slowed by tracing; the rate is indicative only
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return _figures(grown, count, seconds, store)


def measure_sqlite(count: int) -> dict[str, Any]:
    from streamkit.dedup import SqliteDedupStore

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "dedup.db"
        store = SqliteDedupStore(path)
        _fill(store, BATCH)

        def file_bytes() -> int:
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return path.stat().st_size

        before = file_bytes()
        seconds = _fill(store, count)
        figures = _figures(file_bytes() - before, count, seconds, store)
        store.close()
    return figures


def measure_redis(count: int) -> dict[str, Any]:
    import redis

    from streamkit.dedup import open_store
    from streamkit.testing.redis import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        store = open_store(server.url)
        _fill(store, BATCH)
        before = int(client.info("memory")["used_memory"])
        seconds = _fill(store, count)
        figures = _figures(
            int(client.info("memory")["used_memory"]) - before, count, seconds, store
        )
        store.close()
        client.close()
    return figures


def measure_postgresql(count: int, waves: int = 5) -> dict[str, Any]:
    """Bytes per id in the steady state: ``waves`` buckets of marks (5 s wide: a 40 s
    ttl), each sealed once it closed, as a running store seals them; the table of
    unsealed marks keeps the room of one bucket. Also the bytes per id of one bucket
    before it was sealed."""
    import psycopg

    from streamkit.dedup import open_store
    from streamkit.dedup.postgresql import PostgresDedupStore
    from streamkit.testing.postgres import PostgresServer

    tables = ("dedup", "dedup_runs", "dedup_sealed")
    with PostgresServer() as server, psycopg.connect(server.url, autocommit=True) as conn:
        store = open_store(f"{server.url}?table=dedup&ttl=40")
        assert isinstance(store, PostgresDedupStore)
        store._next_purge_at = float("inf")  # sealed below, wave by wave

        def tables_bytes() -> int:
            total = 0
            for name in tables:
                conn.execute(f"VACUUM {name}")  # visibility and free-space maps up to date
                row = conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()
                assert row is not None
                total += int(row[0])
            return total

        seconds, unsealed = 0.0, 0
        for wave in range(waves):
            seconds += _fill(store, count // waves)
            if wave == 0:
                unsealed = tables_bytes()
            time.sleep(store.retention.width_ms / 1000 + 0.1)  # its bucket closes
            for _ in range(count // 1000 + 10):  # bounded: 10,000 ids per batch
                if not store.seal():
                    break
            conn.execute("VACUUM dedup")  # autovacuum's part: room for the next wave
        figures = _figures(tables_bytes(), count, seconds, store)
        figures["unsealed_bytes_per_id"] = round(unsealed / (count // waves), 1)
        store.close()
    return figures


MEASURES = {
    "memory": "measure_memory",
    "sqlite": "measure_sqlite",
    "redis": "measure_redis",
    "postgresql": "measure_postgresql",
}


def cost_table(bytes_per_id: dict[str, float]) -> list[dict[str, Any]]:
    """Bytes of marks held per backend, rate and retention."""
    return [
        {
            "backend": backend,
            "events_per_s": rate,
            "retention": label,
            "bytes": round(rate * seconds * HELD * per_id),
        }
        for backend, per_id in bytes_per_id.items()
        for rate in RATES
        for label, seconds in RETENTIONS
    ]


def _human(size: float) -> str:
    unit = "B"
    for bigger in ("KB", "MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000, help="ids completed per store")
    parser.add_argument("--messages", type=int, default=20_000, help="consumed per contender")
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-consume", action="store_true")
    args = parser.parse_args(argv)
    from bench import run

    stores: dict[str, dict[str, Any]] = {}
    print(f"bytes per remembered id ({args.ids:,} ids per store):", flush=True)
    for backend, function in MEASURES.items():
        stores[backend] = run._Process("bench.dedup_overhead", function, args.ids).result()
        f = stores[backend]
        print(
            f"  {backend:10} {f['bytes_per_id']:6.1f} B/id (stats() says {f['stats_bytes_per_id']})"
            f"  {f['ids_per_s']:>8,} ids/s  peak RSS {f['peak_rss_mib']} MiB",
            flush=True,
        )
    consume: dict[str, dict[str, Any]] = {}
    if not args.skip_consume:
        table = {name: run.CONSUME[name] for name in ("floor", *CONSUME)}
        with run._cluster(need_redis=True) as env:
            consume = run._throughput(env, "consume", table, args)
        print(
            f"\n{'consumer':20}{'msgs/s':>10}{'x floor':>9}{'CPU µs/msg':>12}"
            f"{'peak RSS MiB':>14}{'store B/id':>12}"
        )
        for name, f in consume.items():
            if f["msgs_per_s"] is None:
                print(f"{name:20}{'failed':>10}  {f.get('error')}")
                continue
            per_id = "" if f["dedup_bytes_per_id"] is None else f["dedup_bytes_per_id"]
            print(
                f"{name:20}{f['msgs_per_s']:>10}{f['ratio']:>9.2f}{f['cpu_us_per_msg']:>12.1f}"
                f"{f['peak_rss_mib']:>14.1f}{per_id:>12}"
            )
    costs = cost_table({name: f["bytes_per_id"] for name, f in stores.items()})
    print(f"\nmarks held (rate × ttl × 9/8 ids){'':4}" + "".join(f"{r:>10}" for r, _ in RETENTIONS))
    for backend in stores:
        for rate in RATES:
            row = [c for c in costs if c["backend"] == backend and c["events_per_s"] == rate]
            cells = "".join(f"{_human(c['bytes']):>10}" for c in row)
            print(f"  {backend:8} {rate:>7,} events/s{'':8}{cells}")
    out = REPO / "bench" / "results" / "dedup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"ids": args.ids, "stores": stores, "consume": consume, "cost": costs}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
