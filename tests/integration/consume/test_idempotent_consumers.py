"""Idempotent consumers end to end: 10,000 events plus 2,000 re-sent duplicates (20 %,
same ids, other partitions) consumed by worker processes sharing a dedup store, one of
them SIGKILLed at a random point and restarted; the handler's side-effect table must
end with exactly one row per event.

Three set-ups: a group of 3 workers sharing a real Redis store; a single worker with
the SQLite store (whose file also holds the effects, the exactly-once-into-a-database
pattern); a group of 3 workers at concurrency 16 with the PostgreSQL store, the effects
written into the same database with exactly_once on a pooled connection per handler call
(a psycopg pool of 16 per worker); and a single
worker at concurrency 32 with the Redis store (killed with up to 32 handlers in flight).
Claim TTL and session timeout are short so that a killed member's claims and partitions
move on within seconds.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from streamkit.client.config import client_config
from streamkit.produce.producer import EventProducer
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order
from tests.integration.consume.conftest import Report
from tests.integration.dedup.conftest import with_param

EVENTS = 10_000
DUPLICATES = EVENTS // 5
PARTITIONS = 6
CLAIM_TTL_S = "4"
SESSION_TIMEOUT_MS = "6000"
# The shared store, not the effects table's own mark, must stop almost every duplicate:
# the mark only catches events whose worker died between its commit and the store's
# complete (per kill: those in flight and those handled in the last loop turn, so up to
# max_in_flight = 10 x concurrency), or whose claim expired under a stall.
MAX_MARKS_HIT_PER_SLOT = 20


@dataclass
class Worker:
    """One dedup_worker process and what it printed."""

    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    stats: dict[str, Any] = field(default_factory=dict)

    def follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ready"):
                self.ready.set()
            elif line.startswith("stats "):
                self.stats = json.loads(line.removeprefix("stats "))


class WorkerGroup:
    """Starts, kills and stops dedup workers; keeps every worker's last figures."""

    def __init__(
        self,
        python: str,
        env: dict[str, str],
        topic: str,
        effects: str,
        log: Path,
        *args: str,
    ) -> None:
        module = "tests.integration.consume.dedup_worker"
        self._command = [python, "-m", module, topic, effects, *args]
        self._env = env
        self._log = log
        self.live: list[Worker] = []
        self.killed: list[Worker] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> Worker:
        with self._log.open("a") as stderr:
            process = subprocess.Popen(
                self._command,
                env=self._env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=self._env["PYTHONPATH"],
            )
        worker = Worker(process)
        thread = threading.Thread(target=worker.follow, daemon=True)
        thread.start()
        self._threads.append(thread)
        self.live.append(worker)
        return worker

    def kill_one(self) -> None:
        victim = random.choice(self.live)
        victim.process.kill()
        assert victim.process.wait(30) == -signal.SIGKILL
        self.live.remove(victim)
        self.killed.append(victim)

    def stop_all(self) -> None:
        for worker in self.live:
            worker.process.send_signal(signal.SIGTERM)
        codes = [worker.process.wait(60) for worker in self.live]
        assert codes == [0] * len(codes), f"worker exit codes {codes}; see {self._log}"

    def terminate(self) -> None:
        """Kill whatever still runs (after a failure) and close every pipe."""
        for worker in self.everyone:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(30)
        for thread in self._threads:
            thread.join(10)
        for worker in self.everyone:
            if worker.process.stdout is not None:
                worker.process.stdout.close()

    @property
    def everyone(self) -> list[Worker]:
        return self.killed + self.live


MakeGroup = Callable[..., WorkerGroup]


@pytest.fixture
def worker_group(python: str, child_env: dict[str, str], tmp_path: Path) -> Iterator[MakeGroup]:
    """``worker_group(topic, env, effects, *args)`` makes a :class:`WorkerGroup` writing its
    effects into ``effects`` (an SQLite path or a postgresql:// URL), ``args`` passed to
    each worker; all are killed after."""
    groups: list[WorkerGroup] = []

    def make(topic: str, env: dict[str, str], effects: str, *args: str) -> WorkerGroup:
        log = tmp_path / "workers.log"
        group = WorkerGroup(python, {**child_env, **env}, topic, effects, log, *args)
        groups.append(group)
        return group

    yield make
    for group in groups:
        group.terminate()


def _produce(producer: EventProducer, topic: str) -> set[str]:
    """EVENTS events, then DUPLICATES of them re-sent with their ids under other keys."""
    ids = [
        producer.send(topic, order(i), key=f"k{i}", schema=ORDER_SCHEMA).event_id
        for i in range(EVENTS)
    ]
    for n, i in enumerate(random.sample(range(EVENTS), DUPLICATES)):
        producer.send(topic, order(i), key=f"dup{n}", event_id=ids[i], schema=ORDER_SCHEMA)
    assert producer.flush(60) == 0
    return set(ids)


def _uncommitted(settings: StreamkitSettings, topic: str) -> dict[int, int]:
    """Per partition, the messages between the group's committed offset and the end."""
    probe = Consumer(client_config(settings, "consumer"))
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = probe.committed(partitions, timeout=10)
        ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    finally:
        probe.close()
    return {
        tp.partition: end - max(tp.offset, 0)
        for tp, end in zip(committed, ends, strict=True)
        if tp.offset != end
    }


