"""The whole cluster is down for longer than the delivery timeout, then comes back."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamkit.errors import DeliveryError
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.cluster import KafkaCluster
from tests.factories import ORDER_SCHEMA, order

DELIVERY_TIMEOUT_MS = 6_000
DURING_OUTAGE = 200
AFTER = 200


def _send(producer: EventProducer, topic: str, count: int, start: int = 0) -> list[Any]:
    return [
        producer.send(topic, order(seq), key=str(seq), schema=ORDER_SCHEMA)
        for seq in range(start, start + count)
    ]


def test_sends_fail_clearly_during_outage_and_work_after_recovery(
    cluster: KafkaCluster,
    cluster_settings: StreamkitSettings,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    figures: dict[str, Any],
) -> None:
    topic = cluster_topic(partitions=3)
    settings = cluster_settings.model_copy(
        update={
            "producer": cluster_settings.producer.model_copy(
                update={"delivery_timeout_ms": DELIVERY_TIMEOUT_MS}
            )
        }
    )
    with EventProducer(settings, schemas=schemas) as producer:
        for future in _send(producer, topic, 10):
            future.result(30)  # connected, schema cached, topic metadata known

        cluster.stop_nodes()
        down_at = time.monotonic()
        during = _send(producer, topic, DURING_OUTAGE, start=10)
        send_s = time.monotonic() - down_at  # send() only queues: it must not block
        # No hang: every future settles within the delivery timeout plus slack.
        errors = [f.exception(DELIVERY_TIMEOUT_MS / 1000 + 30) for f in during]
        failed_after_s = time.monotonic() - down_at
        assert time.monotonic() - down_at > DELIVERY_TIMEOUT_MS / 1000

        cluster.start_nodes()
        outage_s = time.monotonic() - down_at
        recovered_at = time.monotonic()
        after = _send(producer, topic, AFTER, start=10 + DURING_OUTAGE)
        reports = [f.result(60) for f in after]
        recovery_s = time.monotonic() - recovered_at

    codes = Counter(getattr(error, "code", None) for error in errors)
    figures.update(
        delivery_timeout_s=DELIVERY_TIMEOUT_MS / 1000,
        sent_during_outage=DURING_OUTAGE,
        send_calls_s=round(send_s, 2),
        failed_during_outage=sum(error is not None for error in errors),
        failure_codes=dict(codes),
        all_failed_after_s=round(failed_after_s, 1),
        outage_s=round(outage_s, 1),
        sent_after=AFTER,
        acknowledged_after=len(reports),
        first_acks_after_restart_s=round(recovery_s, 1),
    )
    assert all(isinstance(error, DeliveryError) for error in errors), codes
    assert all("_MSG_TIMED_OUT" in str(error) for error in errors)
    assert send_s < 5
    assert failed_after_s < DELIVERY_TIMEOUT_MS / 1000 + 30
    assert len(reports) == AFTER
