"""TransactionalProcessor pieces that need no broker: ids, settings checks, config."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamkit.client.config import client_config
from streamkit.consume import transactional
from streamkit.consume.transactional import (
    Output,
    TransactionalProcessor,
    TransactionStats,
    output_event_id,
)
from streamkit.errors import ConfigError, KafkaClientError, RegistryError
from streamkit.serde.events import Event, EventEncoder
from streamkit.serde.schemas import AvroSchema, load_schemas
from streamkit.settings import load_settings
from tests.factories import ORDER_SCHEMA, order
from tests.fakes import message, mock_registry
from tests.unit.consume.conftest import FakeClient

REPO = Path(__file__).resolve().parents[3]


def test_output_event_ids_are_stable_distinct_uuids() -> None:
    first = output_event_id("e-1", 0)
    assert first == output_event_id("e-1", 0)
    assert len({first, output_event_id("e-1", 1), output_event_id("e-2", 0)}) == 3
    assert uuid.UUID(first).version == 5


def test_output_defaults() -> None:
    assert Output("t", {"a": 1}) == ("t", {"a": 1}, None, None)


@pytest.mark.parametrize(
    ("consumer", "producer", "missing"),
    [
        ({}, {}, ["STREAMKIT_CONSUMER__GROUP_ID", "STREAMKIT_PRODUCER__TRANSACTIONAL_ID"]),
        ({"group_id": "g"}, {}, ["STREAMKIT_PRODUCER__TRANSACTIONAL_ID"]),
        ({}, {"transactional_id": "t-0"}, ["STREAMKIT_CONSUMER__GROUP_ID"]),
    ],
)
def test_group_and_transactional_id_are_required(
    consumer: dict[str, str], producer: dict[str, str], missing: list[str]
) -> None:
    settings = load_settings(consumer=consumer, producer=producer)
    with pytest.raises(ConfigError) as info:
        TransactionalProcessor(["in"], lambda event: [], settings=settings)
    assert [problem.env_var for problem in info.value.problems] == missing


def test_transaction_timeout_covers_delivery_timeout() -> None:
    plain = client_config(load_settings(), "producer")
    assert "transaction.timeout.ms" not in plain
    for delivery_ms, expected in ((120_000, 120_000), (30_000, 60_000)):
        settings = load_settings(
            producer={"transactional_id": "t-0", "delivery_timeout_ms": delivery_ms}
        )
        conf = client_config(settings, "producer")
        assert conf["transaction.timeout.ms"] == expected >= conf["delivery.timeout.ms"]


class FakeTxnClient:
    """The transactional producer calls, recorded; ``commit_errors`` are raised in turn."""

    def __init__(self, commit_errors: list[KafkaError]) -> None:
        self.calls: list[str] = []
        self.produced: list[tuple[str, bytes | None]] = []
        self.offsets: list[list[TopicPartition]] = []
        self._commit_errors = commit_errors

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes | None, key: Any, headers: Any) -> None:
        self.produced.append((topic, value))

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.offsets.append(offsets)

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        if self._commit_errors:
            raise KafkaException(self._commit_errors.pop(0))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


class FakeTxnProducer:
    """The EventProducer face the processor uses: its client and encoders."""

    def __init__(self, client: FakeTxnClient, encoder: EventEncoder) -> None:
        self.client = client
        self._encoder = encoder

    def encoder(self, topic: str, schema: str | None = None) -> EventEncoder:
        return self._encoder

    def close(self) -> None:
        pass


@pytest.fixture
def order_schema() -> AvroSchema:
    return load_schemas(REPO / "schemas")[ORDER_SCHEMA]


def _processor(
    monkeypatch: pytest.MonkeyPatch,
    schema: AvroSchema,
    client: FakeTxnClient,
    registry_down: int = 0,
) -> tuple[TransactionalProcessor, FakeClient]:
    settings = load_settings(
        consumer={"group_id": "g", "max_retries": 0, "retry_backoff_ms": 1},
        producer={"transactional_id": "t-0"},
    )
    registry = mock_registry(settings)
    encoder = EventEncoder(schema, registry.register("in-value", schema))
    consumer = FakeClient(_batch(encoder))
    monkeypatch.setattr(transactional, "Consumer", lambda conf: consumer)
    monkeypatch.setattr(
        transactional, "EventProducer", lambda *a, **k: FakeTxnProducer(client, encoder)
    )
    if registry_down:
        _unreachable_for(monkeypatch, registry, registry_down)

    def transform(event: Event) -> list[Output]:
        if event.payload["order_id"] == "order-2":
            raise ValueError("cannot bill order-2")
        return [Output("out", {**event.payload, "status": "PAID", "placed_at": 0})]

    processor = TransactionalProcessor(["in"], transform, settings=settings, registry=registry)
    return processor, consumer


def _unreachable_for(monkeypatch: pytest.MonkeyPatch, registry: Any, lookups: int) -> None:
    """The registry's next ``lookups`` writer-schema lookups fail as unreachable."""
    answer = registry.schema_by_id
    down = [lookups]

    def schema_by_id(schema_id: int) -> AvroSchema:
        if down[0]:
            down[0] -= 1
            raise RegistryError("cannot reach the schema registry", transient=True)
        return answer(schema_id)

    monkeypatch.setattr(registry, "schema_by_id", schema_by_id)


