from __future__ import annotations

import pytest
from confluent_kafka import Message

from streamkit.consume.history import attempt_history
from streamkit.consume.retry_topics import (
    RETRY_HEADERS,
    DueGate,
    RetryTopics,
    final_dead_letter,
    is_retry_topic,
    retry_hop,
    retry_topic_name,
)
from streamkit.settings import ConsumerSettings
from tests.fakes import message

SETTINGS = ConsumerSettings(retry_delays=("1s", "2m"))
NOW_MS = 1_700_000_000_000


def test_names_and_stages() -> None:
    topics = RetryTopics(SETTINGS, ["orders", "payments"])
    assert retry_topic_name("{topic}-retry-{delay}", "orders", "5s") == "orders-retry-5s"
    assert topics.subscription() == [
        "orders",
        "payments",
        "orders.retry.1s",
        "orders.retry.2m",
        "payments.retry.1s",
        "payments.retry.2m",
    ]
    first, second = topics.stages("orders")
    assert (first.topic, first.index, first.delay_s) == ("orders.retry.1s", 0, 1.0)
    assert (second.topic, second.index, second.delay_s) == ("orders.retry.2m", 1, 120.0)
    assert topics.stage_of("orders") is None
    assert topics.stage_of("payments.retry.2m").source == "payments"  # type: ignore[union-attr]
    assert topics.next_stage("orders") == first
    assert topics.next_stage("orders.retry.1s") == second
    assert topics.next_stage("orders.retry.2m") is None


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        ("{topic}.retry.{delay}", "orders.retry.1s", True),
        ("{topic}.retry.{delay}", "a.b.retry.2m", True),
        ("{topic}.retry.{delay}", "orders.retry.3s", False),
        ("{topic}.retry.{delay}", "orders", False),
        ("{topic}.retry.{delay}", "orders.dlq", False),
        ("retry-{delay}-{topic}", "retry-1s-orders", True),
        ("retry-{delay}-{topic}", "orders.retry.1s", False),
    ],
)
def test_is_retry_topic(template: str, name: str, expected: bool) -> None:
    settings = ConsumerSettings(retry_delays=("1s", "2m"), retry_topic_template=template)
    assert is_retry_topic(settings, name) is expected
    assert not is_retry_topic(ConsumerSettings(), name)


def _hop(read: Message, error: BaseException, now_ms: int) -> Message:
    """``read`` failed; the copy that its next retry topic holds."""
    topics = RetryTopics(SETTINGS, ["orders"])
    stage = topics.next_stage(read.topic())
    assert stage is not None
    hop = retry_hop(read, error, attempts=1, group="billing", stage=stage, now_ms=now_ms)
    assert hop.stage == stage
    return message(
        headers=list(hop.letter.headers),
        topic=hop.letter.topic,
        partition=0,
        offset=5,
        key=hop.letter.key,
        value=hop.letter.value,
    )


def test_hops_carry_the_origin_the_schedule_and_the_history() -> None:
    original = message(headers=[("event-id", b"e-1"), ("trace", b"t")])
    first = _hop(original, RuntimeError("db down"), NOW_MS)
    headers = dict(first.headers())  # type: ignore[arg-type]
    assert first.topic() == "orders.retry.1s"
    assert (first.key(), first.value()) == (b"k", b"v")
    assert headers["event-id"] == b"e-1"
    assert headers["trace"] == b"t"
    assert set(RETRY_HEADERS) <= set(headers)
    assert headers["retry-attempt"] == b"2"
    assert headers["retry-delay"] == b"1s"
    assert headers["retry-due-at"] == str(NOW_MS + 1000).encode()
    assert headers["retry-first-failure-at"] == str(NOW_MS).encode()
    assert headers["retry-error-type"] == b"builtins.RuntimeError"
    assert headers["retry-error"] == b"RuntimeError: db down"
    assert (
        headers["retry-source-topic"],
        headers["retry-source-partition"],
        headers["retry-source-offset"],
    ) == (b"orders", b"2", b"41")

    second = _hop(first, KeyError("sku"), NOW_MS + 1500)
    names = [name for name, _ in second.headers()]  # type: ignore[union-attr]
    assert sorted(n for n in names if n.startswith("retry-")) == sorted(RETRY_HEADERS)
    headers = dict(second.headers())  # type: ignore[arg-type]
    assert second.topic() == "orders.retry.2m"
    assert headers["retry-attempt"] == b"3"
    assert headers["retry-due-at"] == str(NOW_MS + 1500 + 120_000).encode()
    assert headers["retry-first-failure-at"] == str(NOW_MS).encode()
    assert headers["retry-source-offset"] == b"41"
    history = attempt_history(second.headers())
    assert [(e.attempt, e.topic, e.offset) for e in history] == [
        (1, "orders", 41),
        (2, "orders.retry.1s", 5),
    ]


