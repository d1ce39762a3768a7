"""Typed events and tracing: CPU per event of each path, side by side in one run.

    python -m bench.typed [--events N] [--rounds R]

One broker and registry (the test kit's containers, or the ones
``STREAMKIT_KAFKA__BOOTSTRAP_SERVERS`` / ``STREAMKIT_SCHEMA_REGISTRY__URL`` name), the
example ``OrderPlaced`` envelope of ``schemas/``, and its payload model ``Order``
generated from that schema by ``streamkit schemas codegen`` (at start, in memory).

produce, ``EventProducer.send`` of prebuilt payloads, every record acknowledged:
  dict          the payload as a dict (today's path; OpenTelemetry installed, no tracer
                provider: the untraced path, ``NO_TRACING``)
  model         the payload as an ``Order`` model (``model_dump`` + the same schema check)
  traced        dict payload, OpenTelemetry SDK provider (batch processor, spans dropped
                by the exporter): a PRODUCER span and ``traceparent``/``baggage`` headers
  absent        dict payload in a child interpreter where ``opentelemetry`` cannot be
                imported (as without the ``otel`` extra)
  (the no-op hooks of the untraced path are also timed alone: ``no-op hooks``)
consume, ``EventConsumer.run`` over one topic (written traced, so every record carries a
``traceparent``) with a fresh group each time:
  dict          handler gets ``Event`` with a dict payload (untraced, as above)
  model         ``payload_type=Order``: the handler gets ``Event[Order]``
  traced        dict payload, SDK provider as above: a CONSUMER span per handler call,
                parented on the record's context
  absent        dict payload in the child interpreter without ``opentelemetry``

CPU is measured twice: the thread that sends or runs the consumer (``thread``: the
Python-side cost, where the paths differ) and the whole process (``process``: librdkafka's
threads too). Rounds alternate the paths; the best round of each counts. Ratios are to
the dict path of the same run; the paired ratios are each round's path over that round's
dict path (run back to back), their median the figure least moved by a shared machine.
Results go to ``bench/results/typed.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import timeit
import types
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import SCHEMA_NAME, SCHEMAS, Env, payloads, settings  # noqa: E402
from bench.run import _cluster, _topic  # noqa: E402

RESULTS = REPO / "bench" / "results" / "typed.json"


@dataclass(frozen=True)
class Cost:
    """CPU microseconds per event of one path (best round)."""

    thread_us: float
    process_us: float
    events: int


def _freeze() -> None:
    """Keep the prebuilt inputs out of the cyclic GC's sweeps: tens of thousands of payload
    dicts and models that a service does not hold would otherwise be traversed by every
    full collection, charging each path by how much it allocates (measured: consume model
    1.37-1.57x dict without this, 1.05-1.09x with it, same run)."""
    gc.collect()
    gc.freeze()


def _measure(run: Callable[[], int]) -> Cost:
    thread, process = time.thread_time(), time.process_time()
    count = run()
    return Cost(
        (time.thread_time() - thread) / count * 1e6,
        (time.process_time() - process) / count * 1e6,
        count,
    )


def _order_model() -> type[Any]:
    from streamkit.serde.modelschemas import codegen

    module = sys.modules["bench_events"] = types.ModuleType("bench_events")
    exec(compile(codegen(SCHEMAS), "bench_events", "exec"), module.__dict__)  # noqa: S102
    order: type[Any] = module.Order
    return order


class _Dropping:
    """An SDK span exporter that drops what it gets (the export path minus the network)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Dropping()))  # type: ignore[arg-type]
    return provider


def produce(env: Env, topic: str, records: Sequence[Any], warmup: int, **options: Any) -> Cost:
    from streamkit.produce.producer import EventProducer

    with EventProducer(settings(env), schemas=SCHEMAS, **options) as producer:
        for i in range(warmup):
            producer.send(topic, records[i], key=str(i), schema=SCHEMA_NAME)
        producer.flush(120)

        def timed() -> int:
            futures = [
                producer.send(topic, records[i], key=str(i), schema=SCHEMA_NAME)
                for i in range(warmup, len(records))
            ]
            producer.flush(120)
            failed = sum(1 for future in futures if future.exception(0) is not None)
            if failed:
                raise RuntimeError(f"{failed} records not acknowledged")
            return len(futures)

        return _measure(timed)


def consume(env: Env, topic: str, count: int, **options: Any) -> Cost:
    """CPU per event of ``EventConsumer.run`` over ``count`` events (a fresh group);
    ``options`` go to the consumer (``payload_type``, ``tracer_provider``)."""
    from streamkit.consume.consumer import EventConsumer
    from streamkit.serde.registry import SchemaRegistry

    config = settings(env, f"bench-typed-{uuid.uuid4().hex[:8]}")
    registry = SchemaRegistry(config)
    model = options.get("payload_type")
    handled = 0

    def handle(event: Any) -> None:
        nonlocal handled
        if model is not None and not isinstance(event.payload, model):
            raise TypeError("the payload is not the model")
        handled += 1
        if handled >= count:
            consumer.stop()

    consumer = EventConsumer([topic], handle, settings=config, registry=registry, **options)
    with consumer, registry:

        def timed() -> int:
            consumer.run(idle_timeout_s=60, handle_signals=False)
            if handled < count:
                raise RuntimeError(f"consumed {handled} of {count}")
            return handled

        return _measure(timed)