def _batch(encoder: EventEncoder) -> list[Any]:
    values = [encoder.encode(Event(payload=order(i), type="OrderPlaced")) for i in range(3)]
    # partition 0 offsets 5, 6 (order-2 fails), partition 1 offset 9 (not Avro)
    return [
        _record(0, 5, values[0]),
        _record(0, 6, values[2]),
        _record(1, 8, values[1]),
        _record(1, 9, b"not avro"),
    ]


def _record(partition: int, offset: int, value: bytes) -> Any:
    event_id = f"e-{partition}-{offset}".encode()
    return message(
        topic="in",
        partition=partition,
        offset=offset,
        key=None,
        value=value,
        headers=[("event-id", event_id)],
    )


def _run(processor: TransactionalProcessor) -> None:
    processor.run(max_messages=4, handle_signals=False)


def test_one_transaction_holds_outputs_dead_letters_and_next_offsets(
    monkeypatch: pytest.MonkeyPatch, order_schema: AvroSchema
) -> None:
    client = FakeTxnClient([])
    processor, consumer = _processor(monkeypatch, order_schema, client)
    _run(processor)
    assert client.calls == ["begin", "commit"]
    assert Counter(topic for topic, _ in client.produced) == {"out": 2, "in.dlq": 2}
    assert {(tp.partition, tp.offset) for tp in client.offsets[0]} == {(0, 7), (1, 10)}
    assert processor.stats == TransactionStats(consumed=4, produced=2, dead_lettered=2, committed=1)
    assert consumer.seeks == []


def test_an_abortable_commit_error_aborts_and_rewinds_to_the_batch_start(
    monkeypatch: pytest.MonkeyPatch, order_schema: AvroSchema
) -> None:
    abortable = KafkaError(KafkaError._STATE, "fenced epoch", txn_requires_abort=True)
    client = FakeTxnClient([abortable])
    processor, consumer = _processor(monkeypatch, order_schema, client)
    _run(processor)
    assert client.calls == ["begin", "commit", "abort"]
    assert {(tp.partition, tp.offset) for tp in consumer.seeks} == {(0, 5), (1, 8)}
    assert processor.stats.aborted == 1
    assert processor.stats.committed == processor.stats.consumed == 0


def test_a_fatal_commit_error_is_raised_translated(
    monkeypatch: pytest.MonkeyPatch, order_schema: AvroSchema
) -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    client = FakeTxnClient([fenced])
    processor, _ = _processor(monkeypatch, order_schema, client)
    with pytest.raises(KafkaClientError, match="fenced") as info:
        _run(processor)
    assert info.value.fatal
    assert client.calls == ["begin", "commit", "abort"]  # tried, best effort


def test_retriable_commit_errors_commit_again(
    monkeypatch: pytest.MonkeyPatch, order_schema: AvroSchema
) -> None:
    timed_out = KafkaError(KafkaError._TIMED_OUT, "slow coordinator", retriable=True)
    client = FakeTxnClient([timed_out, timed_out])
    processor, _ = _processor(monkeypatch, order_schema, client)
    _run(processor)
    assert client.calls == ["begin", "commit", "commit", "commit"]
    assert processor.stats.committed == 1


def test_an_unreachable_registry_is_waited_out_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch, order_schema: AvroSchema
) -> None:
    client = FakeTxnClient([])
    processor, _ = _processor(monkeypatch, order_schema, client, registry_down=3)
    _run(processor)
    # Only the poison message and the failing transform: no letter for the good ones.
    assert Counter(topic for topic, _ in client.produced) == {"out": 2, "in.dlq": 2}
    assert processor.stats.committed == 1
