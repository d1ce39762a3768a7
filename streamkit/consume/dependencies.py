"""The dependency gate: a registry, dedup store or dead-letter topic that fails is waited out.

When a dependency fails (the registry cannot be reached to resolve a writer schema, the
dedup store refuses a claim or a mark, a dead letter is not acknowledged), the pipeline
calls :meth:`DependencyGate.failed`. The gate logs once per change of state (down, then
back up with how long it was down), exports it (``streamkit_dependency_up``), makes the
consumer not ready, and says when to try again: exponential backoff from
``retry_backoff_ms``, capped at ``retry_backoff_max_ms``. Meanwhile the pipeline pauses
its partitions and keeps polling, so the member stays in its group; the messages waiting
on the dependency keep their place and their lanes. Nothing is lost or dead-lettered
because a dependency was down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamkit.consume.processing import ConsumerStats
from streamkit.settings import ConsumerSettings

if TYPE_CHECKING:
    from streamkit.observability.metrics import ConsumerMetrics

__all__ = ["DEAD_LETTER_TOPIC", "DEDUP_STORE", "DEPENDENCIES", "SCHEMA_REGISTRY", "DependencyGate"]

log = logging.getLogger(__name__)

SCHEMA_REGISTRY = "schema_registry"
DEDUP_STORE = "dedup_store"
DEAD_LETTER_TOPIC = "dead_letter_topic"
DEPENDENCIES = (SCHEMA_REGISTRY, DEDUP_STORE, DEAD_LETTER_TOPIC)


@dataclass
class _Outage:
    since: float
    delay_s: float
    retry_at: float
    failures: int = 1


class DependencyGate:
    """Which dependencies are down, since when, and when to try each again.

    Args:
        settings: the backoff (``retry_backoff_ms``, ``retry_backoff_max_ms``).
        who: names the consumer in log records.
        observer: receives ``dependency(name, up)`` on every change.
        stats: ``dependency_outages`` is counted here.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        who: str,
        observer: ConsumerMetrics,
        stats: ConsumerStats,
    ) -> None:
        self._first_s = max(settings.retry_backoff_ms, 10) / 1000
        self._cap_s = max(settings.retry_backoff_max_ms / 1000, self._first_s)
        self._who = who
        self._observer = observer
        self._stats = stats
        self._down: dict[str, _Outage] = {}
        for name in DEPENDENCIES:
            observer.dependency(name, up=True)

    def __repr__(self) -> str:
        return f"DependencyGate(down={sorted(self._down)})"

    def is_down(self, name: str | None = None) -> bool:
        """Whether ``name`` (default: any dependency) is down."""
        return bool(self._down) if name is None else name in self._down

    def down(self) -> list[str]:
        """The dependencies that are down."""
        return sorted(self._down)

    def failed(self, name: str, error: BaseException) -> None:
        """A call to ``name`` failed: it is down (logged on the change) until :meth:`ok`."""
        now = time.monotonic()
        outage = self._down.get(name)
        if outage is None:
            self._stats.dependency_outages += 1
            self._down[name] = _Outage(now, self._first_s, now + self._first_s)
            self._observer.dependency(name, up=False)
            log.warning(
                "%s: %s is down (%s); pausing, retrying with backoff up to %.3g s",
                self._who,
                name,
                error,
                self._cap_s,
            )
            return
        outage.failures += 1
        outage.delay_s = min(outage.delay_s * 2, self._cap_s)
        outage.retry_at = now + outage.delay_s
        log.debug("%s: %s still down (%s)", self._who, name, error)

    def ok(self, name: str) -> None:
        """A call to ``name`` succeeded: it is up (logged when it was down)."""
        outage = self._down.pop(name, None)
        if outage is not None:
            self._observer.dependency(name, up=True)
            log.warning(
                "%s: %s is back after %.1f s (%d failed attempts); resuming",
                self._who,
                name,
                time.monotonic() - outage.since,
                outage.failures,
            )

    def due(self, name: str) -> bool:
        """Whether ``name`` is up, or down and its next attempt is due."""
        outage = self._down.get(name)
        return outage is None or time.monotonic() >= outage.retry_at

    def next_attempt_in(self) -> float | None:
        """Seconds until the earliest due attempt (None when all are up)."""
        if not self._down:
            return None
        return max(0.0, min(o.retry_at for o in self._down.values()) - time.monotonic())
