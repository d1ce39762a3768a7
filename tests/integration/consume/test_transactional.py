"""Transactional consume → transform → produce against the real broker: a worker
process SIGKILLed mid-transaction and restarted leaves every input exactly once in the
output topic as a read_committed reader sees it; undecodable inputs and inputs whose
transform keeps failing are dead-lettered once, in the same transactions."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streamkit.client.config import client_config
from streamkit.consume.transactional import output_event_id
from streamkit.produce.producer import EventProducer
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.consume.tx_worker import FAILING_AT, FAILING_EVERY

INPUTS = 1_000
POISON = 3
PARTITIONS = 3


def read_topic(
    settings: StreamkitSettings, topic: str, *, isolation: str, partitions: int = PARTITIONS
) -> list[Any]:
    """Every record of ``topic`` from the start to its end (the LSO for read_committed)."""
    reader = Consumer(
        client_config(
            settings,
            "consumer",
            overrides={
                "group.id": f"reader-{time.monotonic_ns()}",
                "isolation.level": isolation,
                "enable.partition.eof": True,
            },
        )
    )
    reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: list[Any] = []
    at_end: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(at_end) < partitions and time.monotonic() < deadline:
            for message in reader.consume(500, 0.5):
                error = message.error()
                if error is None:
                    found.append(message)
                    at_end.discard(message.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
        assert len(at_end) == partitions, f"{topic} not read to its end within 60 s"
    finally:
        reader.close()
    return found


def _event_ids(messages: list[Any]) -> Counter[str]:
    return Counter(dict(m.headers())["event-id"].decode() for m in messages)


def _spawn(python: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[str]:
    with log.open("a") as stderr:
        return subprocess.Popen(
            [python, "-m", "tests.integration.consume.tx_worker", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=env["PYTHONPATH"],
        )


def _wait_line(process: subprocess.Popen[str], expected: str, log: Path) -> str:
    assert process.stdout is not None
    for line in process.stdout:  # the test's timeout bounds this
        if line.startswith(expected):
            return line
    code = process.wait()
    process.stdout.close()
    tail = log.read_text()[-3000:]
    raise AssertionError(f"worker exited ({code}) before printing {expected!r}:\n{tail}")


def test_sigkill_mid_transaction_then_restart_outputs_each_input_exactly_once(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    kafka_admin: Any,
    child_env: dict[str, str],
    python: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    source, sink = topic_factory(PARTITIONS), topic_factory(PARTITIONS)
    dlq = f"{source}{streamkit_settings.consumer.dead_letter_suffix}"
    for future in kafka_admin.create_topics([NewTopic(dlq, 1, 1)]).values():
        future.result(timeout=60)
    inputs = [
        producer.send(source, order(i), key=str(i), schema=ORDER_SCHEMA).event_id
        for i in range(INPUTS)
    ]
    assert producer.flush(30) == 0
    raw = Producer(client_config(streamkit_settings, "producer"))
    for i in range(POISON):
        raw.produce(source, b"not avro", str(i).encode(), headers=[("event-id", f"poison-{i}")])
    assert raw.flush(30) == 0
    env = {
        **child_env,
        "STREAMKIT_CONSUMER__GROUP_ID": streamkit_settings.consumer.group_id or "",
        "STREAMKIT_CONSUMER__SESSION_TIMEOUT_MS": "6000",
        "STREAMKIT_PRODUCER__TRANSACTIONAL_ID": f"tx-{source}-0",
        "STREAMKIT_CONSUMER__MAX_RETRIES": "1",
        "STREAMKIT_CONSUMER__RETRY_BACKOFF_MS": "10",
    }
    failing = {inputs[i] for i in range(INPUTS) if i % FAILING_EVERY == FAILING_AT}

    hang_after = random.randint(INPUTS // 5, INPUTS // 2)
    worker = _spawn(python, env, log, source, sink, "--hang-after", str(hang_after))
    _wait_line(worker, "mid-transaction", log)
    time.sleep(1.5)  # let librdkafka hand the open transaction's records to the broker
    worker.kill()
    assert worker.wait(30) == -signal.SIGKILL
    assert worker.stdout is not None
    worker.stdout.close()
    committed_before = len(read_topic(streamkit_settings, sink, isolation="read_committed"))
    assert 0 < committed_before < INPUTS

    worker = _spawn(python, env, log, source, sink)
    _wait_line(worker, "started", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = read_topic(streamkit_settings, sink, isolation="read_committed")
        if len(done) >= INPUTS - len(failing):
            break
        time.sleep(1)
    worker.send_signal(signal.SIGTERM)
    stats = json.loads(_wait_line(worker, "stats ", log).removeprefix("stats "))
    assert worker.wait(30) == 0
    assert worker.stdout is not None
    worker.stdout.close()

    committed = _event_ids(read_topic(streamkit_settings, sink, isolation="read_committed"))
    everything = read_topic(streamkit_settings, sink, isolation="read_uncommitted")
    letters = read_topic(streamkit_settings, dlq, isolation="read_committed", partitions=1)
    figures = {
        "inputs": INPUTS,
        "outputs_read_committed": sum(committed.values()),
        "records_in_log_incl_aborted": len(everything),
        "committed_before_kill": committed_before,
        "kill_after_transform_call": hang_after,
        "restarted_worker": stats,
    }
    print(f"transactional figures: {json.dumps(figures)}")
    expected = Counter({output_event_id(i, 0): 1 for i in inputs if i not in failing})
    assert committed == expected, "not exactly once"
    assert len(everything) > sum(expected.values()), (
        "the kill left no aborted records: not mid-transaction"
    )
    assert sorted(dict(m.headers())["event-id"].decode() for m in letters) == sorted(
        [f"poison-{i}" for i in range(POISON)] + list(failing)
    )
    assert all(dict(m.headers())["dlq-reason"] for m in letters)
