"""TransactionalProcessor pieces that need no broker: ids, settings checks, config."""

from __future__ import annotations

import uuid

import pytest

from streamkit.clientconfig import client_config
from streamkit.errors import ConfigError
from streamkit.settings import load_settings
from streamkit.transactional import Output, TransactionalProcessor, output_event_id


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
