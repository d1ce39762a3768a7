"""Real Kafka (KRaft) brokers and a schema registry in containers.

Containers run with host networking and bind every listener to 127.0.0.1 on a free
port, so that tests never touch any address but loopback.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Self

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from streamkit.testing.images import KAFKA, REGISTRY, TestKitError, ensure_image
from streamkit.testing.network import LOOPBACK, free_port

__all__ = [
    "KafkaContainer",
    "KafkaListener",
    "RegistryContainer",
    "new_cluster_id",
    "wait_until",
]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one starting with ``-``: command-line
    tools (``kafka-storage format --cluster-id``) would read it as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@contextmanager
def _without_reaper() -> Iterator[None]:
    """Start containers without testcontainers' Ryuk reaper, scoped to the block.

    The reaper's image cannot be pulled on machines without an image registry, and the
    test kit removes its containers itself. ``TESTCONTAINERS_RYUK_DISABLED``, when the
    user set it, still decides; no environment variable is written.
    """
    previous = testcontainers_config.ryuk_disabled
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True
    try:
        yield
    finally:
        testcontainers_config.ryuk_disabled = previous


def wait_until(
    what: str, ready: Callable[[], bool], container: DockerContainer, timeout_s: float
) -> None:
    """Poll ``ready()`` until it holds; raise TestKitError with the container's last log
    lines when it exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            break
        time.sleep(0.5)
    stdout, stderr = container.get_logs()
    tail = (stdout + stderr).decode(errors="replace").splitlines()[-30:]
    status = container.get_wrapped_container().status
    raise TestKitError(
        f"{what} was not ready within {timeout_s:.0f} s (container status: {status}).\n"
        "Last log lines:\n  " + "\n  ".join(tail) + "\n"
        "Hint: check memory and that the ports are free; the full log is in `docker logs`."
    )


@dataclass(frozen=True)
class KafkaListener:
    """A listener of the broker: its name, security protocol and port on 127.0.0.1."""

    name: str
    protocol: str
    port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"{LOOPBACK}:{self.port}"


class KafkaContainer(DockerContainer):
    """One Apache Kafka node in KRaft combined mode (broker and controller).

    Every node has a ``PLAINTEXT`` listener (used between brokers and for the readiness
    check) and may have more (``SASL_PLAINTEXT``, ``SSL``, ...) for secured tests.
    Several nodes form a cluster when given the same ``cluster_id`` and ``voters``.

    Args:
        image: image name; default: the one :func:`ensure_image` provides.
        node_id: KRaft node id.
        cluster_id: shared by all nodes of a cluster.
        controller_port: this node's controller listener port.
        voters: ``id@127.0.0.1:port,...``; default: this node alone.
        listeners: additional listeners.
        env: extra ``KAFKA_*`` settings (they win over the defaults).
    """

    def __init__(
        self,
        image: str | None = None,
        *,
        node_id: int = 1,
        cluster_id: str | None = None,
        controller_port: int | None = None,
        voters: str | None = None,
        listeners: tuple[KafkaListener, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(image or ensure_image(KAFKA))
        self.node_id = node_id
        self.cluster_id = cluster_id or new_cluster_id()
        self.controller_port = controller_port or free_port()
        self.plaintext = KafkaListener("PLAINTEXT", "PLAINTEXT")
        self.listeners = (self.plaintext, *listeners)
        voters = voters or f"{node_id}@{LOOPBACK}:{self.controller_port}"
        replication = str(min(3, voters.count("@")))
        defaults = {
            "KAFKA_NODE_ID": str(node_id),
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": ",".join(
                [f"{li.name}://{li.address}" for li in self.listeners]
                + [f"CONTROLLER://{LOOPBACK}:{self.controller_port}"]
            ),
            "KAFKA_ADVERTISED_LISTENERS": ",".join(
                f"{li.name}://{li.address}" for li in self.listeners
            ),
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": ",".join(
                [f"{li.name}:{li.protocol}" for li in self.listeners] + ["CONTROLLER:PLAINTEXT"]
            ),
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": voters,
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": replication,
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": replication,
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": str(min(2, int(replication))),
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": replication,
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": str(min(2, int(replication))),
            "KAFKA_LOG_DIRS": f"/tmp/kraft-logs-{node_id}",  # noqa: S108 (inside the container)
            "KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m",
            "CLUSTER_ID": self.cluster_id,
        }
        self.with_envs(**{**defaults, **(env or {})})
        self.with_kwargs(network_mode="host")

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT bootstrap address (``127.0.0.1:port``)."""
        return self.plaintext.address

    def listener(self, name: str) -> KafkaListener:
        """The listener called ``name``."""
        for candidate in self.listeners:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def is_ready(self) -> bool:
        """Whether the broker answers a metadata request on its PLAINTEXT listener."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "socket.connection.setup.timeout.ms": 1000,
                "log_level": 0,  # refused connections are expected while the broker starts
            }
        )
        try:
            metadata = admin.list_topics(timeout=1)
        except Exception:
            return False
        return len(metadata.brokers) > 0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Start the node; with ``timeout_s`` 0, return without waiting (cluster nodes)."""
        with _without_reaper():
            super().start()
        if timeout_s:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the broker answers, or raise TestKitError with its logs."""
        wait_until(f"Kafka node {self.node_id}", self.is_ready, self, timeout_s)


class RegistryContainer(DockerContainer):
    """A schema registry speaking the Confluent REST API on 127.0.0.1.

    Apicurio Registry (its ``/apis/ccompat/v7`` API) by default; Confluent Schema
    Registry when the image is ``confluentinc/cp-schema-registry`` (it then needs
    ``kafka_bootstrap`` for its storage topic). ``env`` adds settings (e.g. Apicurio's
    OIDC authentication).
    """

    def __init__(
        self,
        image: str | None = None,
        *,
        kafka_bootstrap: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        image = image or ensure_image(REGISTRY)
        super().__init__(image)
        self.port = free_port()
        self.confluent = "cp-schema-registry" in image
        if self.confluent:
            if kafka_bootstrap is None:
                raise TestKitError("Confluent Schema Registry needs kafka_bootstrap")
            self.with_envs(
                SCHEMA_REGISTRY_HOST_NAME=LOOPBACK,
                SCHEMA_REGISTRY_LISTENERS=f"http://{LOOPBACK}:{self.port}",
                SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS=f"PLAINTEXT://{kafka_bootstrap}",
            )
        else:
            self.with_envs(
                QUARKUS_HTTP_HOST=LOOPBACK,
                QUARKUS_HTTP_PORT=str(self.port),
                JAVA_OPTS_APPEND="-Xms128m -Xmx512m",
            )
        self.with_envs(**(env or {}))
        self.with_kwargs(network_mode="host")

    @property
    def url(self) -> str:
        """Base URL of the Confluent-compatible API."""
        base = f"http://{LOOPBACK}:{self.port}"
        return base if self.confluent else f"{base}/apis/ccompat/v7"

    def is_ready(self) -> bool:
        """Whether ``GET /subjects`` answers 200 (or 401: a registry that requires a token)."""
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Start the registry and wait until it answers."""
        with _without_reaper():
            super().start()
        wait_until("schema registry", self.is_ready, self, timeout_s)
        return self
