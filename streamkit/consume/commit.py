"""The commit stage: where finished offsets go.

The pipeline finishes offsets; a commit stage turns them into commits. Two exist:

- :class:`GroupCommit` (EventConsumer, AsyncEventConsumer): every
  :data:`COMMIT_INTERVAL_S`, an asynchronous commit of the partitions whose watermark
  moved (with the offsets finished above it in the metadata, at most every
  :data:`METADATA_INTERVAL_S` when only those changed); a synchronous one when
  partitions are revoked and when the consumer stops. An asynchronous commit that
  fails (librdkafka reports it to :meth:`GroupCommit.on_commit`, e.g. during a
  rebalance) is made again at the next turn, even if the watermark did not move.
- the transactional processor's stage (in :mod:`streamkit.consume.transactional`):
  the watermarks go into the transaction with its outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamkit.client.diagnose import translate_kafka_error
from streamkit.consume.offsets import OffsetTrackers, PartitionTracker, commits
from streamkit.consume.processing import ConsumerStats

__all__ = [
    "COMMIT_INTERVAL_S",
    "METADATA_INTERVAL_S",
    "TRANSIENT_COMMIT_ERRORS",
    "CommitStage",
    "GroupCommit",
]

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.1
METADATA_INTERVAL_S = 1.0
# Commit failures a group member meets around rebalances and coordinator moves.
TRANSIENT_COMMIT_ERRORS = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._WAIT_COORD,
        KafkaError._TIMED_OUT,
        # The member was fenced (e.g. frozen past session.timeout.ms); it rejoins, and the
        # partitions' new owner resumes from the last commit.
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._NO_OFFSET,
    }
)


class CommitStage(Protocol):
    """Turns finished offsets into commits."""

    def begin_batch(self, messages: int) -> None:
        """``messages`` polled messages enter the pipeline (a transaction begins here)."""
        ...

    def turn(self, trackers: OffsetTrackers, held: int) -> None:
        """One loop turn ended; ``held`` messages are not finished."""
        ...

    def hand_over(self, trackers: Sequence[PartitionTracker], held: int) -> None:
        """These partitions are being revoked (or the consumer stops): commit now."""
        ...


class GroupCommit:
    """Commits watermarks to the consumer group.

    Args:
        client: the confluent-kafka consumer.
        trackers: the pipeline's offset trackers.
        group: names the group in errors and logs.
        stats: ``commits`` is counted here.
        manual: commit only when :meth:`commit_now` is called (``commit="manual"``).
    """

    def __init__(
        self,
        client: Any,
        trackers: OffsetTrackers,
        group: str,
        stats: ConsumerStats,
        *,
        manual: bool,
    ) -> None:
        self.client = client
        self._trackers = trackers
        self._group = group
        self._stats = stats
        self.manual = manual
        self._next_at = 0.0
        self._next_metadata_at = 0.0

    def __repr__(self) -> str:
        return f"GroupCommit(group={self._group!r}, manual={self.manual})"

    def begin_batch(self, messages: int) -> None:
        pass

    def turn(self, trackers: OffsetTrackers, held: int) -> None:
        if self.manual:
            return
        now = time.monotonic()
        if now < self._next_at:
            return
        self._next_at = now + COMMIT_INTERVAL_S
        finished_above = now >= self._next_metadata_at
        if finished_above:
            self._next_metadata_at = now + METADATA_INTERVAL_S
        self._commit(commits(trackers.all(), finished_above=finished_above), asynchronous=True)

    def hand_over(self, trackers: Sequence[PartitionTracker], held: int) -> None:
        if not self.manual:
            self.commit_now(trackers)

    def commit_now(self, trackers: Sequence[PartitionTracker]) -> None:
        """Commit the watermarks of ``trackers`` synchronously (even when unchanged)."""
        self._commit(commits(trackers, force=True), asynchronous=False)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit (served by poll, on the poll thread): the
        partitions whose commit failed are committed again at the next turn."""
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not failed:
            return
        reason = error if error is not None else failed[0].error
        log.info(
            "consumer %s: commit of %d partitions failed (%s); committing them again",
            self._group,
            len(failed),
            reason.str() if reason is not None else "?",
        )
        for tp in failed:
            tracker = self._trackers.get(tp.topic, tp.partition)
            if tracker is not None:
                tracker.commit_failed(tp.offset)

    def _commit(
        self, found: list[tuple[PartitionTracker, TopicPartition]], *, asynchronous: bool
    ) -> None:
        if not found:
            return
        try:
            self.client.commit(offsets=[tp for _, tp in found], asynchronous=asynchronous)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in TRANSIENT_COMMIT_ERRORS or error.retriable():
                # Not recorded as committed: the next commit takes them.
                log.info("consumer %s: commit deferred: %s", self._group, error.str())
                return
            raise translate_kafka_error(error, operation="commit", group=self._group) from exc
        self._stats.commits += 1
        for tracker, tp in found:
            tracker.mark_committed(tp.offset)
