"""Broker-less Kafka for tests: librdkafka's built-in mock cluster, shared by the process.

librdkafka ships a mock cluster that speaks the real Kafka protocol on loopback sockets,
in-process, with no Docker and no JVM: produce, fetch, consumer groups (join, sync,
commit, rebalances), idempotent and transactional producers. Set through
``test.mock.num.brokers`` it lives inside one client and dies with it, so this module
creates the cluster on its own librdkafka handle (the C functions
``rd_kafka_mock_cluster_new`` and ``rd_kafka_mock_cluster_bootstraps`` of the librdkafka
that confluent-kafka loads) and hands its bootstrap address to every client of the
process, and of child processes (it listens on ``127.0.0.1``).

What the mock cannot do: TLS, SASL, ACLs, the admin API (create/alter/delete topics and
partitions, topic configs, describe configs; :meth:`MockKafka.create_topic` creates
topics instead), a replicated cluster with broker faults, and log compaction or
retention. See ``docs/how-to/testing.md``.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Self

from streamkit.testing.images import TestKitError

__all__ = ["MOCK_LIMITS", "MockKafka"]

MOCK_LIMITS = (
    "TLS, SASL and ACLs, the admin API (create/alter topics, topic configs), "
    "a replicated cluster with broker faults, log compaction and retention"
)

_RD_KAFKA_PRODUCER = 0
_lock = threading.Lock()
_library: Any = None


def _librdkafka() -> Any:
    """The librdkafka that confluent-kafka loaded, with the mock functions typed."""
    global _library
    with _lock:
        if _library is not None:
            return _library
        import confluent_kafka.cimpl as cimpl

        # dlsym on the extension's handle also searches the libraries it links, wherever
        # the wheel put librdkafka (confluent_kafka.libs/, .dylibs/, the system's).
        lib = ctypes.CDLL(cimpl.__file__)
        try:
            signatures: dict[str, tuple[Any, list[Any]]] = {
                "rd_kafka_conf_new": (ctypes.c_void_p, []),
                "rd_kafka_conf_set": (
                    ctypes.c_int,
                    [
                        ctypes.c_void_p,
                        ctypes.c_char_p,
                        ctypes.c_char_p,
                        ctypes.c_char_p,
                        ctypes.c_size_t,
                    ],
                ),
                "rd_kafka_new": (
                    ctypes.c_void_p,
                    [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t],
                ),
                "rd_kafka_destroy": (None, [ctypes.c_void_p]),
                "rd_kafka_mock_cluster_new": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
                "rd_kafka_mock_cluster_destroy": (None, [ctypes.c_void_p]),
                "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [ctypes.c_void_p]),
                "rd_kafka_mock_topic_create": (
                    ctypes.c_int,
                    [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
                ),
                "rd_kafka_mock_group_initial_rebalance_delay_ms": (
                    None,
                    [ctypes.c_void_p, ctypes.c_int32],
                ),
            }
            for name, (restype, argtypes) in signatures.items():
                function = getattr(lib, name)
                function.restype, function.argtypes = restype, argtypes
        except AttributeError as exc:
            raise TestKitError(
                f"the librdkafka loaded by confluent-kafka has no mock cluster ({exc}); "
                "Hint: install confluent-kafka's own wheel, or run the tests with "
                "--streamkit-kafka=container"
            ) from None
        _library = lib
        return lib


class MockKafka:
    """One in-process mock Kafka cluster on 127.0.0.1 (``with MockKafka() as kafka``).

    Args:
        brokers: number of mock brokers.
    """

    def __init__(self, brokers: int = 1) -> None:
        self.brokers = brokers
        self._handle: int | None = None
        self._cluster: int | None = None
        self.bootstrap_servers = ""

    def __repr__(self) -> str:
        return f"MockKafka(bootstrap_servers={self.bootstrap_servers!r})"

    def start(self) -> Self:
        """Create the cluster; clients connect to :attr:`bootstrap_servers`."""
        lib = _librdkafka()
        error = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The handle only carries the cluster: it never connects, so keep it quiet.
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", error, len(error))
        handle = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, error, len(error))
        if not handle:
            raise TestKitError(f"cannot create the mock cluster's handle: {error.value.decode()}")
        cluster = lib.rd_kafka_mock_cluster_new(handle, self.brokers)
        if not cluster:
            lib.rd_kafka_destroy(handle)
            raise TestKitError("librdkafka could not create a mock cluster")
        self._handle, self._cluster = handle, cluster
        # A real test broker runs with group.initial.rebalance.delay.ms=0 too.
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0)
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
        return self

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create ``name`` with ``partitions`` (the mock has no CreateTopics API)."""
        if self._cluster is None:
            raise TestKitError("the mock cluster is not started")
        code = _librdkafka().rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, replication_factor
        )
        if code:
            raise TestKitError(f"the mock cluster refused topic {name!r} (error {code})")

    def stop(self) -> None:
        """Destroy the cluster (clients still connected see it go away)."""
        lib = _librdkafka()
        if self._cluster is not None:
            lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._cluster = None
        if self._handle is not None:
            lib.rd_kafka_destroy(self._handle)
            self._handle = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
