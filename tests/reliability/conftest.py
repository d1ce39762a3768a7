"""Fixtures for fault-injection tests: the replicated cluster, its settings, figures.

Every test here runs against :func:`~streamkit.testing.plugin.kafka_cluster` (three
KRaft nodes, replication factor 3, ``min.insync.replicas=2``), and leaves it healed.
Each test records its figures (events sent, acknowledged, consumed, lost, duplicates,
outage durations) with the ``figures`` fixture; they are printed at the end of the run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.cluster import KafkaCluster
from streamkit.testing.containers import RegistryContainer
from streamkit.testing.plugin import RegistryEndpoint, TopicFactory

# Shared with the integration tests rather than copied: the example schemas and the
# runner of consumers in threads.
from tests.integration.conftest import ConsumerRunner, consumers, python, schemas

__all__ = ["ConsumerRunner", "consumers", "python", "schemas"]

HERE = Path(__file__).parent
_FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything in this folder injects faults into real services."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with its measured figures (printed in the summary)."""
    found: dict[str, Any] = {}
    yield found
    request.config.stash.setdefault(_FIGURES, {})[request.node.name] = found


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorded = config.stash.get(_FIGURES, {})
    if recorded:
        terminalreporter.section("reliability figures")
        for test, found in recorded.items():
            terminalreporter.write_line(f"{test}: {json.dumps(found)}")


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's replicated cluster, healed after the test whatever it did."""
    yield kafka_cluster
    kafka_cluster.heal()


def cluster_settings_for(cluster: KafkaCluster, registry_url: str, **sections: Any) -> Any:
    """Settings for ``cluster`` and a registry, with a fresh group; ``sections`` add to it."""
    consumer = {"group_id": f"rel-{uuid.uuid4().hex[:12]}", **sections.pop("consumer", {})}
    registry = {"url": registry_url, **sections.pop("schema_registry", {})}
    return load_settings(
        kafka={"bootstrap_servers": cluster.bootstrap_servers, "client_id": "streamkit-rel"},
        schema_registry=registry,
        consumer=consumer,
        **sections,
    )


@pytest.fixture
def cluster_settings(cluster: KafkaCluster, schema_registry: RegistryEndpoint) -> StreamkitSettings:
    """Settings pointing at the replicated cluster and the session's registry."""
    settings: StreamkitSettings = cluster_settings_for(cluster, schema_registry.url)
    return settings


@pytest.fixture
def cluster_topic(cluster: KafkaCluster) -> Callable[..., str]:
    """``cluster_topic(partitions=1)``: a fresh topic replicated on all three nodes."""
    factory = TopicFactory(cluster.admin())

    def create(partitions: int = 1) -> str:
        topic = factory(partitions, prefix="rel", replication_factor=3)
        cluster.wait_in_sync(topic)
        return topic

    return create


@pytest.fixture
def private_registry() -> Iterator[RegistryEndpoint]:
    """A registry of the test's own, free to be stopped (the session's one is shared)."""
    container = RegistryContainer().start()
    try:
        yield RegistryEndpoint(container.url, container)
    finally:
        container.stop()


@pytest.fixture
def spawn_consumer(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn_consumer(python, env, topic, handled_file, *args)`` starts
    ``tests.integration.consume.consumer_proc`` and waits until it has partitions.

    Its log goes to ``<handled_file>.log``, shown when the test fails. Children still
    running after the test are woken (SIGCONT) and killed.
    """
    children: list[subprocess.Popen[str]] = []

    def spawn(
        python: str, env: dict[str, str], topic: str, handled: Path, *args: str
    ) -> subprocess.Popen[str]:
        with handled.with_suffix(".log").open("w") as log:
            child = subprocess.Popen(
                [
                    python,
                    "-m",
                    "tests.integration.consume.consumer_proc",
                    topic,
                    str(handled),
                    *args,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=env["PYTHONPATH"],
            )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", handled.with_suffix(".log").read_text()
        return child

    yield spawn
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)  # a stopped process would not die of SIGKILL
            child.kill()
            child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    for log in tmp_path.glob("*.log"):
        if log.stat().st_size:
            print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-40:]))


class Collector:
    """A handler that records every event id it is given, in order (thread-safe enough:
    one consumer thread appends, the test only reads)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, event: Event) -> None:
        self.ids.append(event.id)

    def has_all(self, wanted: set[str]) -> Callable[[], bool]:
        """A condition for :meth:`ConsumerRunner.wait_for`: every id of ``wanted`` seen."""
        return lambda: len(self.ids) >= len(wanted) and wanted <= set(self.ids)


def consume_all(
    runner: ConsumerRunner,
    settings: StreamkitSettings,
    topic: str,
    wanted: set[str],
    *,
    timeout_s: float = 120.0,
    settle_s: float = 2.0,
    **kwargs: Any,
) -> tuple[Collector, EventConsumer]:
    """Consume ``topic`` from the start until every id of ``wanted`` was handled.

    Waits ``settle_s`` more so that late duplicates would show, then stops the consumer.
    """
    collector = Collector()
    consumer = runner.start(EventConsumer([topic], collector, settings=settings, **kwargs))
    runner.wait_for(collector.has_all(wanted), timeout_s)
    time.sleep(settle_s)
    runner.stop(consumer)
    return collector, consumer
