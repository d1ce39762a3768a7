"""PostgreSQL inbox and outbox: what exactly-once and the relay cost, side by side.

    python -m bench.postgres [--events N] [--rounds R] [--rate 1000] [--latency-seconds S]
                             [--fast-db] [--phases inbox,relay,latency]

1. **Inbox**: an EventConsumer whose handler inserts one row per event through a pooled
   connection, without and with ``exactly_once`` (the dedup mark in the same
   transaction). Both read the same topic (each its own group), in their own process,
   alternating over rounds; the first WARMUP events are not timed. Ratio: with / without
   at the same concurrency. Concurrency 1 (one handler call at a time) and 16 (16 handler
   threads, a pool of 16 connections: the shape of a concurrent service).
2. **Relay throughput**: a backlog of N committed outbox rows drained by ``OutboxRelay``
   (from its first batch to the last row marked, i.e. broker-acknowledged), vs a service
   sending the same N events directly with ``EventProducer.send`` until all are
   acknowledged. Target: relay >= 0.5x direct.
3. **Commit-to-publish latency** at ``--rate`` events/s for ``--latency-seconds``: a writer
   commits one outbox event per transaction; the relay (a ``streamkit outbox relay``
   process, woken by LISTEN/NOTIFY) publishes; a consumer already assigned to the topic
   stamps arrival. Commit to consumed is an upper bound of commit to publish (it adds the
   consumer's fetch). Beside it: send-to-consumed of direct sends at the same rate.
   Target: p99 < 100 ms.

PostgreSQL is a fresh server from the test kit, with durable commits (``fsync=on``,
``synchronous_commit=on``) unless ``--fast-db`` (the test settings: no fsync). Kafka and
the registry as in bench/run.py. Writes bench/results/postgres.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import ORDER_SCHEMA, SCHEMAS, Env, order, settings  # noqa: E402
from bench.run import _cluster, _topic  # noqa: E402

WARMUP = 500
INBOX_CONCURRENCY = (1, 16)
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


# Inbox ------------------------------------------------------------------------------------


def consume_into_postgres(
    env: Env, url: str, topic: str, count: int, tag: str, once: bool, concurrency: int = 1
) -> tuple[float, float]:
    """Wall and CPU seconds for ``count`` events handled into PostgreSQL (after WARMUP) by
    ``concurrency`` handler calls at once, each on its own pooled connection."""
    from psycopg_pool import ConnectionPool

    from streamkit.consume.consumer import EventConsumer
    from streamkit.dedup import exactly_once, scoped_key

    group = f"bench-inbox-{tag}"
    insert = f"INSERT INTO effects_{tag} VALUES (%s)"  # noqa: S608 - a generated name
    seen = 0
    started = cpu_started = 0.0
    counting = threading.Lock()
    with ConnectionPool(url, min_size=1, max_size=max(2, concurrency)) as pool:

        def handle(event: Any) -> None:
            nonlocal seen, started, cpu_started
            with pool.connection() as conn:
                if once:
                    with exactly_once(
                        conn, scoped_key(group, event.id), table=f"dedup_{tag}"
                    ) as tx:
                        if tx is not None:
                            tx.execute(insert, (event.id,))
                else:
                    conn.execute(insert, (event.id,))
            with counting:
                seen += 1
                if seen == WARMUP:
                    started, cpu_started = time.perf_counter(), time.process_time()

        with EventConsumer(
            [topic], handle, settings=settings(env, group), concurrency=concurrency
        ) as consumer:
            consumer.run(max_messages=count + WARMUP, idle_timeout_s=30, handle_signals=False)
    assert seen >= count + WARMUP, f"handled {seen} of {count + WARMUP}"
    return time.perf_counter() - started, time.process_time() - cpu_started


def _in_child(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in a spawned process; its result."""
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_child, args=(send, function, *args))
    process.start()
    send.close()
    result = receive.recv() if receive.poll(900) else None
    process.join(60)
    if process.exitcode != 0 or result is None:
        raise RuntimeError(f"{function.__name__} failed (exit {process.exitcode})")
    return result


def _child(out: Any, function: Any, *args: Any) -> None:
    out.send(function(*args))
    out.close()


