"""A replicated Kafka cluster in containers, with the faults reliability tests inject.

Three KRaft nodes (by default; broker and controller each) share a cluster id and a
controller quorum; topics default to replication factor 3 and ``min.insync.replicas=2``, so one
node may die without losing an acknowledged record. Every node binds to 127.0.0.1 on
its own ports, which stay the same when a node is restarted, so clients reconnect by
themselves.

Faults act on nodes' containers: :meth:`KafkaCluster.kill` (SIGKILL, a crash),
:meth:`KafkaCluster.stop_nodes` (SIGTERM, an orderly outage), :meth:`KafkaCluster.pause`
(frozen processes: a network partition seen from outside); :meth:`KafkaCluster.start_nodes`,
:meth:`KafkaCluster.unpause` and :meth:`KafkaCluster.heal` undo them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from streamkit.testing.containers import START_TIMEOUT_S, KafkaContainer, new_cluster_id
from streamkit.testing.images import KAFKA, TestKitError, ensure_image
from streamkit.testing.network import LOOPBACK, free_port

__all__ = ["KafkaCluster"]

_HEAP = "-Xms128m -Xmx512m"  # three JVMs on a 2-core machine: small and fixed
_POLL_S = 0.25


def _wait_until(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TestKitError(f"{what} within {timeout_s:.0f} s")
        time.sleep(_POLL_S)


class KafkaCluster:
    """``size`` Kafka KRaft nodes on 127.0.0.1 forming one replicated cluster.

    Args:
        size: number of nodes (all are brokers and controller voters).
        image: Kafka image; default: the one the test kit provides.
        min_insync_replicas: the cluster-wide ``min.insync.replicas``.
        env: extra ``KAFKA_*`` settings for every node (they win over the defaults).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        image: str | None = None,
        min_insync_replicas: int = 2,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        image = image or ensure_image(KAFKA)
        self.cluster_id = new_cluster_id()
        ports = {node_id: free_port() for node_id in range(1, size + 1)}
        voters = ",".join(f"{node_id}@{LOOPBACK}:{port}" for node_id, port in ports.items())
        replication = str(min(3, size))
        defaults = {
            "KAFKA_DEFAULT_REPLICATION_FACTOR": replication,
            "KAFKA_MIN_INSYNC_REPLICAS": str(min(min_insync_replicas, size)),
            "KAFKA_HEAP_OPTS": _HEAP,
            # A dead node is fenced, and its partitions get new leaders, in ~6 s, not ~12 s.
            "KAFKA_BROKER_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_BROKER_HEARTBEAT_INTERVAL_MS": "1000",
            # A restarted node catches up and rejoins the ISR quickly.
            "KAFKA_REPLICA_LAG_TIME_MAX_MS": "10000",
        }
        self.nodes = {
            node_id: KafkaContainer(
                image,
                node_id=node_id,
                cluster_id=self.cluster_id,
                controller_port=port,
                voters=voters,
                env={**defaults, **(env or {})},
            )
            for node_id, port in ports.items()
        }

        self._admin: Any = None

    def __repr__(self) -> str:
        return f"KafkaCluster(bootstrap={self.bootstrap_servers!r})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def bootstrap_servers(self) -> str:
        """Every node's PLAINTEXT address, comma-separated."""
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    def node(self, node_id: int) -> KafkaContainer:
        """The container of node ``node_id``."""
        return self.nodes[node_id]

    # Lifecycle ------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Start every node and wait until all of them are registered brokers."""
        try:
            for node in self.nodes.values():
                node.start(timeout_s=0)  # the quorum needs a majority before any is ready
            for node in self.nodes.values():
                node.wait_ready(timeout_s)
            self.wait_brokers(self.nodes, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove every node's container (and its data)."""
        for node in self.nodes.values():
            node.stop()

    # Metadata -------------------------------------------------------------------

    def admin(self) -> Any:
        """An AdminClient for the cluster (one, kept: its futures die with it)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient(
                {"bootstrap.servers": self.bootstrap_servers, "log_level": 0}  # nodes may be down
            )
        return self._admin

    def _metadata(self, topic: str | None = None, timeout_s: float = 5.0) -> Any:
        return self.admin().list_topics(topic, timeout=timeout_s)

    def live_brokers(self) -> set[int]:
        """Ids of the brokers the cluster metadata lists right now."""
        try:
            return set(self._metadata().brokers)
        except Exception:  # no node answered
            return set()

    def wait_brokers(self, node_ids: Iterable[int], timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the metadata lists exactly the brokers ``node_ids``."""
        wanted = set(node_ids)
        _wait_until(
            f"brokers {sorted(wanted)} were not the live set",
            lambda: self.live_brokers() == wanted,
            timeout_s,
        )

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``/``partition`` (-1 while there is none)."""
        return int(self._metadata(topic).topics[topic].partitions[partition].leader)

    def in_sync(self, topic: str) -> bool:
        """Whether every partition of ``topic`` has all its replicas in sync."""
        try:
            partitions = self._metadata(topic).topics[topic].partitions.values()
        except Exception:
            return False
        return bool(partitions) and all(
            p.leader >= 0 and set(p.isrs) == set(p.replicas) for p in partitions
        )

    def wait_in_sync(self, topic: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until every replica of every partition of ``topic`` is in sync."""
        _wait_until(
            f"topic {topic!r} did not get all replicas in sync",
            lambda: self.in_sync(topic),
            timeout_s,
        )

    # Faults ---------------------------------------------------------------------

    def _container(self, node_id: int) -> Any:
        return self.nodes[node_id].get_wrapped_container()

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` (a crash: no clean shutdown, no flush)."""
        self._container(node_id).kill()

    def stop_nodes(self, *node_ids: int, timeout_s: int = 10) -> None:
        """Stop nodes (default: all) at once: SIGTERM, SIGKILL after ``timeout_s``.

        In parallel, because the last nodes of a cluster without a quorum cannot shut
        down cleanly and would each wait for the whole timeout in turn.
        """
        ids = node_ids or tuple(self.nodes)
        with ThreadPoolExecutor(len(ids)) as pool:
            list(pool.map(lambda n: self._container(n).stop(timeout=timeout_s), ids))

    def start_nodes(self, *node_ids: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start stopped or killed nodes (default: all) again and wait until they serve.

        They keep their ports and data, so clients reconnect by themselves.
        """
        ids = node_ids or tuple(self.nodes)
        for node_id in ids:
            self._container(node_id).start()
        for node_id in ids:  # started first: a node is ready only once a quorum runs
            self.nodes[node_id].wait_ready(timeout_s)

    def pause(self, node_id: int) -> None:
        """Freeze every process of node ``node_id`` (its peers see it go silent)."""
        self._container(node_id).pause()

    def unpause(self, node_id: int) -> None:
        """Let a paused node run on."""
        self._container(node_id).unpause()

    def heal(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Undo every fault: unpause and start nodes, wait until all are live brokers."""
        down = []
        for node_id in self.nodes:
            container = self._container(node_id)
            container.reload()
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                down.append(node_id)
        if down:
            self.start_nodes(*down, timeout_s=timeout_s)
        self.wait_brokers(self.nodes, timeout_s)
