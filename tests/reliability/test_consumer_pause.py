"""A consumer process freezes (SIGSTOP) past its session timeout, then wakes up."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.cluster import KafkaCluster
from streamkit.testing.redis import RedisEndpoint
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import REPO
from tests.integration.consume.test_consumer import _handled_lines, _signal

SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms
PARTITIONS = 4
RATE_PER_S = 200
MAX_PRODUCE_S = 90


def _members(cluster: KafkaCluster, group: str) -> dict[str, set[int]]:
    """client id -> partitions assigned, as the group coordinator sees it."""
    description = cluster.admin().describe_consumer_groups([group])[group].result(10)
    return {
        member.client_id: {tp.partition for tp in member.assignment.topic_partitions}
        for member in description.members
    }


def _claims(url: str, group: str) -> Counter[bytes]:
    """Live claims in the dedup store per owner (shown when the test fails)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        values = [client.get(key) or b"" for key in client.scan_iter(f"{group}:*")]
    finally:
        client.close()
    return Counter(value for value in values if value.startswith(b"c:"))


def _wait(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = 60.0,
    state: Callable[[], object] = lambda: "",
) -> float:
    """Block until ``condition()``; return the seconds it took (fail showing ``state()``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not {what} within {timeout_s:.0f} s; now: {state()}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_frozen_consumer_loses_partitions_and_rejoins_without_loss_or_repeat(
    cluster: KafkaCluster,
    cluster_settings: StreamkitSettings,
    cluster_topic: Callable[..., str],
    schemas: SchemaSet,
    python: str,
    tmp_path: Path,
    spawn_consumer: Callable[..., subprocess.Popen[str]],
    redis_server: RedisEndpoint,
    figures: dict[str, Any],
) -> None:
    topic = cluster_topic(PARTITIONS)
    group = str(cluster_settings.consumer.group_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMKIT_")}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        STREAMKIT_KAFKA__BOOTSTRAP_SERVERS=cluster.bootstrap_servers,
        STREAMKIT_SCHEMA_REGISTRY__URL=str(cluster_settings.schema_registry.url),
        STREAMKIT_CONSUMER__GROUP_ID=group,
        STREAMKIT_CONSUMER__SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        # One store shared by both members, as a group spread over hosts would have. Its
        # claims outlive the freeze, so the member taking over waits for the frozen one's
        # in-flight events instead of repeating them. (Not SQLite: a member frozen inside a
        # transaction would hold the file's write lock and stall the other one.)
        STREAMKIT_DEDUP__URL=f"{redis_server.url}?prefix={group}:",
    )
    files = {name: tmp_path / f"{name}.txt" for name in ("a", "b")}
    procs = {
        name: spawn_consumer(
            python, {**env, "STREAMKIT_KAFKA__CLIENT_ID": name}, topic, files[name], "--dedup"
        )
        for name in ("a", "b")
    }
    _wait(lambda: sorted(_members(cluster, group)) == ["a", "b"], "both members joined")

    futures: list[DeliveryFuture] = []
    stop_producing = threading.Event()

    def produce() -> None:
        with EventProducer(cluster_settings, schemas=schemas) as producer:
            deadline = time.monotonic() + MAX_PRODUCE_S
            seq = 0
            while not stop_producing.is_set() and time.monotonic() < deadline:
                futures.append(producer.send(topic, order(seq), key=str(seq), schema=ORDER_SCHEMA))
                seq += 1
                time.sleep(1 / RATE_PER_S)

    def handled_by(name: str) -> list[tuple[str, int, int]]:
        return _handled_lines(files[name])

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        _wait(lambda: min(len(handled_by("a")), len(handled_by("b"))) >= 50, "both handling")
        owned_by_a = _members(cluster, group)["a"]

        procs["a"].send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        takeover_s = _wait(
            lambda: _members(cluster, group) == {"b": set(range(PARTITIONS))},
            "the frozen member's partitions moved",
            state=lambda: (_members(cluster, group), len(handled_by("a")), len(handled_by("b"))),
        )
        time.sleep(max(0.0, SESSION_TIMEOUT_MS / 1000 * 1.5 - (time.monotonic() - frozen_at)))
        b_after_takeover = len(handled_by("b"))
        procs["a"].send_signal(signal.SIGCONT)
        frozen_s = time.monotonic() - frozen_at
        a_at_resume = len(handled_by("a"))
        rejoin_s = _wait(
            lambda: sorted(_members(cluster, group)) == ["a", "b"],
            "the resumed member rejoined",
            state=lambda: (
                _members(cluster, group),
                {n: (len(handled_by(n)), procs[n].poll()) for n in procs},
                _claims(redis_server.url, group),
            ),
        )
        _wait(lambda: len(handled_by("a")) > a_at_resume + 50, "the resumed member handles")
    finally:
        stop_producing.set()
        producer.join(60)
    acknowledged = {f.event_id for f in futures if f.exception(0) is None}
    _wait(
        lambda: {e for n in files for e, _, _ in handled_by(n)} >= acknowledged,
        "every acknowledged event handled",
    )
    time.sleep(2)  # late repeats would show now
    codes = {name: _signal(proc, signal.SIGTERM) for name, proc in procs.items()}

    rows = handled_by("a") + handled_by("b")
    counts = Counter(event_id for event_id, _, _ in rows)
    b_took = {p for _, p, _ in handled_by("b")[b_after_takeover:]} & owned_by_a
    figures.update(
        sent=len(futures),
        acknowledged=len(acknowledged),
        handled=len(counts),
        lost=len(acknowledged - set(counts)),
        duplicates_handled=sum(c - 1 for c in counts.values()),
        frozen_s=round(frozen_s, 1),
        partitions_moved_after_s=round(takeover_s, 1),
        rejoined_after_resume_s=round(rejoin_s, 1),
        a_partitions_before=sorted(owned_by_a),
        b_handled_from_them=sorted(b_took),
    )
    assert codes == {"a": 0, "b": 0}
    assert acknowledged <= set(counts), "an acknowledged event was never handled"
    assert max(counts.values()) == 1, "an event was handled twice"
    assert frozen_s > SESSION_TIMEOUT_MS / 1000
