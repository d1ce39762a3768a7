"""What deduplication costs: EventConsumer throughput with each dedup backend, side by side.

    python bench/dedup_overhead.py [--messages N] [--rounds R]

Contenders: the same EventConsumer (trivial handler, commits after each poll) without a
store, and with ``memory://``, ``sqlite:///`` (``synchronous=FULL``, the default, and
``NORMAL``) and ``redis://`` stores. Every contender consumes its own topic holding the
same number of messages (unique event ids, written by bench/throughput.py's floor
producer) from one broker in one run, in its own process, alternating over rounds; the
first WARMUP messages are excluded. The table shows each contender's best round as
msgs/s and as a ratio to the consumer without dedup, and the least CPU time per message
the consumer process used (less sensitive to other load on the machine than wall time,
but blind to time spent waiting for Redis or an fsync). Writes bench/results/dedup.json.

Starts a throwaway broker and registry with the test kit unless
STREAMKIT_KAFKA__BOOTSTRAP_SERVERS and STREAMKIT_SCHEMA_REGISTRY__URL are set, and a
``redis-server`` on 127.0.0.1 unless STREAMKIT_TEST_REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.throughput import WARMUP, _cluster, _run, _settings  # noqa: E402

# name -> store URL template; {dir} is a fresh directory, {redis} the server's URL and
# {tag} a unique name, so no contender ever sees another's keys.
BACKENDS: dict[str, str | None] = {
    "none": None,
    "memory": "memory://?max_entries=1000000",
    "sqlite": "sqlite:///{dir}/{tag}.db",
    "sqlite-normal": "sqlite:///{dir}/{tag}.db?synchronous=NORMAL",
    "redis": "{redis}?prefix=bench:{tag}:",
}


def consume_with_dedup(env: dict[str, str], topic: str, count: int) -> tuple[float, float]:
    """Wall and CPU seconds for an EventConsumer with ``env['store']`` to handle ``count``
    messages (CPU: this process, librdkafka's threads included)."""
    from streamkit.consume.consumer import EventConsumer
    from streamkit.dedup import open_store

    store = open_store(env["store"]) if env.get("store") else None
    seen = 0
    started = cpu_started = 0.0

    def handle(_event: Any) -> None:
        nonlocal seen, started, cpu_started
        seen += 1
        if seen == WARMUP:
            started, cpu_started = time.perf_counter(), time.process_time()

    try:
        with EventConsumer([topic], handle, settings=_settings(env), dedup=store) as consumer:
            consumer.run(max_messages=count + WARMUP, idle_timeout_s=30, handle_signals=False)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
    finally:
        if store is not None:
            store.close()
    assert seen >= count + WARMUP, f"consumed {seen} of {count + WARMUP}"
    assert consumer.stats.duplicates_skipped == 0, "unique ids were taken for duplicates"
    return elapsed, cpu


def _redis_url() -> tuple[str, Any]:
    existing = os.environ.get("STREAMKIT_TEST_REDIS_URL")
    if existing:
        return existing, None
    from streamkit.testing.redis import RedisServer

    server = RedisServer().start()
    return server.url, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn")
    env, containers = _cluster()
    redis_url, redis_server = _redis_url()
    best: dict[str, float] = {}
    cpu_us: dict[str, float] = {}
    try:
        from streamkit.ops.admin import StreamkitAdmin, TopicSpec

        admin = StreamkitAdmin(_settings(env))
        with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as scratch:
            for round_ in range(args.rounds):
                for name, template in BACKENDS.items():
                    tag = f"{name}-{round_}-{uuid.uuid4().hex[:6]}"
                    topic = f"bench-dedup-{tag}"
                    admin.ensure_topics([TopicSpec(topic, partitions=3, replication_factor=1)])
                    _run("floor", "produce", env, topic, args.messages + WARMUP)
                    url = template.format(dir=scratch, redis=redis_url, tag=tag) if template else ""
                    seconds, cpu = _run_consumer({**env, "store": url}, topic, args.messages)
                    rate, per_msg = args.messages / seconds, cpu / args.messages * 1e6
                    best[name] = max(best.get(name, 0.0), rate)
                    cpu_us[name] = min(cpu_us.get(name, float("inf")), per_msg)
                    print(
                        f"  {name:14} round {round_ + 1}: {rate:8.0f} msgs/s "
                        f"{per_msg:8.0f} CPU us/msg",
                        flush=True,
                    )
    finally:
        if redis_server is not None:
            redis_server.stop()
        for container in containers:
            container.stop()
    baseline, cpu_baseline = best["none"], cpu_us["none"]
    results = {
        name: {
            "msgs_per_s": round(rate),
            "ratio": round(rate / baseline, 3),
            "cpu_us_per_msg": round(cpu_us[name], 1),
            "cpu_ratio": round(cpu_us[name] / cpu_baseline, 3),
        }
        for name, rate in best.items()
    }
    print(f"\n{'dedup store':16}{'msgs/s':>10}{'x no dedup':>12}{'CPU us/msg':>12}{'x CPU':>8}")
    for name, f in results.items():
        print(
            f"{name:16}{f['msgs_per_s']:>10}{f['ratio']:>12.2f}"
            f"{f['cpu_us_per_msg']:>12}{f['cpu_ratio']:>8.2f}"
        )
    out = REPO / "bench" / "results" / "dedup.json"
    document = {"consume": results, "messages": args.messages, "rounds": args.rounds}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")


def _run_consumer(env: dict[str, str], topic: str, count: int) -> tuple[float, float]:
    """Run :func:`consume_with_dedup` in its own process (as throughput.py's contenders)."""
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_child, args=(env, topic, count, send))
    process.start()
    send.close()
    elapsed = receive.recv() if receive.poll(900) else (float("nan"), float("nan"))
    process.join(60)
    if process.exitcode != 0:
        raise RuntimeError(f"consumer with store {env['store']!r} failed (exit {process.exitcode})")
    return elapsed


def _child(env: dict[str, str], topic: str, count: int, out: Any) -> None:
    out.send(consume_with_dedup(env, topic, count))
    out.close()


if __name__ == "__main__":
    main()