def bench_inbox(env: Env, url: str, events: int, rounds: int) -> dict[str, Any]:
    import psycopg

    from streamkit.produce.producer import EventProducer

    topic = _topic(env, "inbox")
    with EventProducer(settings(env), schemas=SCHEMAS) as producer:
        for seq in range(events + WARMUP):
            producer.send(topic, order(seq), key=f"k{seq % 97}", schema=ORDER_SCHEMA)
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    contenders = [
        (f"{name} c{concurrency}", once, concurrency)
        for concurrency in INBOX_CONCURRENCY
        for name, once in (("without", False), ("exactly_once", True))
    ]
    for round_ in range(rounds):
        for name, once, concurrency in contenders:
            tag = f"{round_}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE effects_{tag} (event_id text)")
            seconds, cpu_s = _in_child(
                consume_into_postgres, env, url, topic, events, tag, once, concurrency
            )
            rate = events / seconds
            best[name] = max(best.get(name, 0.0), rate)
            cpu[name] = min(cpu.get(name, float("inf")), cpu_s / events * 1e6)
            print(f"  inbox {name:17} round {round_ + 1}: {rate:7.0f} events/s", flush=True)
    return {
        name: {
            "events_per_s": round(rate),
            "ratio": round(rate / best[name.replace("exactly_once", "without")], 3),
            "cpu_us_per_event": round(cpu[name]),
        }
        for name, rate in best.items()
    }


# Relay throughput -------------------------------------------------------------------------


def drain_backlog(env: Env, url: str, table: str) -> tuple[float, int]:
    """Seconds for one relay to publish and mark every pending row, and the row count."""
    from streamkit.produce.outbox_relay import OutboxRelay

    with OutboxRelay(f"{url}?table={table}", settings=settings(env)) as relay:
        pending, _ = relay.backlog()
        started = time.perf_counter()
        while relay.relay_batch()[0]:
            pass
        elapsed = time.perf_counter() - started
        assert relay.backlog()[0] == 0
    return elapsed, pending


def send_directly(env: Env, count: int) -> float:
    """Seconds for ``count`` EventProducer sends, every one acknowledged."""
    from streamkit.produce.producer import EventProducer

    topic = _topic(env, "direct")
    payloads = [order(seq) for seq in range(count)]
    with EventProducer(settings(env), schemas=SCHEMAS) as producer:
        producer.send(topic, payloads[0], schema=ORDER_SCHEMA).result(30)  # registered, warm
        started = time.perf_counter()
        for seq in range(count):
            producer.send(topic, payloads[seq], key=f"k{seq % 97}", schema=ORDER_SCHEMA)
        assert producer.flush(120) == 0
        return time.perf_counter() - started


def fill_outbox(env: Env, url: str, topic: str, table: str, count: int, per_tx: int = 100) -> None:
    import psycopg

    from streamkit.produce.outbox import Outbox
    from streamkit.serde.encoders import EventEncoders

    encoders = EventEncoders(settings(env), schemas=SCHEMAS)
    with psycopg.connect(url) as conn:
        outbox = Outbox(conn, encoders=encoders, table=table)
        for start in range(0, count, per_tx):
            with conn.transaction():
                for seq in range(start, min(count, start + per_tx)):
                    outbox.add(topic, order(seq), key=f"k{seq % 97}", schema=ORDER_SCHEMA)


def bench_relay(env: Env, url: str, events: int, rounds: int) -> dict[str, Any]:
    best = {"direct": 0.0, "relay": 0.0}
    for round_ in range(rounds):
        rate = events / _in_child(send_directly, env, events)
        best["direct"] = max(best["direct"], rate)
        print(f"  direct produce round {round_ + 1}: {rate:7.0f} events/s", flush=True)
        table = f"outbox_{uuid.uuid4().hex[:8]}"
        fill_outbox(env, url, _topic(env, "relay"), table, events)
        seconds, drained = _in_child(drain_backlog, env, url, table)
        assert drained == events
        rate = events / seconds
        best["relay"] = max(best["relay"], rate)
        print(f"  outbox relay   round {round_ + 1}: {rate:7.0f} events/s", flush=True)
    return {
        name: {"events_per_s": round(rate), "ratio": round(rate / best["direct"], 3)}
        for name, rate in best.items()
    }


# Latency ----------------------------------------------------------------------------------


