"""``streamkit consume`` and ``produce`` against the real broker and registry.

consume is read-only (no dead letters, no group unless asked), stops after exactly
``--max`` messages, ends quietly when its reader goes away, shows headers, and prints
logical types in the form ``produce`` reads back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import load_schemas
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import (
    INVOICE_SCHEMA,
    LOGICAL_SCHEMAS_DIR,
    PAYMENT_SCHEMA,
    invoice,
    payment,
)
from tests.integration.conftest import committed_offsets

STREAMKIT = str(Path(sys.executable).parent / "streamkit")
NO_COMMIT = -1001  # librdkafka's OFFSET_INVALID: the group committed nothing there
runner = CliRunner()


def _send_payments(producer: EventProducer, topic: str, count: int, first: int = 0) -> None:
    for future in [
        producer.send(topic, payment(first + n), schema=PAYMENT_SCHEMA) for n in range(count)
    ]:
        future.result(timeout=30)


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _no_dead_letter_topic(settings: StreamkitSettings, topic: str) -> bool:
    return (
        StreamkitAdmin(settings).partitions(f"{topic}{settings.consumer.dead_letter_suffix}")
        is None
    )


@pytest.mark.parametrize("with_group", [True, False])
def test_closed_stdout_ends_quietly_commits_only_what_was_printed_and_never_dead_letters(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
    python: str,
    with_group: bool,
) -> None:
    topic = topic_factory(partitions=1)
    _send_payments(producer, topic, 20)
    group = f"cli-pipe-{uuid.uuid4().hex[:8]}"
    args = [STREAMKIT, "consume", topic, *(["--group", group] if with_group else [])]
    consume = subprocess.Popen(
        args, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert consume.stdout is not None
    # `streamkit consume ... | head -1`: a reader that takes one line and exits.
    head = subprocess.run(
        [python, "-c", "import sys; sys.stdout.write(sys.stdin.readline())"],
        stdin=consume.stdout,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    consume.stdout.close()  # only the exited reader held the pipe's read end
    assert json.loads(head.stdout)["offset"] == 0
    _send_payments(producer, topic, 5, first=20)  # written after the reader is gone
    try:
        _, stderr = consume.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        consume.kill()
        consume.communicate()
        pytest.fail("streamkit consume kept running after its reader went away")
    assert consume.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr
    assert _no_dead_letter_topic(streamkit_settings, topic)
    committed = committed_offsets(streamkit_settings, group, topic)[0]
    if with_group:
        assert 1 <= committed <= 20  # never one of the events written after the reader left
    else:
        assert committed == NO_COMMIT  # no group: nothing committed, ever


def test_max_commits_exactly_that_many_with_a_group(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
) -> None:
    topic = topic_factory(partitions=1)
    _send_payments(producer, topic, 10)
    group = f"cli-max-{uuid.uuid4().hex[:8]}"
    result = runner.invoke(app, ["consume", topic, "--group", group, "--max", "3"], env=child_env)
    assert result.exit_code == 0, result.output
    assert [line["offset"] for line in _lines(result.output)] == [0, 1, 2]
    assert committed_offsets(streamkit_settings, group, topic) == {0: 3}
    again = runner.invoke(app, ["consume", topic, "--group", group, "--max", "2"], env=child_env)
    assert [line["offset"] for line in _lines(again.output)] == [3, 4]
    assert committed_offsets(streamkit_settings, group, topic) == {0: 5}


def test_event_consumer_max_messages_handles_and_commits_exactly_that_many(
    streamkit_settings: StreamkitSettings, producer: EventProducer, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=1)
    _send_payments(producer, topic, 10)
    handled: list[Event] = []
    with EventConsumer([topic], handled.append, settings=streamkit_settings) as consumer:
        stats = consumer.run(max_messages=3, idle_timeout_s=30, handle_signals=False)
    assert [event.offset for event in handled] == [0, 1, 2]
    assert stats.consumed == 3
    group = streamkit_settings.consumer.require_group()
    assert committed_offsets(streamkit_settings, group, topic) == {0: 3}


@pytest.mark.parametrize(
    ("options", "offsets"),
    [
        ([], [0, 1, 2, 3, 4, 5]),
        (["--from-offset", "4"], [4, 5]),
        (["--from-offset", "-2"], [4, 5]),
        (["--from-time", "{time_of_3}"], [3, 4, 5]),
        (["--max", "2"], [0, 1]),
    ],
)
def test_without_a_group_reads_from_where_asked_and_joins_no_group(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
    options: list[str],
    offsets: list[int],
) -> None:
    topic = topic_factory(partitions=1)
    sent = []
    for n in range(6):
        sent.append(producer.send(topic, payment(n), schema=PAYMENT_SCHEMA).result(timeout=30))
        time.sleep(0.01)  # distinct broker timestamps, so --from-time has one answer
    first = runner.invoke(app, ["consume", topic, "--max", "6"], env=child_env)
    times = {line["offset"]: line["timestamp"] for line in _lines(first.output)}
    assert sorted(times) == [0, 1, 2, 3, 4, 5], first.output
    args = [option.format(time_of_3=times[3]) for option in options]
    result = runner.invoke(app, ["consume", topic, *args, "--idle-timeout", "3"], env=child_env)
    assert result.exit_code == 0, result.output
    assert [line["offset"] for line in _lines(result.output)] == offsets
    assert {line["id"] for line in _lines(result.output)} <= {s.event_id for s in sent}


def test_headers_show_dead_letter_reasons(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
) -> None:
    topic = topic_factory(partitions=1)
    dead_letters = f"{topic}{streamkit_settings.consumer.dead_letter_suffix}"
    StreamkitAdmin(streamkit_settings).ensure_topics([TopicSpec(dead_letters, partitions=1)])
    _send_payments(producer, topic, 1)
    raw = Producer(client_config(streamkit_settings, "producer"))
    raw.produce(topic, b"not avro", b"poison-key")
    assert raw.flush(30) == 0

    def fail(_event: Event) -> None:
        raise RuntimeError("invoice service down")

    settings = streamkit_settings.model_copy(
        update={"consumer": streamkit_settings.consumer.model_copy(update={"max_retries": 0})}
    )
    with EventConsumer([topic], fail, settings=settings) as consumer:
        consumer.run(max_messages=2, idle_timeout_s=30, handle_signals=False)
    result = runner.invoke(app, ["consume", dead_letters, "--headers", "--max", "2"], env=child_env)
    assert result.exit_code == 0, result.output
    # The pipeline sends dead letters without waiting, so their order in the topic is free.
    lines = _lines(result.output)
    assert len(lines) == 2
    (poison,) = [line for line in lines if line["key"] == "poison-key"]
    (failed,) = [line for line in lines if line is not poison]
    assert failed["headers"]["dlq-reason"] == "RuntimeError: invoice service down"
    assert failed["headers"]["dlq-source-offset"] == "0"
    assert failed["payload"] == payment(0)
    assert poison["key"] == "poison-key"
    assert "wire format" in poison["error"]
    assert poison["value"] == "bm90IGF2cm8="  # base64 of the raw bytes
    assert poison["headers"]["dlq-error-type"] == "streamkit.errors.DeserializationError"


def test_logical_types_round_trip_consume_into_produce(
    streamkit_settings: StreamkitSettings,
    topic_factory: TopicFactory,
    child_env: dict[str, str],
) -> None:
    source, copy = topic_factory(partitions=1), topic_factory(partitions=1)
    schemas = load_schemas(LOGICAL_SCHEMAS_DIR)
    sent = [invoice(1), invoice(2)]
    with EventProducer(streamkit_settings, schemas=schemas) as invoices:
        for payload in sent:
            invoices.send(source, payload, schema=INVOICE_SCHEMA).result(timeout=30)
    # streamkit consume SOURCE --max 2 --payload-only | streamkit produce COPY --schema ...
    consume = subprocess.Popen(
        [STREAMKIT, "consume", source, "--max", "2", "--payload-only"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    produce = subprocess.run(
        [
            STREAMKIT,
            "produce",
            copy,
            "--schema",
            INVOICE_SCHEMA,
            "--schemas-dir",
            str(LOGICAL_SCHEMAS_DIR),
        ],
        stdin=consume.stdout,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert consume.stdout is not None
    assert consume.stderr is not None
    consume.stdout.close()
    with consume.stderr:
        assert consume.wait(timeout=60) == 0, consume.stderr.read()
    assert produce.returncode == 0, produce.stderr
    assert len(produce.stdout.splitlines()) == 2
    received: list[Any] = []
    copy_settings = streamkit_settings.with_group(f"copy-{uuid.uuid4().hex[:8]}")
    with EventConsumer([copy], lambda e: received.append(e.payload), settings=copy_settings) as c:
        c.run(max_messages=2, idle_timeout_s=30, handle_signals=False)
    # Decimal, datetime, date and bytes all came back equal (the uuid is read as a UUID).
    assert [{**p, "invoice_id": str(p["invoice_id"])} for p in received] == sent