def absent(env: Env, topic: str, records: int, warmup: int, rounds: int) -> dict[str, Cost]:
    """The dict paths in a child interpreter where ``opentelemetry`` cannot be imported
    (as without the ``otel`` extra); best of ``rounds``."""
    script = (
        "import sys, json, dataclasses\n"
        "sys.modules['opentelemetry'] = None  # import opentelemetry fails from here on\n"
        "from bench import typed\n"
        "print(json.dumps({k: dataclasses.asdict(v) for k, v in typed.absent_child("
        f"{json.dumps(asdict(env))}, {topic!r}, {records}, {warmup}, {rounds}).items()}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {name: Cost(**cost) for name, cost in json.loads(done.stdout.splitlines()[-1]).items()}


def absent_child(
    env_fields: dict[str, str], topic: str, records: int, warmup: int, rounds: int
) -> dict[str, Cost]:
    """Run in the child :func:`absent` starts."""
    from streamkit.observability.tracing import otel_available

    if otel_available():
        raise RuntimeError("opentelemetry is importable in the absent child")
    env, dicts = Env(**env_fields), payloads(records)
    _freeze()
    best: dict[str, Cost] = {}
    for _ in range(rounds):
        costs = {
            "produce absent": produce(env, _topic(env, "typed-produce"), dicts, warmup),
            "consume absent": consume(env, topic, records),
        }
        for name, cost in costs.items():
            if name not in best or cost.thread_us < best[name].thread_us:
                best[name] = cost
    return best


def _no_op_hooks_us(rounds: int = 200_000) -> tuple[float, float]:
    """Microseconds per event of the untraced hooks: send's three span calls, and the
    consumer's ``process`` context."""
    from streamkit.observability.tracing import NO_TRACING
    from streamkit.serde.events import envelope_headers

    headers = envelope_headers("e", "OrderPlaced", 0)

    def send_hooks() -> None:
        span = NO_TRACING.publish("orders", "k", "e")
        try:
            span.inject(headers)
        finally:
            span.end()

    def consume_hooks() -> None:
        span = NO_TRACING.process(None, "g")  # type: ignore[arg-type]
        span.deactivate(span.activate())
        span.end()

    best = [
        min(timeit.repeat(hook, number=rounds, repeat=5)) / rounds * 1e6
        for hook in (send_hooks, consume_hooks)
    ]
    return best[0], best[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    order = _order_model()
    dicts = payloads(args.warmup + args.events)
    models = [order.model_validate(record) for record in dicts]
    _freeze()
    best: dict[str, Cost] = {}
    # Per round, each path's thread CPU over its kind's dict path of the same round: the
    # paths of one round run back to back, so a ratio of the pair is steadier than a
    # ratio of two bests taken minutes apart on a shared machine.
    paired: dict[str, list[float]] = {}

    def keep(name: str, cost: Cost) -> None:
        if name not in best or cost.thread_us < best[name].thread_us:
            best[name] = cost

    with _cluster(need_redis=False) as env:
        filled = _topic(env, "typed-consume")
        produce(env, filled, dicts, 0, tracer_provider=_provider())
        for round_ in range(args.rounds):
            topic = _topic(env, "typed-produce")
            costs = {
                "produce dict": produce(env, topic, dicts, args.warmup),
                "produce model": produce(env, topic, models, args.warmup),
                "produce traced": produce(
                    env, topic, dicts, args.warmup, tracer_provider=_provider()
                ),
                "consume dict": consume(env, filled, len(dicts)),
                "consume model": consume(env, filled, len(dicts), payload_type=order),
                "consume traced": consume(env, filled, len(dicts), tracer_provider=_provider()),
            }
            for name, cost in costs.items():
                keep(name, cost)
                base = costs[f"{name.split()[0]} dict"]
                paired.setdefault(name, []).append(cost.thread_us / base.thread_us)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        for name, cost in absent(env, filled, len(dicts), args.warmup, args.rounds).items():
            keep(name, cost)
    send_hooks_us, consume_hooks_us = _no_op_hooks_us()

    table: dict[str, Any] = {}
    for name, cost in best.items():
        kind = name.split()[0]
        base = best[f"{kind} dict"]
        table[name] = {
            **asdict(cost),
            "thread_ratio": round(cost.thread_us / base.thread_us, 3),
            "process_ratio": round(cost.process_us / base.process_us, 3),
        }
        if name in paired:
            table[name]["paired_thread_ratios"] = [round(r, 3) for r in paired[name]]
            table[name]["paired_thread_ratio_median"] = round(median(paired[name]), 3)
    table["no-op hooks"] = {
        "produce_us": send_hooks_us,
        "consume_us": consume_hooks_us,
        "produce_share_of_dict_send": round(send_hooks_us / best["produce dict"].thread_us, 4),
        "consume_share_of_dict_consume": round(
            consume_hooks_us / best["consume dict"].thread_us, 4
        ),
    }
    print(
        f"{'path':<16} {'thread µs/ev':>13} {'× dict':>7} {'process µs/ev':>14} {'× dict':>7}"
        f"  {'paired × dict (median; each round)':<30}"
    )
    for name, row in table.items():
        if name == "no-op hooks":
            continue
        rounds = row.get("paired_thread_ratios")
        pairs = (
            f"  {row['paired_thread_ratio_median']:.2f} ({', '.join(f'{r:.2f}' for r in rounds)})"
            if rounds
            else ""
        )
        print(
            f"{name:<16} {row['thread_us']:>13.1f} {row['thread_ratio']:>7.2f}"
            f" {row['process_us']:>14.1f} {row['process_ratio']:>7.2f}{pairs}"
        )
    hooks = table["no-op hooks"]
    print(
        f"no-op hooks: send {send_hooks_us:.3f} µs ({hooks['produce_share_of_dict_send']:.2%} of a "
        f"dict send), consume {consume_hooks_us:.3f} µs "
        f"({hooks['consume_share_of_dict_consume']:.2%} of a dict consume)"
    )
    RESULTS.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