def _count(effects: str, query: str) -> int:
    """One number from the effects database (0 while its tables do not exist yet)."""
    if effects.startswith("postgresql:"):
        with psycopg.connect(effects) as pg:
            row = pg.execute("SELECT to_regclass('effects') IS NOT NULL").fetchone()
            if not (row and row[0]):
                return 0
            found = pg.execute(query).fetchone()
            assert found is not None
            return int(found[0])
    if not Path(effects).exists():
        return 0
    with sqlite3.connect(effects, timeout=30) as conn:
        # The file appears before the worker has created its tables.
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'effects'").fetchone():
            return 0
        value: int = conn.execute(query).fetchone()[0]
    return value


def _event_ids(effects: str) -> list[str]:
    if effects.startswith("postgresql:"):
        with psycopg.connect(effects) as pg:
            return [event_id for (event_id,) in pg.execute("SELECT event_id FROM effects")]
    with sqlite3.connect(effects) as conn:
        return [event_id for (event_id,) in conn.execute("SELECT event_id FROM effects")]


@pytest.mark.parametrize(
    ("store", "members", "concurrency"),
    [
        pytest.param("redis", 3, 1, id="redis-3"),
        pytest.param("sqlite", 1, 1, id="sqlite-1"),
        pytest.param("postgresql", 3, 16, id="postgresql-3-concurrency-16"),
        pytest.param("redis", 1, 32, id="redis-1-concurrency-32"),
    ],
)
def test_duplicates_and_a_kill_leave_exactly_one_effect_per_event(
    store: str,
    members: int,
    concurrency: int,
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    worker_group: MakeGroup,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    report: Report,
) -> None:
    effects = str(tmp_path / "effects.db")
    if store == "redis":
        server = request.getfixturevalue("redis_server")
        url = with_param(server.url, "prefix", f"e2e:{uuid.uuid4().hex[:12]}:")
    elif store == "sqlite":
        url = f"sqlite:///{effects}"  # the store's file holds the effects too
    else:
        # A schema per test holds the dedup table and the effects (search_path).
        schema = f"e2e_{uuid.uuid4().hex[:12]}"
        postgres = request.getfixturevalue("postgres_server")
        with psycopg.connect(postgres.url, autocommit=True) as pg:
            pg.execute(f"CREATE SCHEMA {schema}")
        url = effects = with_param(postgres.url, "options", f"-csearch_path%3D{schema}")
    topic = topic_factory(PARTITIONS)
    sent = _produce(producer, topic)
    group = worker_group(
        topic,
        {
            "STREAMKIT_CONSUMER__GROUP_ID": streamkit_settings.consumer.group_id or "",
            "STREAMKIT_CONSUMER__SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "STREAMKIT_DEDUP__URL": url,
            "STREAMKIT_DEDUP__CLAIM_TTL_S": CLAIM_TTL_S,
        },
        effects,
        "--concurrency",
        str(concurrency),
        *(("--sleep", "0.002") if concurrency > 1 else ()),
    )
    started = time.monotonic()
    for _ in range(members):
        group.start()

    kill_at = random.randint(EVENTS // 5, EVENTS // 2)
    deadline = time.monotonic() + 60
    while _count(effects, "SELECT count(*) FROM effects") < kill_at:
        assert time.monotonic() < deadline, "workers made no progress"
        time.sleep(0.05)
    group.kill_one()
    group.start()

    deadline = time.monotonic() + 150
    while True:
        rows_now = _count(effects, "SELECT count(*) FROM effects")
        uncommitted = _uncommitted(streamkit_settings, topic)
        if rows_now >= EVENTS and not uncommitted:
            break
        assert time.monotonic() < deadline, (
            f"not every event was handled and committed: {rows_now} rows; uncommitted "
            f"per partition: {uncommitted}; workers' last figures: "
            f"{[w.stats for w in group.everyone]}"
        )
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    group.stop_all()

    rows = _event_ids(effects)
    marks_hit = _count(effects, "SELECT count(*) FROM marks_hit")
    figures = {
        "store": store,
        "members": members,
        "concurrency": concurrency,
        "events_in": EVENTS,
        "messages_in": EVENTS + DUPLICATES,
        "rows_out": len(rows),
        "distinct_rows": len(set(rows)),
        "duplicates_skipped_by_store": sum(
            w.stats.get("duplicates_skipped", 0) for w in group.everyone
        ),
        "second_effects_stopped_by_db_mark": marks_hit,
        "claim_conflicts": sum(w.stats.get("claim_conflicts", 0) for w in group.everyone),
        "kills_survived": len(group.killed),
        "finished_before_skipped": sum(w.stats.get("finished_before", 0) for w in group.live),
        "killed_after_rows": kill_at,
        "seconds": round(elapsed, 1),
    }
    report(f"idempotent-consumers-{store}-{members}-c{concurrency}", **figures)
    assert len(rows) == EVENTS, "a duplicate or a lost event"
    assert set(rows) == sent
    max_marks_hit = MAX_MARKS_HIT_PER_SLOT if concurrency == 1 else 10 * concurrency
    assert marks_hit <= max_marks_hit, "the dedup store let duplicates through to the handler"
