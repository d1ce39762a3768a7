"""The offset tracker: watermark, finished offsets above it in the commit metadata."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamkit.consume.offsets import (
    MAX_METADATA_CHARS,
    PartitionTracker,
    commits,
    decode_finished,
    encode_finished,
)


def test_watermark_is_the_lowest_unfinished_offset() -> None:
    tracker = PartitionTracker("t", 0, committed=100)
    assert tracker.watermark == 100
    for offset in range(100, 105):
        tracker.add(offset)
    assert tracker.watermark == 100
    tracker.finish(101)
    tracker.finish(103)
    assert tracker.watermark == 100, "a slow event at 100 holds the watermark"
    assert tracker.lag == 5
    tracker.finish(100)
    assert tracker.watermark == 102
    tracker.finish(102)
    tracker.finish(104)
    assert tracker.watermark == 105
    assert tracker.unfinished == 0
    assert tracker.lag == 0


def test_gaps_in_offsets_do_not_hold_the_watermark() -> None:
    # Transaction markers and compaction leave offsets without a message.
    tracker = PartitionTracker("t", 0)
    for offset in (3, 7, 8):
        tracker.add(offset)
    tracker.finish(7)
    tracker.finish(3)
    assert tracker.watermark == 8
    tracker.finish(8)
    assert tracker.watermark == 9


@given(st.permutations(list(range(60))))
def test_watermark_matches_the_definition_in_any_finishing_order(order: list[int]) -> None:
    tracker = PartitionTracker("t", 0)
    for offset in range(60):
        tracker.add(offset)
    finished: set[int] = set()
    for offset in order:
        tracker.finish(offset)
        finished.add(offset)
        expected = min(set(range(60)) - finished, default=60)
        assert tracker.watermark == expected
        # The metadata names exactly the finished offsets above the watermark.
        ranges = decode_finished(expected, tracker.metadata())
        named = {o for first, last in ranges for o in range(first, last + 1)}
        assert named == {o for o in finished if o > expected}


def test_encoding_is_compact_and_round_trips() -> None:
    assert encode_finished(100, [101, 102, 103, 110]) == "sk1:1.3,6.1"
    assert decode_finished(100, "sk1:1.3,6.1") == [(101, 103), (110, 110)]
    assert encode_finished(100, []) == ""
    # 10,000 finished offsets behind one slow one: a few characters.
    assert encode_finished(0, range(1, 10_001)) == "sk1:1.2710"


def test_encoding_is_bounded_and_truncation_only_drops_finished_offsets() -> None:
    finished = list(range(1, 40_000, 2))  # every other offset: worst case
    encoded = encode_finished(0, finished)
    assert len(encoded) <= MAX_METADATA_CHARS
    ranges = decode_finished(0, encoded)
    named = [o for first, last in ranges for o in range(first, last + 1)]
    assert named == finished[: len(named)], "a prefix: the rest is handled again"
    assert 500 < len(named) < len(finished)


@pytest.mark.parametrize(
    "metadata", [None, "", "other-client", "sk1:zz", "sk1:1.0", "sk1:-3.1", "sk1:1.2,"]
)
def test_foreign_or_broken_metadata_skips_nothing(metadata: str | None) -> None:
    assert decode_finished(10, metadata) == []


def test_offsets_finished_by_a_previous_owner_are_skipped() -> None:
    tracker = PartitionTracker("t", 0, committed=10, finished_ranges=[(12, 13), (15, 15)])
    skipped = [offset for offset in range(10, 17) if tracker.add(offset)]
    assert skipped == [12, 13, 15]
    assert tracker.unfinished == 4
    for offset in (10, 11, 14, 16):
        tracker.finish(offset)
    assert tracker.watermark == 17


def test_commits_pick_moved_trackers_and_carry_metadata() -> None:
    moved, still, empty = (PartitionTracker("t", p, committed=0) for p in range(3))
    for tracker in (moved, still):
        for offset in range(4):
            tracker.add(offset)
    moved.finish(0)
    moved.finish(2)
    found = commits([moved, still, empty])
    assert [(t.partition, tp.offset, tp.metadata) for t, tp in found] == [(0, 1, "sk1:1.1")]
    for tracker, tp in found:
        tracker.mark_committed(tp.offset)
    assert commits([moved, still, empty]) == []
    assert len(commits([moved, still, empty], force=True)) == 3


def test_random_workload_never_commits_past_an_unfinished_offset() -> None:
    rng = random.Random(7)
    tracker = PartitionTracker("t", 0, committed=0)
    unfinished: set[int] = set()
    next_offset = 0
    for _ in range(5_000):
        if unfinished and rng.random() < 0.5:
            offset = rng.choice(sorted(unfinished))
            unfinished.remove(offset)
            tracker.finish(offset)
        else:
            tracker.add(next_offset)
            unfinished.add(next_offset)
            next_offset += 1
        watermark = tracker.watermark
        assert watermark is not None
        assert all(offset >= watermark for offset in unfinished)
