"""Per-partition offset tracking: what is finished, the watermark, and what to commit.

Messages of a partition finish out of order when handlers run concurrently. A
:class:`PartitionTracker` keeps the polled offsets that are not finished yet, in poll
order, and the finished ones above the lowest unfinished offset. Its *watermark* is that
lowest unfinished offset (or, when everything polled is finished, the last one + 1):
every message below it is finished, so it is the offset to commit. Adding and finishing
an offset cost O(1) amortised.

Like Confluent's Parallel Consumer, the commit also carries the offsets already finished
*above* the watermark, run-length encoded in the commit's metadata string
(:func:`encode_finished`, bounded to :data:`MAX_METADATA_CHARS`). A member that is
assigned the partition later (after a rebalance or a crash) reads it back
(:func:`decode_finished`) and skips those offsets instead of handling them again. A
truncated encoding only means that some finished offsets are handled again: never that
an unfinished one is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from confluent_kafka import TopicPartition

__all__ = [
    "MAX_METADATA_CHARS",
    "METADATA_PREFIX",
    "OffsetTrackers",
    "PartitionTracker",
    "commits",
    "decode_finished",
    "encode_finished",
]

METADATA_PREFIX = "sk1:"
# Kafka's offset.metadata.max.bytes defaults to 4096; stay well below it.
MAX_METADATA_CHARS = 3000
TopicPartitionKey = tuple[str, int]


def _runs(watermark: int, finished: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Runs ``(first, last)`` of consecutive offsets above ``watermark``, ascending."""
    first = last = -1
    for offset in sorted(o for o in finished if o > watermark):
        if offset == last + 1 and first >= 0:
            last = offset
            continue
        if first >= 0:
            yield first, last
        first = last = offset
    if first >= 0:
        yield first, last


def encode_finished(watermark: int, finished: Iterable[int]) -> str:
    """The offsets finished above ``watermark``, as commit metadata.

    Runs of consecutive finished offsets become ``gap.length`` tokens in hex, where
    ``gap`` counts from the end of the previous run (from ``watermark`` for the first):
    watermark 100 with 101-103 and 110 finished is ``sk1:1.3,6.1``. Runs that do not fit
    in :data:`MAX_METADATA_CHARS` are left out (their offsets are handled again).
    """
    tokens: list[str] = []
    size = len(METADATA_PREFIX)
    position = watermark
    for first, last in _runs(watermark, finished):
        token = f"{first - position:x}.{last - first + 1:x}"
        size += len(token) + 1
        if size > MAX_METADATA_CHARS:
            break
        tokens.append(token)
        position = last + 1
    return METADATA_PREFIX + ",".join(tokens) if tokens else ""


def decode_finished(watermark: int, metadata: str | None) -> list[tuple[int, int]]:
    """The finished ranges ``[(first, last), ...]`` above ``watermark`` in ``metadata``.

    Anything that is not streamkit's encoding (another client's metadata, garbage)
    yields no range: those offsets are simply handled again.
    """
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return []
    ranges: list[tuple[int, int]] = []
    position = watermark
    try:
        for token in metadata[len(METADATA_PREFIX) :].split(","):
            gap, _, length = token.partition(".")
            first = position + int(gap, 16)
            count = int(length, 16)
            if first < position or count <= 0:
                return []
            ranges.append((first, first + count - 1))
            position = first + count
    except ValueError:
        return []
    return ranges


