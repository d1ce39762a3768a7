"""Throughput and latency of streamkit against a hand-written floor and peer libraries.

    make bench                       # creates .venv-bench, then runs this
    .venv-bench/bin/python -m bench.run [--messages N] [--rounds R] [--only a,b]

One broker and one registry (started with the test kit, or the ones that
``STREAMKIT_KAFKA__BOOTSTRAP_SERVERS`` and ``STREAMKIT_SCHEMA_REGISTRY__URL`` name), the
OrderPlaced schema, the same message count for everybody. Every contender runs in its
own process; the first ``--warmup`` records of each are not timed; every produced
record is acknowledged, every consumed one decoded and committed. Produce contenders
write to a fresh 3-partition topic each; the consume contenders of one round read the
same topic, filled by the floor. Rounds alternate the contenders; the best round
counts (the machine is shared, so the best one is the least disturbed). The latency
run offers records at a fixed rate and measures send-to-handler time. Every figure is
also given as a ratio to the floor of the same run. Prints a table and writes
``bench/results/latest.json``.

The ``io`` phase gives every consumer a handler that waits 5 ms (I/O-bound work): one
consumer process, a 12-partition topic of ``--io-messages`` events over ``--io-keys``
keys; each contender's rate is compared with its ideal, ``min(concurrency / 5 ms,
consume floor of the same run)`` (the floor: the hand-written loop without the wait).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import multiprocessing
import os
import statistics
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import HANDLER_WAIT_S, REPO, Env, Timing, peak_rss_bytes

_C = "bench.contenders."
# name -> (module, function, keyword arguments)
PRODUCE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "floor": (_C + "floor", "produce", {}),
    "streamkit": (_C + "streamkit_", "produce", {}),
    "confluent": (_C + "confluent", "produce", {}),
    "faststream": (_C + "faststream_", "produce", {}),
    "quixstreams": (_C + "quix", "produce", {}),
}
CONSUME: dict[str, tuple[str, str, dict[str, Any]]] = {
    "floor": (_C + "floor", "consume", {}),
    "streamkit": (_C + "streamkit_", "consume", {}),
    "streamkit-memory": (_C + "streamkit_", "consume", {"backend": "memory"}),
    "streamkit-sqlite": (_C + "streamkit_", "consume", {"backend": "sqlite"}),
    "streamkit-redis": (_C + "streamkit_", "consume", {"backend": "redis"}),
    "confluent": (_C + "confluent", "consume", {}),
    "faststream": (_C + "faststream_", "consume", {}),
    "quixstreams": (_C + "quix", "consume", {}),
}
LATENCY: dict[str, str] = {"floor": _C + "floor", "streamkit": _C + "streamkit_"}
_WAIT = {"handler_wait_s": HANDLER_WAIT_S}
_SK = _C + "streamkit_"
# I/O-bound phase: name -> (module, function, keyword arguments, concurrency). The
# floor (concurrency 0) has no handler wait: it is the consume floor of the run.
IO: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "floor": (_C + "floor", "consume", {}, 0),
    "confluent-loop": (_C + "floor", "consume", _WAIT, 1),
    "streamkit-c1": (_SK, "consume", _WAIT, 1),
    "streamkit-c1-redis": (_SK, "consume", {**_WAIT, "backend": "redis"}, 1),
    "streamkit-sync-64": (_SK, "consume", {**_WAIT, "concurrency": 64}, 64),
    "streamkit-sync-64-redis": (
        _SK,
        "consume",
        {**_WAIT, "concurrency": 64, "backend": "redis"},
        64,
    ),
    "streamkit-async-256": (_SK, "consume", {**_WAIT, "concurrency": 256, "coroutine": True}, 256),
    "streamkit-async-256-redis": (
        _SK,
        "consume",
        {**_WAIT, "concurrency": 256, "coroutine": True, "backend": "redis"},
        256,
    ),
    "faststream-256": (_C + "faststream_", "consume", {**_WAIT, "max_workers": 256}, 256),
    "quixstreams": (_C + "quix", "consume", _WAIT, 1),
}
IO_WARMUP = 500
CHILD_TIMEOUT_S = 600.0


def _child(
    module: str, function: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> None:
    try:
        result = getattr(importlib.import_module(module), function)(*args, **kwargs)
        if isinstance(result, Timing):  # the whole run's peak, not only the measured part
            result = dataclasses.replace(result, peak_rss_bytes=peak_rss_bytes())
        out.send(result)
    except BaseException as exc:
        out.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        out.close()


class _Process:
    """One contender in its own (spawned) process; :meth:`result` waits for its answer."""

    def __init__(self, module: str, function: str, *args: Any, **kwargs: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(module, function, args, kwargs, send), daemon=True
        )
        self._process.start()
        send.close()

    def result(self) -> Any:
        try:
            if not self._receive.poll(CHILD_TIMEOUT_S):
                raise TimeoutError(f"no answer within {CHILD_TIMEOUT_S:.0f} s")
            answer = self._receive.recv()
        except EOFError:
            answer = RuntimeError(f"process died (exit {self._process.exitcode})")
        finally:
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
        if isinstance(answer, BaseException):
            raise answer
        return answer


@contextmanager
def _cluster(need_redis: bool) -> Iterator[Env]:
    with ExitStack() as stack:
        bootstrap = os.environ.get("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS")
        registry = os.environ.get("STREAMKIT_SCHEMA_REGISTRY__URL")
        if not (bootstrap and registry):
            from streamkit.testing.containers import KafkaContainer, RegistryContainer

            kafka = KafkaContainer().start()
            stack.callback(kafka.stop)
            registry_container = RegistryContainer().start()
            stack.callback(registry_container.stop)
            bootstrap, registry = kafka.bootstrap_servers, registry_container.url
        redis = ""
        if need_redis:
            from streamkit.testing.redis import RedisServer

            redis = stack.enter_context(RedisServer()).url  # __enter__ starts it
        yield Env(bootstrap, registry, redis)


def _topic(env: Env, kind: str, partitions: int = 3) -> str:
    from bench.common import settings
    from streamkit.ops.admin import StreamkitAdmin, TopicSpec

    topic = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    StreamkitAdmin(settings(env)).ensure_topics([TopicSpec(topic, partitions=partitions)])
    return topic


def _throughput(
    env: Env,
    kind: str,
    table: dict[str, tuple[str, str, dict[str, Any]]],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    rates: dict[str, list[float]] = {name: [] for name in table}
    cpu: dict[str, list[float]] = {name: [] for name in table}  # µs of process CPU per record
    rss: dict[str, list[int]] = {name: [] for name in table}  # peak RSS of each process
    per_id: dict[str, float] = {}  # a dedup store's bytes per remembered id (last round)
    errors: dict[str, str] = {}
    for round_ in range(1, args.rounds + 1):
        shared = ""
        if kind == "consume":  # one data set per round, read by every consumer
            shared = _topic(env, kind)
            _Process(_C + "floor", "fill", env, shared, args.warmup + args.messages).result()
        for name, (module, function, kwargs) in table.items():
            topic = shared or _topic(env, kind)
            try:
                timing: Timing = _Process(
                    module, function, env, topic, args.messages, args.warmup, **kwargs
                ).result()
            except Exception as exc:
                errors[name] = str(exc)
                print(f"  {kind:8} {name:18} round {round_}: FAILED {exc}", flush=True)
                continue
            rate = timing.count / timing.seconds
            rates[name].append(rate)
            cpu[name].append(timing.cpu_seconds / timing.count * 1e6)
            rss[name].append(timing.peak_rss_bytes)
            if timing.bytes_per_id is not None:
                per_id[name] = timing.bytes_per_id
            print(
                f"  {kind:8} {name:18} round {round_}: {rate:9.0f} msgs/s"
                f"  {cpu[name][-1]:6.1f} µs CPU/msg  {timing.peak_rss_bytes / 2**20:6.1f} MiB RSS",
                flush=True,
            )
    floor = max(rates.get("floor") or [float("nan")])
    floor_cpu = min(cpu.get("floor") or [float("nan")])
    floor_cpu_median = statistics.median(cpu.get("floor") or [float("nan")])
    results: dict[str, dict[str, Any]] = {}
    for name, runs in rates.items():
        if not runs:
            results[name] = {"msgs_per_s": None, "ratio": None, "error": errors.get(name)}
            continue
        best = max(runs)
        results[name] = {
            "msgs_per_s": round(best),
            "ratio": round(best / floor, 3),
            "median_msgs_per_s": round(statistics.median(runs)),
            "rounds": [round(rate) for rate in runs],
            # process CPU per record (best round): steadier than wall time on a busy host
            "cpu_us_per_msg": round(min(cpu[name]), 2),
            "cpu_ratio": round(min(cpu[name]) / floor_cpu, 3),
            "median_cpu_us_per_msg": round(statistics.median(cpu[name]), 2),
            "median_cpu_ratio": round(statistics.median(cpu[name]) / floor_cpu_median, 3),
            "peak_rss_mib": round(max(rss[name]) / 2**20, 1),
            "dedup_bytes_per_id": round(per_id[name], 1) if name in per_id else None,
            "messages": args.messages,
        }
    return results


def _io(
    env: Env, table: dict[str, tuple[str, str, dict[str, Any], int]], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Every contender with a 5 ms handler over one 12-partition topic; ratio to ideal."""
    topic = _topic(env, "io", partitions=12)
    _Process(_C + "floor", "fill", env, topic, args.io_messages, keys=args.io_keys).result()
    best: dict[str, Timing] = {}
    errors: dict[str, str] = {}
    for round_ in range(1, args.io_rounds + 1):
        for name, (module, function, kwargs, concurrency) in table.items():
            measured = args.io_messages - IO_WARMUP
            if concurrency == 1:  # handler-bound at 1 / 5 ms: fewer records tell the rate
                measured = min(measured, args.io_sequential)
            try:
                timing: Timing = _Process(
                    module, function, env, topic, measured, IO_WARMUP, **kwargs
                ).result()
            except Exception as exc:
                errors[name] = str(exc)
                print(f"  io       {name:26} round {round_}: FAILED {exc}", flush=True)
                continue
            rate = timing.count / timing.seconds
            print(
                f"  io       {name:26} round {round_}: {rate:9.0f} msgs/s"
                f"  peak RSS {timing.peak_rss_mb:6.1f} MB",
                flush=True,
            )
            if name not in best or rate > best[name].count / best[name].seconds:
                best[name] = timing
    floor = best["floor"].count / best["floor"].seconds if "floor" in best else float("nan")
    results: dict[str, dict[str, Any]] = {}
    for name, (_, _, _, concurrency) in table.items():
        if name not in best:
            results[name] = {"msgs_per_s": None, "error": errors.get(name)}
            continue
        timing = best[name]
        rate = timing.count / timing.seconds
        ideal = floor if concurrency == 0 else min(concurrency / HANDLER_WAIT_S, floor)
        results[name] = {
            "msgs_per_s": round(rate),
            "ideal_msgs_per_s": round(ideal),
            "ratio_to_ideal": round(rate / ideal, 3),
            "ratio_to_floor": round(rate / floor, 3),
            "concurrency": concurrency,
            "peak_rss_mb": timing.peak_rss_mb,
            "cpu_us_per_msg": round(timing.cpu_seconds / timing.count * 1e6, 1),
            "messages": timing.count,
        }
    return results


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _latency(env: Env, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    total = int(args.rate * args.latency_seconds)
    warmup = int(args.rate)  # the first second is warm-up
    results: dict[str, dict[str, Any]] = {}
    for name, module in LATENCY.items():
        topic = _topic(env, "latency")
        ready = multiprocessing.get_context("spawn").Event()
        consumer = _Process(module, "latency_consume", env, topic, total - warmup, warmup, ready)
        if not ready.wait(120):
            raise TimeoutError(f"latency {name}: consumer got no partitions in 120 s")
        _Process(module, "latency_produce", env, topic, total, args.rate).result()
        timing: Timing = consumer.result()
        samples = list(timing.latencies_ms)
        results[name] = {
            "msgs_per_s": round(timing.count / timing.seconds),
            "offered_per_s": args.rate,
            "samples": len(samples),
            "p50_ms": round(_percentile(samples, 0.50), 2),
            "p99_ms": round(_percentile(samples, 0.99), 2),
        }
        print(
            f"  latency  {name:18} p50 {results[name]['p50_ms']:7.2f} ms"
            f"  p99 {results[name]['p99_ms']:7.2f} ms",
            flush=True,
        )
    floor = results.get("floor")
    for figures in results.values():
        if floor:
            figures["ratio"] = round(figures["msgs_per_s"] / floor["msgs_per_s"], 3)
            figures["p50_ratio"] = round(figures["p50_ms"] / floor["p50_ms"], 3)
            figures["p99_ratio"] = round(figures["p99_ms"] / floor["p99_ms"], 3)
    return results


def _print_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    if not (results["produce"] or results["consume"] or results["latency"]):
        return
    print(f"\n{'':9}{'contender':20}{'msgs/s':>10}{'x floor':>9}{'CPU µs/msg':>12}{'x floor':>9}")
    for kind in ("produce", "consume"):
        for name, figures in results[kind].items():
            if figures["msgs_per_s"] is None:
                print(f"{kind:9}{name:20}{'failed':>10}  {figures.get('error')}")
            else:
                per_id = figures["dedup_bytes_per_id"]
                print(
                    f"{kind:9}{name:20}{figures['msgs_per_s']:>10}{figures['ratio']:>9.2f}"
                    f"{figures['cpu_us_per_msg']:>12.1f}{figures['cpu_ratio']:>9.2f}"
                    f"{figures['median_cpu_us_per_msg']:>12.1f}{figures['median_cpu_ratio']:>9.2f}"
                    f"{figures['peak_rss_mib']:>14.1f}{'' if per_id is None else per_id:>12}"
                )
    if results["latency"]:
        print(
            f"\n{'latency':9}{'contender':20}{'p50 ms':>10}{'x floor':>9}"
            f"{'p99 ms':>10}{'x floor':>9}"
        )
        for name, figures in results["latency"].items():
            print(
                f"{'':9}{name:20}{figures['p50_ms']:>10.2f}{figures.get('p50_ratio', 1):>9.2f}"
                f"{figures['p99_ms']:>10.2f}{figures.get('p99_ratio', 1):>9.2f}"
            )


def _print_io(results: dict[str, dict[str, Any]]) -> None:
    if not results:
        return
    print(
        f"\n{'io (5 ms handler)':28}{'msgs/s':>10}{'ideal':>10}{'x ideal':>9}"
        f"{'x floor':>9}{'peak RSS MB':>13}"
    )
    for name, figures in results.items():
        if figures["msgs_per_s"] is None:
            print(f"{name:28}{'failed':>10}  {figures.get('error')}")
            continue
        print(
            f"{name:28}{figures['msgs_per_s']:>10}{figures['ideal_msgs_per_s']:>10}"
            f"{figures['ratio_to_ideal']:>9.2f}{figures['ratio_to_floor']:>9.2f}"
            f"{figures['peak_rss_mb']:>13.1f}"
        )


def _select(table: dict[str, Any], only: set[str] | None) -> dict[str, Any]:
    # The floor always runs: every figure is a ratio to it.
    return {k: v for k, v in table.items() if only is None or k in only or k == "floor"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="measured records per run")
    parser.add_argument("--warmup", type=int, default=5_000, help="untimed records first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2_000.0, help="latency: offered msgs/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--only", help="comma-separated contender names (the floor always runs)")
    parser.add_argument("--skip", default="", help="comma-separated: produce,consume,latency,io")
    parser.add_argument("--io-messages", type=int, default=20_000, help="io: events on the topic")
    parser.add_argument("--io-keys", type=int, default=2_000, help="io: distinct keys")
    parser.add_argument(
        "--io-sequential",
        type=int,
        default=2_000,
        help="io: records measured for contenders at concurrency 1 (handler-bound)",
    )
    parser.add_argument("--io-rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    skip = set(filter(None, args.skip.split(",")))
    produce = {} if "produce" in skip else _select(PRODUCE, only)
    consume = {} if "consume" in skip else _select(CONSUME, only)
    latency_on = "latency" not in skip
    io = {} if "io" in skip else _select(IO, only)
    results: dict[str, dict[str, dict[str, Any]]] = {
        "produce": {},
        "consume": {},
        "latency": {},
        "io": {},
    }
    need_redis = "streamkit-redis" in consume or any("redis" in name for name in io)
    with _cluster(need_redis=need_redis) as env:
        print(f"broker {env.bootstrap}, registry {env.registry}", flush=True)
        if produce:
            results["produce"] = _throughput(env, "produce", produce, args)
        if consume:
            results["consume"] = _throughput(env, "consume", consume, args)
        if latency_on:
            results["latency"] = _latency(env, args)
        if io:
            results["io"] = _io(env, io, args)
    _print_table(results)
    _print_io(results["io"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
