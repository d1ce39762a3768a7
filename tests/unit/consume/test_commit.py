"""GroupCommit: watermarks (with metadata) committed; transient failures deferred."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamkit.consume.commit import GroupCommit
from streamkit.consume.offsets import OffsetTrackers, PartitionTracker
from streamkit.consume.processing import ConsumerStats
from streamkit.errors import KafkaClientError


class FakeCommits:
    """Stands in for the librdkafka consumer's commit; fails with ``code`` when set."""

    def __init__(self, code: int | None = None) -> None:
        self.code = code
        self.commits: list[tuple[list[TopicPartition], bool]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.code is not None:
            raise KafkaException(KafkaError(self.code))
        self.commits.append((offsets, asynchronous))


def _stage(client: Any, *trackers: PartitionTracker, manual: bool = False) -> GroupCommit:
    owned = OffsetTrackers()
    for tracker in trackers:
        owned.add(tracker)
    return GroupCommit(client, owned, "g", ConsumerStats(), manual=manual)


def _tracker(*finished: int, upto: int = 10) -> PartitionTracker:
    tracker = PartitionTracker("t", 0, committed=0)
    for offset in range(upto):
        tracker.add(offset)
    for offset in finished:
        tracker.finish(offset)
    return tracker


def test_a_turn_commits_the_watermark_with_finished_offsets_above_it() -> None:
    client = FakeCommits()
    tracker = _tracker(0, 1, 5, 6)
    stage = _stage(client, tracker)
    stage.turn(stage._trackers, held=6)
    [(offsets, asynchronous)] = client.commits
    assert asynchronous
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [("t", 0, 2)]
    assert offsets[0].metadata == "sk1:3.2"  # 5 and 6: 3 after the watermark 2, 2 long
    stage.turn(stage._trackers, held=6)
    assert len(client.commits) == 1, "nothing moved, and the interval has not passed"


def test_hand_over_commits_synchronously_even_when_unchanged() -> None:
    client = FakeCommits()
    tracker = _tracker(*range(10))
    tracker.mark_committed(10)
    stage = _stage(client, tracker)
    stage.hand_over([tracker], held=0)
    [(offsets, asynchronous)] = client.commits
    assert not asynchronous
    assert offsets[0].offset == 10


def test_manual_mode_commits_only_when_asked() -> None:
    client = FakeCommits()
    tracker = _tracker(0, 1)
    stage = _stage(client, tracker, manual=True)
    stage.turn(stage._trackers, held=8)
    stage.hand_over([tracker], held=8)
    assert client.commits == []
    stage.commit_now([tracker])
    assert client.commits[0][0][0].offset == 2


@pytest.mark.parametrize(
    "code",
    [KafkaError._ASSIGNMENT_LOST, KafkaError.REBALANCE_IN_PROGRESS, KafkaError._NO_OFFSET],
    ids=["assignment-lost", "rebalance", "no-offset"],
)
def test_commit_failures_of_a_fenced_member_are_deferred(code: int) -> None:
    tracker = _tracker(0, 1)
    stage = _stage(FakeCommits(code), tracker)
    stage.commit_now([tracker])  # no exception: committed again on the next turn
    assert stage._stats.commits == 0
    assert tracker.committed == 0, "not recorded as committed"


def test_other_commit_failures_raise() -> None:
    tracker = _tracker(0)
    stage = _stage(FakeCommits(KafkaError.GROUP_AUTHORIZATION_FAILED), tracker)
    with pytest.raises(KafkaClientError, match="GROUP_AUTHORIZATION_FAILED"):
        stage.commit_now([tracker])


@pytest.mark.parametrize("per_partition", [False, True])
def test_a_failed_asynchronous_commit_is_made_again_at_the_next_turn(
    per_partition: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamkit.consume.commit.COMMIT_INTERVAL_S", 0.0)
    client = FakeCommits()
    tracker = _tracker(*range(10))
    stage = _stage(client, tracker)
    stage.turn(stage._trackers, held=0)
    [(offsets, _)] = client.commits
    stage.turn(stage._trackers, held=0)
    assert len(client.commits) == 1, "nothing moved"
    # librdkafka reports the outcome later, through on_commit (a rebalance was under way).
    generation = KafkaError(KafkaError.ILLEGAL_GENERATION)
    if per_partition:  # TopicPartition.error is read-only: a stand-in with the fields
        failed = SimpleNamespace(topic="t", partition=0, offset=offsets[0].offset, error=generation)
        stage.on_commit(None, [failed])  # type: ignore[list-item]
    else:
        stage.on_commit(KafkaException(generation).args[0], offsets)
    stage.turn(stage._trackers, held=0)
    assert len(client.commits) == 2
    assert client.commits[1][0][0].offset == 10
    stage.on_commit(None, client.commits[1][0])  # succeeded
    stage.turn(stage._trackers, held=0)
    assert len(client.commits) == 2
