"""The consume pipeline end to end over a fake consumer client: order, commit safety,
exact max_messages, retries, dead letters, parked claims, dependencies waited out,
backpressure, revocation and offsets finished by a previous owner."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from streamkit.consume.backpressure import PAUSE_AFTER_S
from streamkit.dedup import ClaimResult, MemoryDedupStore, scoped_key
from streamkit.serde.events import Event
from tests.fakes import message
from tests.unit.consume.conftest import FakeClient, FlakyStore, make_harness, messages


def _end(client: FakeClient) -> dict[tuple[str, int], int]:
    return {key: log[-1].offset() + 1 for key, log in client.log.items()}


@pytest.mark.parametrize(("concurrency", "ordering"), [(1, "key"), (8, "key"), (8, "partition")])
def test_each_lane_is_handled_in_offset_order_and_everything_is_committed(
    concurrency: int, ordering: str
) -> None:
    client = FakeClient(messages(1_500, partitions=3, keys=40))
    seen: dict[tuple[int, bytes | None], list[int]] = defaultdict(list)
    running: Counter[object] = Counter()
    lock = threading.Lock()
    rng = random.Random(1)

    def handle(event: Event) -> None:
        lane = (event.partition, event.key if ordering == "key" else None)
        with lock:
            running[lane] += 1
            assert running[lane] == 1, "two events of one lane at once"
            seen[lane].append(event.offset or 0)
        time.sleep(rng.random() / 2000)
        with lock:
            running[lane] -= 1

    harness = make_harness(client, handle, concurrency=concurrency, ordering=ordering)
    harness.start(max_messages=1_500)
    harness.join(30)
    assert sum(len(offsets) for offsets in seen.values()) == 1_500
    for offsets in seen.values():
        assert offsets == sorted(offsets)
    assert client.last_commit() == _end(client)
    assert harness.pipeline.stats.in_flight_peak <= 10 * concurrency or concurrency == 1


def test_a_slow_event_holds_the_commit_below_it_while_later_ones_finish() -> None:
    client = FakeClient(messages(40, keys=40))
    release = threading.Event()
    handled: list[int] = []

    def handle(event: Event) -> None:
        if event.offset == 5:
            release.wait(10)
        handled.append(event.offset or 0)

    harness = make_harness(client, handle, concurrency=4).start()
    harness.wait_for(lambda: len(handled) == 39)
    time.sleep(0.3)  # several commit intervals
    offset, metadata = client.stored[("t", 0)]
    assert offset == 5, "never past the unfinished offset 5"
    assert metadata == "sk1:1.22"  # 6..39 finished above it (0x22 = 34)
    release.set()
    harness.wait_for(lambda: client.last_commit() == {("t", 0): 40})
    harness.stop()


def test_run_with_max_messages_takes_exactly_that_many_then_the_rest() -> None:
    client = FakeClient(messages(100, partitions=2))
    handled: list[str] = []
    harness = make_harness(client, lambda event: handled.append(event.id))
    harness.start(max_messages=30)
    harness.join()
    assert len(handled) == 30
    assert sum(client.last_commit().values()) == 30
    second = make_harness(client, lambda event: handled.append(event.id))
    second.pipeline.trackers = harness.pipeline.trackers
    second.start(max_messages=70)
    second.join()
    assert sorted(handled) == sorted(f"e{i}" for i in range(100))


def test_failures_are_retried_without_holding_other_keys_then_dead_lettered() -> None:
    client = FakeClient(messages(20, keys=4))  # e1 has key k1, like e5, e9, ...
    calls: Counter[str] = Counter()
    order: list[str] = []

    def handle(event: Event) -> None:
        calls[event.id] += 1
        if event.id == "e1":
            raise RuntimeError("no")
        order.append(event.id)

    harness = make_harness(client, handle, max_retries=2, retry_backoff_ms=30)
    harness.start(max_messages=20)
    harness.join()
    assert calls["e1"] == 3
    assert [letter.key for letter in harness.sink.letters] == [b"k1"]
    assert order.index("e2") < order.index("e5"), "other keys ran during the backoff"
    assert [e for e in order if e in ("e5", "e9", "e13", "e17")] == ["e5", "e9", "e13", "e17"]
    assert client.last_commit() == {("t", 0): 20}
    assert harness.pipeline.stats.dead_lettered == 1


@pytest.mark.parametrize("concurrency", [1, 4], ids=["poll-thread-decodes", "handlers-decode"])
def test_undecodable_messages_are_dead_lettered_at_once(concurrency: int) -> None:
    log = messages(5)
    log[2] = message(topic="t", partition=0, offset=2, value=b"bad")
    client = FakeClient(log)
    handled: list[int] = []
    harness = make_harness(
        client, lambda event: handled.append(event.offset or 0), concurrency=concurrency
    )
    harness.start(max_messages=5)
    harness.join()
    assert sorted(handled) == [0, 1, 3, 4]
    assert harness.sink.letters[0].value == b"bad"
    assert dict(harness.sink.letters[0].headers)["dlq-attempts"] == b"0"


@pytest.mark.parametrize("concurrency", [1, 4], ids=["poll-thread-decodes", "handlers-decode"])
def test_an_unreachable_registry_is_waited_out_without_dead_letters(concurrency: int) -> None:
    client = FakeClient(messages(30, keys=30))
    handled: list[str] = []
    store = MemoryDedupStore()
    harness = make_harness(
        client, lambda event: handled.append(event.id), concurrency=concurrency, store=store
    )
    harness.decoder.registry_down = True
    harness.start(max_messages=30)
    pipeline = harness.pipeline
    harness.wait_for(lambda: pipeline.dependencies.is_down("schema_registry"))
    harness.wait_for(lambda: client.paused == {("t", 0)})
    polls = client.polls
    harness.wait_for(lambda: client.polls > polls + 2)  # still polling: stays in the group
    assert handled == []
    harness.decoder.registry_down = False
    harness.join()
    assert sorted(handled) == sorted(f"e{i}" for i in range(30)), "each once, none lost"
    assert harness.sink.letters == []
    assert not pipeline.dependencies.is_down()
    assert client.paused == set()


def test_a_dedup_store_outage_is_waited_out_and_nothing_is_lost_or_repeated() -> None:
    client = FakeClient(messages(200, partitions=2, keys=20))
    store = FlakyStore()
    handled: Counter[str] = Counter()
    lock = threading.Lock()
    outage = threading.Event()

    def handle(event: Event) -> None:
        with lock:
            handled[event.id] += 1
        if event.id == "e60":
            store.down = True  # the store goes away mid-stream
            outage.set()

    harness = make_harness(client, handle, store=store, concurrency=4)
    harness.start(max_messages=200)
    outage.wait(10)
    pipeline = harness.pipeline
    harness.wait_for(lambda: pipeline.dependencies.is_down("dedup_store"))
    time.sleep(0.2)
    store.down = False
    harness.join()
    assert set(handled) == {f"e{i}" for i in range(200)}
    assert max(handled.values()) == 1
    assert pipeline.stats.dependency_outages >= 1
    assert client.last_commit() == _end(client)
    # Every mark was written once the store was back.
    marks = store.claim([scoped_key("g", f"e{i}") for i in range(200)])
    assert set(marks) == {ClaimResult.DUPLICATE}


def test_a_claim_held_elsewhere_parks_its_key_while_other_keys_flow() -> None:
    client = FakeClient(messages(12, keys=3))  # k0: e0 e3 e6 e9
    store = MemoryDedupStore()
    other = store.for_owner("other-member")
    other.claim([scoped_key("g", "e3")])  # another member is handling e3
    order: list[str] = []
    harness = make_harness(client, lambda event: order.append(event.id), store=store)
    harness.start(max_messages=12)
    harness.wait_for(lambda: len(order) == 9)
    assert not {"e3", "e6"} & set(order), "e3 and its key's followers wait"
    assert {"e4", "e11"} <= set(order), "other keys flow"
    other.complete([scoped_key("g", "e3")])  # the other member finished it
    harness.join()
    assert "e3" not in order, "then it is a duplicate"
    assert order[-2:] == ["e6", "e9"], "and its key's followers run, in order"
    assert harness.pipeline.stats.duplicates_skipped == 1
    assert harness.pipeline.stats.claim_conflicts >= 1
    assert client.last_commit() == {("t", 0): 12}


def test_dead_letters_wait_for_their_topic_and_finish_only_when_acknowledged() -> None:
    client = FakeClient(messages(10))

    def handle(event: Event) -> None:
        if event.id == "e4":
            raise ValueError("bad order")

    harness = make_harness(client, handle, max_retries=0)
    harness.sink.down = True
    harness.start(max_messages=10)
    pipeline = harness.pipeline
    harness.wait_for(lambda: pipeline.dependencies.is_down("dead_letter_topic"))
    time.sleep(0.1)
    assert client.stored.get(("t", 0), (0, ""))[0] <= 4, "not committed past the letter"
    harness.sink.down = False
    harness.join()
    assert len(harness.sink.letters) == 1
    assert harness.sink.attempts >= 2
    assert client.last_commit() == {("t", 0): 10}


def test_full_pipeline_pauses_partitions_and_keeps_polling() -> None:
    client = FakeClient(messages(100, partitions=2, keys=50))
    gate = threading.Event()
    handled: list[str] = []

    def handle(event: Event) -> None:
        gate.wait(10)
        handled.append(event.id)

    harness = make_harness(client, handle, concurrency=2, max_in_flight=6)
    harness.start(max_messages=100)
    pipeline = harness.pipeline
    harness.wait_for(lambda: client.paused == {("t", 0), ("t", 1)}, PAUSE_AFTER_S + 5)
    assert pipeline.held == 6
    polls = client.polls
    harness.wait_for(lambda: client.polls > polls + 2)
    gate.set()
    harness.join()
    assert len(handled) == 100
    assert pipeline.stats.in_flight_peak == 6
    assert client.paused == set()


def test_revoke_drains_in_flight_work_commits_and_drops_the_queue() -> None:
    client = FakeClient(messages(40, partitions=2, keys=1))  # one key: one at a time
    store = MemoryDedupStore()
    started = threading.Event()
    release = threading.Event()
    handled: list[str] = []

    def handle(event: Event) -> None:
        if event.id == "e10":  # partition 0, offset 5
            started.set()
            release.wait(10)
        handled.append(event.id)

    harness = make_harness(client, handle, store=store, concurrency=4)
    harness.start()
    started.wait(10)
    threading.Timer(0.2, release.set).start()
    client.revoke([("t", 0)])  # as librdkafka would, inside poll
    assert client.stored[("t", 0)][0] == 6, "drained: e10 finished and committed"
    assert harness.pipeline.trackers.get("t", 0) is None
    # The queued followers were dropped and their claims released for the next owner.
    assert store.claim([scoped_key("g", "e12")])[0].name == "CLAIMED"
    harness.stop()


def test_offsets_a_previous_owner_finished_are_skipped() -> None:
    client = FakeClient(messages(10), committed={("t", 0): (3, "sk1:2.3")})  # 5, 6, 7
    handled: list[int] = []
    harness = make_harness(client, lambda event: handled.append(event.offset or 0))
    harness.start(max_messages=7)
    harness.join()
    assert handled == [3, 4, 8, 9]
    assert harness.pipeline.stats.finished_before == 3
    assert client.last_commit() == {("t", 0): 10}


def test_a_batch_handler_gets_each_poll_at_once_and_falls_back_one_by_one() -> None:
    client = FakeClient(messages(20))
    batches: list[int] = []
    failing = {"e7"}

    def handle_batch(events: list[Event]) -> None:
        batches.append(len(events))
        if len(events) > 1 and failing & {event.id for event in events}:
            raise ValueError("one bad event spoils the batch")

    harness = make_harness(
        client,
        lambda event: handle_batch([event]),
        batch_call=handle_batch,
        max_retries=1,
    )
    harness.start(max_messages=20)
    harness.join()
    assert batches[:2] == [20, 20], "the batch, then its one retry"
    assert batches[2:] == [1] * 20, "then one by one"
    assert client.last_commit() == {("t", 0): 20}


def test_at_concurrency_1_marks_are_written_while_a_long_batch_runs() -> None:
    client = FakeClient(messages(50))
    store = MemoryDedupStore()
    completes: list[int] = []
    complete = store.complete

    def counting_complete(keys: Any) -> None:
        completes.append(len(keys))
        complete(keys)

    store.complete = counting_complete  # type: ignore[method-assign]
    harness = make_harness(client, lambda event: time.sleep(0.005), store=store)
    harness.start(max_messages=50)
    harness.join()
    # One poll of 50 events taking >= 250 ms: marks go out every 50 ms, not at the end.
    assert client.polls <= 3
    assert len(completes) >= 3
    assert sum(completes) == 50


class RevokeInBatchClient(FakeClient):
    """Revokes partition 0 inside the ``consume`` that completes a batch whose first
    message ``poll`` already returned (librdkafka serves rebalance callbacks there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revoke_next_consume = False
        self.revoked_at: dict[tuple[str, int], int] = {}

    def poll(self, timeout: float = -1) -> Any:
        found = super().poll(timeout)
        if found is not None and found.partition() == 0 and not self.revoked_at:
            self.revoke_next_consume = True
        return found

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        if self.revoke_next_consume:
            self.revoke_next_consume = False
            self.revoked_at[("t", 0)] = len(self.commits)
            self.revoke([("t", 0)])
            self.log[("t", 0)] = []  # the partition is gone: nothing more of it is read
        return super().consume(num_messages, timeout)


def test_a_message_polled_before_its_partition_was_revoked_is_left_to_the_next_owner() -> None:
    client = RevokeInBatchClient(messages(20, partitions=2, keys=20))
    handled: list[tuple[int, int]] = []
    harness = make_harness(
        client,
        lambda event: handled.append((event.partition or 0, event.offset or 0)),
        concurrency=4,
    )
    harness.start()
    harness.wait_for(lambda: len([h for h in handled if h[0] == 1]) == 10)
    harness.stop()
    assert client.revoked_at, "the revoke happened inside a batch"
    assert (0, 0) not in handled, "handled after its partition went to another member"
    after = client.commits[client.revoked_at[("t", 0)] :]
    assert not [tp for tps, _ in after for tp in tps if tp.partition == 0], (
        "committed a partition this member no longer owns"
    )
    assert harness.pipeline.trackers.get("t", 0) is None
    assert harness.pipeline.stats.not_owned == 1
