"""A partition leader crashes mid-stream: nothing acknowledged is lost or doubled."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamkit.dedup import MemoryDedupStore
from streamkit.errors import KafkaClientError
from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.cluster import KafkaCluster
from tests.factories import ORDER_SCHEMA, order
from tests.reliability.conftest import ConsumerRunner, consume_all

TOTAL = 20_000
KILL_AT = TOTAL // 5  # the leader dies with most of the stream still to come
RESTART_AT = TOTAL // 2  # and is back (catching up) before the end
CHUNK = 250
CHUNK_PAUSE_S = 0.05  # paced, so that the stream spans the failover (~6 s) and the restart


def test_leader_killed_and_restarted_while_producing(
    cluster: KafkaCluster,
    cluster_settings: StreamkitSettings,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    consumers: ConsumerRunner,
    figures: dict[str, Any],
) -> None:
    topic = cluster_topic(partitions=1)
    victim = cluster.leader(topic)
    futures: list[DeliveryFuture] = []
    timeline: dict[str, float] = {}
    restart_due = threading.Event()

    def fail_over_then_restart() -> None:
        killed_at = time.monotonic()
        while cluster.leader(topic) in (victim, -1):
            time.sleep(0.1)
        timeline["new_leader_after_s"] = time.monotonic() - killed_at
        restart_due.wait(120)
        cluster.start_nodes(victim)
        timeline["node_down_s"] = time.monotonic() - killed_at

    fault = threading.Thread(target=fail_over_then_restart)
    started = time.monotonic()
    with EventProducer(cluster_settings, schemas=schemas) as producer:
        for seq in range(TOTAL):
            if seq == KILL_AT:
                cluster.kill(victim)
                fault.start()
            if seq == RESTART_AT:
                restart_due.set()
            futures.append(producer.send(topic, order(seq), key=str(seq), schema=ORDER_SCHEMA))
            if seq % CHUNK == CHUNK - 1:
                time.sleep(CHUNK_PAUSE_S)
        assert producer.flush(120) == 0, "records still unacknowledged after 120 s"
    produce_s = time.monotonic() - started
    fault.join(180)
    new_leader = cluster.leader(topic)
    cluster.wait_in_sync(topic)

    acknowledged = {f.event_id for f in futures if f.exception(0) is None}
    errors = [f.exception(0) for f in futures if f.exception(0) is not None]
    assert all(isinstance(error, KafkaClientError) for error in errors)

    collector, consumer = consume_all(
        consumers,
        cluster_settings,
        topic,
        acknowledged,
        dedup=MemoryDedupStore(max_entries=2 * TOTAL),
    )
    handled = Counter(collector.ids)
    lost = acknowledged - set(handled)
    doubled = sum(count - 1 for count in handled.values())
    figures.update(
        sent=TOTAL,
        acknowledged=len(acknowledged),
        failed=len(errors),
        failure_codes=dict(Counter(getattr(e, "code", "?") for e in errors)),
        consumed=consumer.stats.consumed,
        handled=len(handled),
        lost=len(lost),
        duplicates_on_log=consumer.stats.duplicates_skipped,
        duplicates_handled=doubled,
        killed_node=victim,
        new_leader=new_leader,
        produce_s=round(produce_s, 1),
        **{name: round(seconds, 1) for name, seconds in timeline.items()},
    )
    assert new_leader != -1
    assert not lost, f"{len(lost)} acknowledged events were never consumed"
    assert doubled == 0, "an event reached the handler twice despite dedup"
    # With idempotence and acks=all a leader crash neither loses nor fails records.
    assert len(acknowledged) == TOTAL, f"{len(errors)} sends failed: {errors[:3]}"
