"""Rebalance callbacks: partitions come and go without loss or a second effect.

- **assign**: a tracker per new partition, starting at its committed offset; the commit
  metadata tells which offsets above it the previous owner had already finished, and
  those are skipped (see :mod:`streamkit.consume.offsets`).
- **revoke**: the pipeline stops dispatching the revoked partitions, drops their works
  that have not started (releasing their dedup claims, so the next owner claims them at
  once), waits for their handlers in flight (bounded by ``drain_timeout_ms``, serving
  completions meanwhile), commits their watermark synchronously, and lets them go. Under
  cooperative-sticky assignment the other partitions keep running throughout.
- **lost** (the member was evicted or fenced; the partitions already belong to another
  member): their waiting works are dropped and nothing is committed.

A message of a partition let go by a callback of the poll that read it (a poll serves
callbacks between the messages it gathers) is ignored (``stats.not_owned``): the next
owner reads it from the commit.

Late results of a partition let go (a handler that outlived the drain) never touch the
offsets of a later assignment of it, though their dedup marks are still written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from streamkit.consume.liveness import Liveness
from streamkit.consume.offsets import OffsetTrackers, PartitionTracker, decode_finished
from streamkit.consume.processing import ConsumerStats

if TYPE_CHECKING:
    from streamkit.observability.metrics import ConsumerMetrics

__all__ = ["COMMITTED_TIMEOUT_S", "RebalanceHook", "Rebalancer"]

log = logging.getLogger(__name__)

COMMITTED_TIMEOUT_S = 10.0
RebalanceHook = Callable[[list[TopicPartition]], None]
TopicPartitionKey = tuple[str, int]


class PartitionOwner(Protocol):
    """What the rebalance callbacks ask of the pipeline."""

    def let_go(self, partitions: set[TopicPartitionKey], *, commit: bool) -> None:
        """Stop working on ``partitions``: drop, drain and commit (``commit``), forget."""
        ...


class Rebalancer:
    """The ``on_assign``/``on_revoke``/``on_lost`` callbacks of one pipeline.

    Args:
        owner: the pipeline (it drains and commits revoked partitions).
        trackers: the pipeline's offset trackers.
        group: names the group in logs.
        stats, observer, liveness: where rebalances are counted and reported.
        on_assign, on_revoke: the application's hooks, called after streamkit's work.
    """

    def __init__(
        self,
        owner: PartitionOwner,
        trackers: OffsetTrackers,
        *,
        group: str,
        stats: ConsumerStats,
        observer: ConsumerMetrics,
        liveness: Liveness,
        on_assign: RebalanceHook | None = None,
        on_revoke: RebalanceHook | None = None,
    ) -> None:
        self._owner = owner
        self._trackers = trackers
        self._group = group
        self._stats = stats
        self._observer = observer
        self._liveness = liveness
        self._user_on_assign = on_assign
        self._user_on_revoke = on_revoke
        self.assignment: set[TopicPartitionKey] = set()

    def __repr__(self) -> str:
        return f"Rebalancer(group={self._group!r}, assigned={len(self.assignment)})"

    def on_assign(self, client: Any, partitions: list[TopicPartition]) -> None:
        """Track the new partitions from their committed offsets."""
        self._stats.rebalances += 1
        self._observer.rebalance("assign")
        self._liveness.assigned()
        for tp in self._committed(client, partitions):
            committed = tp.offset if tp.offset >= 0 else None
            finished = decode_finished(tp.offset, tp.metadata) if committed is not None else []
            self._trackers.add(PartitionTracker(tp.topic, tp.partition, committed, finished))
        self.assignment.update((tp.topic, tp.partition) for tp in partitions)
        if self._user_on_assign:
            self._user_on_assign(partitions)

    def _committed(self, client: Any, partitions: list[TopicPartition]) -> list[TopicPartition]:
        if not partitions:
            return []
        try:
            found: list[TopicPartition] = client.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            # Without it nothing is skipped: finished offsets are handled again (and a
            # dedup store, if any, skips them).
            log.info("consumer %s: committed offsets unknown: %s", self._group, exc.args[0].str())
            return [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        return found

    def on_revoke(self, _client: Any, partitions: list[TopicPartition]) -> None:
        """Drain the revoked partitions and commit their watermark before they go."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._owner.let_go(keys, commit=True)
        self._observer.rebalance("revoke")
        self.assignment -= keys
        if self._user_on_revoke:
            self._user_on_revoke(partitions)

    def on_lost(self, _client: Any, partitions: list[TopicPartition]) -> None:
        """Lost partitions already belong to another member: drop, never commit."""
        log.warning("consumer %s lost %d partitions", self._group, len(partitions))
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._liveness.lost()
        self._owner.let_go(keys, commit=False)
        self._observer.rebalance("lost")
        self.assignment -= keys
