"""Commit failures a fenced or rebalancing group member meets do not stop the consumer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import KafkaClientError
from streamkit.settings import load_settings


class _FailingCommits:
    """Stands in for the librdkafka consumer: every commit fails with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code

    def commit(self, *, asynchronous: bool) -> None:
        raise KafkaException(KafkaError(self.code))


@pytest.fixture
def consumer() -> Iterator[EventConsumer]:
    settings = load_settings(
        # never contacted: no start-up connection check
        kafka={"bootstrap_servers": "127.0.0.1:9", "startup_check_timeout_s": 0},
        schema_registry={"url": "http://127.0.0.1:9"},
        consumer={"group_id": "g"},
    )
    event_consumer = EventConsumer(["t"], lambda event: None, settings=settings)
    real = event_consumer.client
    yield event_consumer
    real.close()


@pytest.mark.parametrize(
    "code",
    [KafkaError._ASSIGNMENT_LOST, KafkaError.REBALANCE_IN_PROGRESS, KafkaError._NO_OFFSET],
    ids=["assignment-lost", "rebalance", "no-offset"],
)
def test_commit_failures_of_a_fenced_member_are_deferred(
    consumer: EventConsumer, code: int
) -> None:
    consumer._consumer = _FailingCommits(code)
    consumer.commit()  # no exception: the stored offsets wait for the next commit
    assert consumer.stats.commits == 0


def test_other_commit_failures_raise(consumer: EventConsumer) -> None:
    consumer._consumer = _FailingCommits(KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaClientError, match="GROUP_AUTHORIZATION_FAILED"):
        consumer.commit()