class Arrivals:
    """A consumer thread stamping when each event id arrives."""

    def __init__(self, env: Env, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streamkit.client.config import client_config

        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(client_config(settings(env), "consumer"))
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from streamkit.consume.processing import take_batch
        from streamkit.serde.events import HEADER_EVENT_ID, header_value

        while not self._stop.is_set():
            # The first message as soon as it is there, then what else is ready.
            for message in take_batch(self._consumer, 500, 0.1):
                if message.error() is None:
                    event_id = header_value(message.headers(), HEADER_EVENT_ID)
                    if event_id is not None:
                        self.seen.setdefault(event_id.decode(), time.time())

    def wait(self, ids: list[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(i in self.seen for i in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _paced(rate: int, seconds: float, step: Any) -> dict[str, float]:
    """Call ``step()`` ``rate`` times a second for ``seconds``; its ids and their times."""
    stamps: dict[str, float] = {}
    interval = 1 / rate
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        event_id, at = step(n)
        stamps[event_id] = at
    return stamps


def _percentiles(stamps: dict[str, float], arrivals: dict[str, float], skip: int) -> dict[str, Any]:
    ordered = sorted(stamps.items(), key=lambda item: item[1])[skip:]
    latencies = [(arrivals[i] - t) * 1000 for i, t in ordered if i in arrivals]
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(quantiles[49], 1),
        "p99_ms": round(quantiles[98], 1),
        "max_ms": round(max(latencies), 1),
        "samples": len(latencies),
        "missing": len(ordered) - len(latencies),
    }


def bench_latency(env: Env, url: str, rate: int, seconds: float) -> dict[str, Any]:
    import psycopg

    from streamkit.produce.outbox import Outbox
    from streamkit.produce.producer import EventProducer

    results: dict[str, Any] = {}
    # Direct sends at the same rate.
    topic = _topic(env, "latency-direct")
    arrivals = Arrivals(env, topic)
    with EventProducer(settings(env), schemas=SCHEMAS) as producer:
        producer.encoder(topic, ORDER_SCHEMA)

        def send(n: int) -> tuple[str, float]:
            at = time.time()
            future = producer.send(topic, order(n), key=f"k{n % 97}", schema=ORDER_SCHEMA)
            return future.event_id, at

        stamps = _paced(rate, seconds, send)
    arrivals.wait(list(stamps))
    results["direct_send_to_consumed"] = _percentiles(stamps, arrivals.seen, rate)

    # The outbox: commit, NOTIFY, relay process, Kafka.
    table = f"outbox_{uuid.uuid4().hex[:8]}"
    topic = _topic(env, "latency-outbox")
    env_vars = {
        **os.environ,
        "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": env.bootstrap,
        "STREAMKIT_SCHEMA_REGISTRY__URL": env.registry,
        "STREAMKIT_OUTBOX__URL": f"{url}?table={table}",
        "PYTHONPATH": str(REPO),
    }
    relay = subprocess.Popen(
        [sys.executable, "-c", "from streamkit.cli.app import main; main()", "outbox", "relay"],
        env=env_vars,
        stderr=subprocess.DEVNULL,
    )
    try:
        arrivals = Arrivals(env, topic)
        with psycopg.connect(url) as conn, EventProducer(settings(env), schemas=SCHEMAS) as enc:
            enc.encoder(topic, ORDER_SCHEMA)
            outbox = Outbox(conn, encoders=enc, table=table)
            time.sleep(2)  # the relay is up and listening

            def commit(n: int) -> tuple[str, float]:
                with conn.transaction():
                    event_id = outbox.add(topic, order(n), key=f"k{n % 97}", schema=ORDER_SCHEMA)
                return event_id, time.time()

            stamps = _paced(rate, seconds, commit)
        arrivals.wait(list(stamps))
    finally:
        relay.terminate()
        relay.wait(30)
    results["outbox_commit_to_consumed"] = _percentiles(stamps, arrivals.seen, rate)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--inbox-events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--fast-db", action="store_true", help="no fsync (the test settings)")
    parser.add_argument("--phases", default="inbox,relay,latency", help="which phases to run")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    multiprocessing.set_start_method("spawn")
    from streamkit.testing.postgres import PostgresServer

    with (
        _cluster(need_redis=False) as env,
        PostgresServer(settings={} if args.fast_db else DURABLE) as server,
    ):
        url = server.url
        results = {}
        if "inbox" in phases:
            results["inbox"] = bench_inbox(env, url, args.inbox_events, args.rounds)
        if "relay" in phases:
            results["relay"] = bench_relay(env, url, args.events, args.rounds)
        if "latency" in phases:
            results["latency"] = bench_latency(env, url, args.rate, args.latency_seconds)
    print(f"\n{'inbox':26}{'events/s':>10}{'ratio':>8}{'CPU us/event':>14}")
    for name, f in results.get("inbox", {}).items():
        print(f"{name:26}{f['events_per_s']:>10}{f['ratio']:>8.2f}{f['cpu_us_per_event']:>14}")
    print(f"\n{'publishing':26}{'events/s':>10}{'x direct':>10}")
    for name, f in results.get("relay", {}).items():
        print(f"{name:26}{f['events_per_s']:>10}{f['ratio']:>10.2f}")
    print(f"\n{'latency at ' + str(args.rate) + '/s':34}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    for name, f in results.get("latency", {}).items():
        print(f"{name:34}{f['p50_ms']:>8}{f['p99_ms']:>8}{f['max_ms']:>8}")
    out = REPO / "bench" / "results" / "postgres.json"
    document = {"results": results, "args": vars(args)}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
