"""``mock://`` schema registry URLs: confluent-kafka's in-memory registry, one per scope.

confluent-kafka's ``MockSchemaRegistryClient`` keeps its schemas in the client object,
so two clients for one ``mock://`` URL would hand out unrelated ids. Here every
``mock://<scope>`` URL of the process maps to one shared client (like Confluent's Java
``MockSchemaRegistry.getClientForScope``), so a producer and a consumer built from the same
settings agree on ids. The store is per process: a child process sees an empty one.

The mock keeps compatibility levels but does not check compatibility: registering an
incompatible schema succeeds, and :meth:`~streamkit.serde.registry.SchemaRegistry.check`
refuses to answer rather than claim a result.
"""

from __future__ import annotations

import threading
from typing import Any

try:  # confluent-kafka >= 2.10 keeps the sync client under _sync
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )
except ImportError:  # pragma: no cover - older releases
    from confluent_kafka.schema_registry.mock_schema_registry_client import (  # type: ignore[no-redef]
        MockSchemaRegistryClient,
    )

__all__ = ["MOCK_SCHEME", "ScopedMockRegistryClient", "drop_scope", "is_mock_url", "mock_client"]

MOCK_SCHEME = "mock://"

_lock = threading.Lock()
_scopes: dict[str, ScopedMockRegistryClient] = {}


def is_mock_url(url: str | None) -> bool:
    """Whether ``url`` names an in-memory registry scope."""
    return bool(url) and str(url).startswith(MOCK_SCHEME)


class ScopedMockRegistryClient(MockSchemaRegistryClient):
    """The in-memory registry of one scope, with compatibility levels kept (not checked)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self._levels: dict[str | None, str] = {None: "BACKWARD"}

    def get_compatibility(self, subject_name: str | None = None) -> str:
        with _lock:
            return self._levels.get(subject_name) or self._levels[None]

    def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> Any:
        with _lock:
            self._levels[subject_name] = str(level)
        return {"compatibility": level}

    def close(self) -> None:
        """Kept open: the scope outlives each face that uses it (see :func:`drop_scope`)."""


def mock_client(url: str) -> ScopedMockRegistryClient:
    """The process-wide client of the ``mock://`` scope ``url``."""
    with _lock:
        client = _scopes.get(url)
        if client is None:
            client = _scopes[url] = ScopedMockRegistryClient({"url": url})
        return client


def drop_scope(url: str) -> None:
    """Forget the schemas of ``url`` (the next :func:`mock_client` starts empty)."""
    with _lock:
        _scopes.pop(url, None)