def test_the_last_failure_is_dead_lettered_from_the_source_with_the_whole_history() -> None:
    last = _hop(
        _hop(message(headers=[("event-id", b"e-1")]), RuntimeError("a"), NOW_MS),
        OSError("b"),
        NOW_MS,
    )
    letter = final_dead_letter(last, TimeoutError("c"), attempts=1, group="billing", suffix=".dlq")
    headers = dict(letter.headers)
    assert letter.topic == "orders.dlq"
    assert not [name for name in headers if name.startswith("retry-")]
    assert headers["dlq-source-topic"] == b"orders"
    assert headers["dlq-source-partition"] == b"2"
    assert headers["dlq-source-offset"] == b"41"
    assert headers["dlq-attempts"] == b"3"
    assert headers["dlq-error-type"] == b"builtins.TimeoutError"
    history = attempt_history(letter.headers)
    assert [(e.attempt, e.topic, e.error_type) for e in history] == [
        (1, "orders", "builtins.RuntimeError"),
        (2, "orders.retry.1s", "builtins.OSError"),
        (3, "orders.retry.2m", "builtins.TimeoutError"),
    ]


def test_a_source_message_is_dead_lettered_as_itself() -> None:
    letter = final_dead_letter(
        message(headers=[("event-id", b"e")]), ValueError("x"), attempts=1, group="g", suffix=".dlq"
    )
    assert dict(letter.headers)["dlq-source-offset"] == b"41"


def _polled(topic: str, partition: int, offset: int, due_ms: int | None = None) -> Message:
    headers = [] if due_ms is None else [("retry-due-at", str(due_ms).encode())]
    return message(headers=headers, topic=topic, partition=partition, offset=offset)


class Client:
    def __init__(self) -> None:
        self.now = NOW_MS / 1000
        self.paused: set[tuple[str, int]] = set()
        self.seeks: list[tuple[str, int, int]] = []

    def gate(self) -> DueGate:
        return DueGate(
            RetryTopics(SETTINGS, ["orders"]),
            pause=lambda keys: self.paused.update(keys),
            resume=lambda keys: self.paused.difference_update(keys),
            seek=lambda t, p, o: self.seeks.append((t, p, o)),
            clock=lambda: self.now,
        )


def test_due_gate_holds_a_retry_partition_until_its_first_message_is_due() -> None:
    client = Client()
    gate = client.gate()
    batch = [
        _polled("orders", 0, 10),
        _polled("orders.retry.1s", 0, 3, NOW_MS - 5),
        _polled("orders.retry.1s", 0, 4, NOW_MS + 800),
        _polled("orders", 0, 11),
        _polled("orders.retry.1s", 0, 5, NOW_MS + 400),  # behind offset 4: read again
        _polled("orders.retry.1s", 1, 7, NOW_MS + 200),
        _polled("orders.retry.2m", 2, 1),  # no due header: due now
    ]
    admitted = gate.admit(batch)
    assert [(m.topic(), m.offset()) for m in admitted] == [
        ("orders", 10),
        ("orders.retry.1s", 3),
        ("orders", 11),
        ("orders.retry.2m", 1),
    ]
    assert client.seeks == [("orders.retry.1s", 0, 4), ("orders.retry.1s", 1, 7)]
    assert client.paused == {("orders.retry.1s", 0), ("orders.retry.1s", 1)}
    assert gate.waiting == 2
    assert gate.next_due_in() == pytest.approx(0.2)

    client.now += 0.2
    gate.resume_due()
    assert client.paused == {("orders.retry.1s", 0)}
    assert gate.next_due_in() == pytest.approx(0.6)
    gate.forget([("orders.retry.1s", 0)])
    assert gate.waiting == 0
    assert gate.next_due_in() is None
