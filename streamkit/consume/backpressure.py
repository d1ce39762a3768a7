"""Backpressure: a bound on the messages held, and the partitions paused to keep it.

The pipeline holds a message from poll until its offset is finished. At most
``max_in_flight`` are held: the loop takes no more than the room left, and once the
bound is reached it takes nothing until the held count falls to the low-water mark (half
the bound), so it then polls in batches rather than message by message.

While full, the loop waits for handlers to finish. If that lasts longer than
:data:`PAUSE_AFTER_S`, or while a dependency is down, it pauses the partitions and goes
on polling (which serves rebalances and keeps the member in its group however long
handlers take); they are resumed when room frees. Pausing is not done at once because
librdkafka drops a paused partition's pre-fetched messages, to fetch them again on
resume. Partitions the application paused itself (:meth:`Backpressure.pause_by_user`)
stay paused until it resumes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

__all__ = ["PAUSE_AFTER_S", "Backpressure"]

log = logging.getLogger(__name__)

PAUSE_AFTER_S = 0.5
TopicPartitionKey = tuple[str, int]


class Backpressure:
    """Room left under ``limit`` and which partitions to pause.

    Args:
        client: the confluent-kafka consumer (pause/resume).
        limit: most messages held (``max_in_flight``).
        barrier: take nothing while anything is held (a transaction per batch).
    """

    def __init__(self, client: Any, limit: int, *, barrier: bool = False) -> None:
        self._client = client
        self.limit = limit
        self.low_water = limit // 2
        self._barrier = barrier
        self._full_since: float | None = None
        self._paused: set[TopicPartitionKey] = set()  # paused by the pipeline
        self._by_user: set[TopicPartitionKey] = set()

    def __repr__(self) -> str:
        return (
            f"Backpressure(limit={self.limit}, full={self._full_since is not None}, "
            f"paused={len(self._paused)})"
        )

    @property
    def paused(self) -> int:
        """Partitions paused now (by the pipeline or the application)."""
        return len(self._paused | self._by_user)

    def room(self, held: int) -> int:
        """How many more messages may be taken now (0 while full)."""
        if self._full_since is not None:
            if held > (0 if self._barrier else self.low_water):
                return 0
            self._full_since = None
        if self._barrier and held:
            self._full_since = time.monotonic()
            return 0
        room = self.limit - held
        if room <= 0:
            self._full_since = time.monotonic()
            return 0
        return room

    def stalled(self) -> bool:
        """Full for longer than :data:`PAUSE_AFTER_S`: time to pause and keep polling."""
        since = self._full_since
        return since is not None and time.monotonic() - since >= PAUSE_AFTER_S

    def apply(self, assigned: Iterable[TopicPartitionKey], pause: bool) -> None:
        """Pause every assigned partition (``pause``) or resume those the pipeline paused."""
        if pause:
            wanted = set(assigned) - self._by_user
            self._set(wanted - self._paused, paused=True)
            self._paused |= wanted
        elif self._paused:
            self._set(self._paused, paused=False)
            self._paused.clear()

    def pause_by_user(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """The application paused these; the pipeline leaves them paused."""
        keys = set(partitions)
        self._set(keys - self._paused, paused=True)
        self._by_user |= keys
        self._paused -= keys

    def resume_by_user(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """The application resumed these (those the pipeline holds stay paused)."""
        keys = set(partitions) & self._by_user
        self._by_user -= keys
        self._set(keys - self._paused, paused=False)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """The partitions are being revoked: resume them (librdkafka keeps a pause across
        a re-assignment) and forget them."""
        keys = set(partitions) & (self._paused | self._by_user)
        self._set(keys, paused=False)
        self._paused -= keys
        self._by_user -= keys

    def _set(self, keys: Iterable[TopicPartitionKey], *, paused: bool) -> None:
        partitions = [TopicPartition(topic, partition) for topic, partition in keys]
        if not partitions:
            return
        try:
            if paused:
                self._client.pause(partitions)
            else:
                self._client.resume(partitions)
        except KafkaException as exc:  # a partition revoked meanwhile
            log.info("%s partitions: %s", "pause" if paused else "resume", exc.args[0].str())