class PartitionTracker:
    """Offsets of one partition between poll and commit.

    Args:
        topic, partition: the partition tracked.
        committed: the offset committed when the partition was assigned (its next
            message), or None when unknown.
        finished_ranges: offset ranges a previous owner finished above ``committed``
            (from the commit metadata): :meth:`add` reports them as already finished.
    """

    __slots__ = (
        "_done",
        "_pending",
        "_skip",
        "committed",
        "finishes",
        "finishes_committed",
        "highest",
        "live",
        "partition",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        committed: int | None = None,
        finished_ranges: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.topic = topic
        self.partition = partition
        # Polled offsets from the lowest unfinished one on, in poll order; those of them
        # already finished are in _done too.
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._skip: deque[tuple[int, int]] = deque(finished_ranges)
        self.committed = committed if committed is not None and committed >= 0 else None
        self.highest: int | None = None
        self.finishes = 0  # offsets finished so far
        self.finishes_committed = 0  # ... when the last commit was made
        self.live = 0  # works of this partition alive in the pipeline (owner: poll thread)

    def __repr__(self) -> str:
        return (
            f"PartitionTracker({self.topic}[{self.partition}], watermark={self.watermark}, "
            f"unfinished={len(self._pending)}, finished_above={len(self._done)})"
        )

    @property
    def key(self) -> TopicPartitionKey:
        """``(topic, partition)``."""
        return (self.topic, self.partition)

    @property
    def watermark(self) -> int | None:
        """The lowest unfinished offset, else the highest polled + 1 (None: nothing known)."""
        if self._pending:
            return self._pending[0]
        if self.highest is not None:
            return self.highest + 1
        return self.committed

    @property
    def unfinished(self) -> int:
        """How many polled offsets are not finished."""
        return len(self._pending) - len(self._done)

    @property
    def lag(self) -> int:
        """Offsets between the watermark and the highest polled one (0 when caught up)."""
        watermark = self.watermark
        if self.highest is None or watermark is None:
            return 0
        return self.highest + 1 - watermark

    def add(self, offset: int) -> bool:
        """Track a polled offset; True when a previous owner already finished it.

        An already-finished offset is finished at once (the caller skips its message).
        Offsets must be added in increasing order (as a partition is read).
        """
        self._pending.append(offset)
        self.highest = offset
        skip = self._skip
        if skip:
            while skip and skip[0][1] < offset:
                skip.popleft()
            if skip and skip[0][0] <= offset:
                self.finish(offset)
                return True
        return False

    def finish(self, offset: int) -> None:
        """Mark a tracked offset finished (in any order)."""
        self.finishes += 1
        pending = self._pending
        if pending[0] != offset:
            self._done.add(offset)
            return
        pending.popleft()
        done = self._done
        if done:
            while pending and pending[0] in done:
                done.remove(pending.popleft())

    def metadata(self) -> str:
        """The commit metadata: offsets finished above the watermark (may be empty)."""
        watermark = self.watermark
        if not self._done or watermark is None:
            return ""
        return encode_finished(watermark, self._done)

    def mark_committed(self, offset: int) -> None:
        """``offset`` (with the metadata of now) was committed."""
        self.committed = offset
        self.finishes_committed = self.finishes

    def commit_failed(self, offset: int) -> None:
        """The commit of ``offset`` failed: commit again, unless a later one was made."""
        if self.committed == offset:
            self.committed = None  # unknown: the next commit stage turn commits it
            self.finishes_committed = -1

    def reset(self, committed: int | None) -> None:
        """Forget everything polled: the partition is read again from ``committed``."""
        self._pending.clear()
        self._done.clear()
        self._skip.clear()
        self.highest = None
        self.committed = committed


class OffsetTrackers:
    """The trackers of the partitions this member owns, by ``(topic, partition)``."""

    def __init__(self) -> None:
        self._by_key: dict[TopicPartitionKey, PartitionTracker] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def by_key(self) -> dict[TopicPartitionKey, PartitionTracker]:
        """The trackers by ``(topic, partition)`` (the poll thread's hot path reads it)."""
        return self._by_key

    def get(self, topic: str, partition: int) -> PartitionTracker | None:
        """The tracker of a partition, if owned."""
        return self._by_key.get((topic, partition))

    def add(self, tracker: PartitionTracker) -> None:
        """Own a partition (replacing a previous tracker of it)."""
        self._by_key[tracker.key] = tracker

    def remove(self, topic: str, partition: int) -> PartitionTracker | None:
        """Let a partition go; its tracker, if it was owned."""
        return self._by_key.pop((topic, partition), None)

    def all(self) -> list[PartitionTracker]:
        """Every tracker (a copy: safe to iterate while partitions change)."""
        return list(self._by_key.values())


def commits(
    trackers: Iterable[PartitionTracker], *, finished_above: bool = True, force: bool = False
) -> list[tuple[PartitionTracker, TopicPartition]]:
    """What to commit: each tracker whose watermark moved since its last commit (or, with
    ``finished_above``, that finished offsets above it; every one with ``force``), with
    the ``TopicPartition`` (watermark and metadata) to commit."""
    found = []
    for tracker in trackers:
        watermark = tracker.watermark
        if watermark is None:
            continue
        moved = watermark != tracker.committed or (
            finished_above and tracker.finishes != tracker.finishes_committed
        )
        if moved or force:
            tp = TopicPartition(tracker.topic, tracker.partition, watermark, tracker.metadata())
            found.append((tracker, tp))
    return found
