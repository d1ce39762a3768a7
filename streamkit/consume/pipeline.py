"""The consume pipeline: one implementation of the at-least-once rules for every face.

::

    poll ─▶ decode ─▶ dedup gate ─▶ dispatch ─▶ handler ─▶ finish ─▶ watermark commit
      │      │  └ registry down: wait        │      └ failed: retry later / retry topic /
      │      └ undecodable: dead letter      └ duplicate: finished at once   dead letter
      └ retry topic's message not due yet: its partition paused until due

One thread polls and does every piece of bookkeeping (claims, dedup marks, offsets,
commits, pauses) and decodes, except on a thread pool, whose threads decode their own
messages; handlers run on an executor (:mod:`.executors`). The loop:

1. drains the completions reported since its last turn: successes get their dedup mark
   (one store call per turn) and then their offset finished; failures get the retry
   policy's decision (:mod:`.retry`); dead letters' acknowledgements finish theirs;
2. restarts what is due: retries, re-claims of events another member held, and
   attempts on a dependency that is down (:mod:`.dependencies`);
3. commits (:mod:`.commit`), pausing or resuming partitions as needed
   (:mod:`.backpressure`);
4. polls as many messages as there is room for, decodes them, claims their ids in one
   round trip, and submits them to the dispatcher (:mod:`.dispatch`) in offset order.

With retry topics (:mod:`.retry_topics`) it also reads them, holding each retry
partition paused until its next message is due. A failure breaker (:mod:`.breaker`)
judges handler outcomes: when too many fail it stops taking messages, then probes.

When it cannot take messages (full, a dependency down, the breaker open, finishing) it
waits for completions instead; if that lasts, it pauses the partitions and polls on, so
the member stays in its group. ``run(max_messages=N)`` takes exactly N messages and returns once
they are all finished and committed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamkit.client.diagnose import kafka_errors
from streamkit.consume.backpressure import PAUSE_AFTER_S, Backpressure
from streamkit.consume.breaker import BreakerState, FailureBreaker
from streamkit.consume.calls import HandlerCalls
from streamkit.consume.commit import CommitStage, GroupCommit
from streamkit.consume.dead_letter import DeadLetterSink, LetterSettled
from streamkit.consume.decode import Decode
from streamkit.consume.dedup_gate import DedupGate
from streamkit.consume.dependencies import (
    DEAD_LETTER_TOPIC,
    DEDUP_STORE,
    SCHEMA_REGISTRY,
    DependencyGate,
)
from streamkit.consume.dispatch import Dispatcher, lane_of
from streamkit.consume.executors import (
    AsyncExecutor,
    Completions,
    Executor,
    InlineExecutor,
    ThreadExecutor,
)
from streamkit.consume.history import error_type_name
from streamkit.consume.liveness import Liveness
from streamkit.consume.offsets import OffsetTrackers
from streamkit.consume.parked import Parked
from streamkit.consume.processing import (
    ConsumerStats,
    backoff_delays,
    take_batch,
    usable_message,
)
from streamkit.consume.rebalance import RebalanceHook, Rebalancer
from streamkit.consume.retry import Forward, RetryLater, RetryPolicy
from streamkit.consume.retry_topics import DueGate, RetryTopics
from streamkit.consume.work import Work
from streamkit.errors import DedupStoreError, DeserializationError, KafkaClientError
from streamkit.observability.tracing import NO_PROCESS_SPAN, NO_TRACING, Tracing, log_extra
from streamkit.settings import ConsumerSettings

if TYPE_CHECKING:
    from streamkit.observability.metrics import ConsumerMetrics

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5  # nothing held: wait this long for a message
BUSY_POLL_S = 0.05  # work held: come back this soon to book what finished
GAUGES_EVERY_S = 1.0
YIELD_EVERY = 16  # decode this many messages between GIL hand-overs (threaded handlers)
WAKE_FRACTION = 8  # when full, wake once 1/8 of the slots finished
MARK_EVERY_S = 0.05  # concurrency 1: write dedup marks at least this often within a batch


class Pipeline:
    """Polls a consumer and drives its messages through the stages to commit.

    Args:
        client: the confluent-kafka consumer (subscribed by :meth:`run`).
        group: the consumer group.
        topics: topics to subscribe to.
        settings: the consumer settings (concurrency, ordering, bounds, backoff).
        decode: the decode step.
        gate: the dedup gate, or None without a store.
        policy: what a failed handler call leads to.
        retry_topics: the retry topics ``policy`` sends to (subscribed too), or None.
        sink: makes the dead-letter sink, given the pipeline's callback for outcomes.
        observer: metrics (a do-nothing one when metrics are off).
        stats: counters to update.
        batch_size: most messages per poll.
        inline: the handler runs on the poll thread (a polled batch is finished before
            the next poll, so it need not fit in ``max_in_flight``).
        commit: makes the commit stage, given the trackers; default: group commits.
        manual_commit: commit only when :meth:`commit` is called.
        barrier: poll again only once everything polled is finished (a transaction per
            batch).
        batch_call: a batch handler tried on each polled batch first (inline only).
        on_assign, on_revoke: the application's rebalance hooks.
        role: names this pipeline in log records (``consumer``, ``processor``).
        tracing: runs each handler call in its consumer span (:mod:`.calls`); records
            retries and dead letters on it.
    """

    def __init__(
        self,
        client: Any,
        *,
        group: str,
        topics: Sequence[str],
        settings: ConsumerSettings,
        decode: Decode,
        gate: DedupGate | None,
        policy: RetryPolicy,
        sink: Callable[[LetterSettled], DeadLetterSink],
        observer: ConsumerMetrics,
        stats: ConsumerStats,
        batch_size: int,
        inline: bool,
        commit: Callable[[OffsetTrackers], CommitStage] | None = None,
        manual_commit: bool = False,
        barrier: bool = False,
        batch_call: Callable[[list[Any]], Any] | None = None,
        on_assign: RebalanceHook | None = None,
        on_revoke: RebalanceHook | None = None,
        role: str = "consumer",
        retry_topics: RetryTopics | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.client = client
        self.group = group
        self.topics = retry_topics.subscription() if retry_topics is not None else list(topics)
        self.retry_topics = retry_topics
        self.settings = settings
        self.stats = stats
        self._who = f"{role} {group}"
        self._decode = decode.with_origin(retry_topics.origin) if retry_topics else decode
        self._closing = False  # leaving run(): failures are dropped, not retried
        self._decode_late = False  # set by run(): the executor decodes
        self._in_callback = False  # inside a rebalance callback: start works later
        self._deferred: list[Work] = []
        self._poll_started = 0.0  # when the current (or last) poll began
        self._gate = gate
        self._policy = policy
        self._observer = observer
        self._batch_size = batch_size
        self._inline = inline
        self._tracing = tracing
        self.calls = HandlerCalls(tracing, group)
        self._batch_call = self.calls.batch(batch_call) if batch_call is not None else None
        self._lane: Callable[[str, int, bytes | None], Hashable] = lane_of(settings.ordering)
        self.dispatcher = Dispatcher(1 if inline else settings.concurrency)
        self.completions = Completions()
        self.stopping = threading.Event()
        self.trackers = OffsetTrackers()
        self.liveness = Liveness(settings.max_poll_interval_ms / 1000)
        self.backpressure = Backpressure(client, settings.in_flight_limit, barrier=barrier)
        self.due: DueGate | None = None
        if retry_topics is not None:
            self.due = DueGate(
                retry_topics,
                pause=self.backpressure.hold,
                resume=self.backpressure.release,
                seek=self._rewind,
            )
        self.breaker = FailureBreaker.from_settings(
            settings, who=self._who, on_change=self._breaker_changed
        )
        self.dependencies = DependencyGate(settings, self._who, observer, stats)
        self.rebalancer = Rebalancer(
            self,
            self.trackers,
            group=group,
            stats=stats,
            observer=observer,
            liveness=self.liveness,
            on_assign=on_assign,
            on_revoke=on_revoke,
        )
        self._executor: Executor | None = None
        self._held = 0  # works between poll and finish
        self._parked = Parked()
        self._unmarked: list[Work] = []  # handled, waiting for their dedup mark
        self._to_release: list[str] = []  # claims to drop (failed or dropped works)
        self._letters: dict[Work, Forward] = {}  # dead letters not acknowledged
        self._unsent: list[Work] = []  # dead letters waiting for their topic
        self._waiting_since: float | None = None
        self._gauges_at = 0.0
        self._poll_thread: int | None = None
        self._commit_requested = threading.Event()
        self._committed = threading.Event()
        self.commit_stage: CommitStage = (
            commit(self.trackers)
            if commit is not None
            else GroupCommit(client, self.trackers, group, stats, manual=manual_commit)
        )
        self.sink = sink(self._letter_settled)

    def __repr__(self) -> str:
        return (
            f"Pipeline({self._who}, held={self._held}, {self.dispatcher!r}, {self.dependencies!r})"
        )

    @property
    def held(self) -> int:
        """Messages between poll and finish."""
        return self._held

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is running."""
        return self._poll_thread is not None

    def executor_for(self, handler: Callable[[Any], Any], name: str) -> Executor:
        """The executor of a sync ``handler``: on the poll thread at concurrency 1, else
        on ``concurrency`` threads named ``name-<n>``."""
        parts = (self.calls.sync(handler), self.dispatcher, self.completions, self.timed)
        if self._inline:
            return InlineExecutor(*parts, self.stopping)
        return ThreadExecutor(*parts, name=name, decode=self._decode)

    def async_executor_for(
        self, handler: Callable[[Any], Any], loop: asyncio.AbstractEventLoop
    ) -> AsyncExecutor:
        """The executor of a coroutine ``handler``: up to ``concurrency`` tasks on ``loop``."""
        call = self.calls.coroutine(handler)
        return AsyncExecutor(call, self.dispatcher, self.completions, self.timed, loop)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit (the consumer's ``on_commit``, served by poll)."""
        if isinstance(self.commit_stage, GroupCommit):
            self.commit_stage.on_commit(error, partitions)

    def timed(self, work: Work, seconds: float) -> None:
        """Record one handler call (called by the executors, on their threads)."""
        if work.error is None:
            self.stats.handler_seconds.append(seconds)
        self._observer.handler_time(work.tracker.topic, seconds)

    # Run loop ---------------------------------------------------------------------

    def run(
        self,
        executor: Executor,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        """Consume until :meth:`stop`, ``max_messages`` taken and finished, or
        ``idle_timeout_s`` without a message; commit, then return."""
        self._executor = executor
        # Handler threads decode their own messages; otherwise the poll thread does.
        self._decode_late = isinstance(executor, ThreadExecutor)
        self._poll_thread = threading.get_ident()
        self._closing = False
        rebalancer = self.rebalancer
        with kafka_errors("subscribe", group=self.group):
            self.client.subscribe(
                self.topics,
                on_assign=rebalancer.on_assign,
                on_revoke=rebalancer.on_revoke,
                on_lost=rebalancer.on_lost,
            )
        taken = 0
        finishing = False  # take nothing more; return once everything held is finished
        last_message = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._bookkeep()
                left = None if max_messages is None else max_messages - taken
                finishing = finishing or left == 0
                room = 0 if finishing else self.backpressure.room(self._held)
                probe = self.breaker.room(self._held)  # None: closed, no limit
                if probe is not None:
                    room = min(room, probe)
                if finishing and self._held == 0:
                    break
                if room == 0 or self.dependencies.is_down():
                    full = not finishing and probe is None and not self.dependencies.is_down()
                    self._wait(full=full)
                    continue
                self._waiting_since = None
                self.backpressure.apply(rebalancer.assignment, pause=False)
                n = self._batch_size if self._inline else min(self._batch_size, room)
                if probe is not None:
                    n = min(n, probe)
                self._poll_started = time.monotonic()
                messages = take_batch(self.client, min(n, left or n), self._poll_timeout())
                self.liveness.polled()
                if messages:
                    last_message = time.monotonic()
                    taken += self._accept(messages)
                elif idle_timeout_s is not None and (
                    time.monotonic() - last_message > idle_timeout_s
                ):
                    finishing = True
        finally:
            self._shut_down()

    def stop(self) -> None:
        """Stop taking messages; finish the handlers in flight, commit, return from run."""
        self.stopping.set()
        self.completions.wake.set()

    def _poll_timeout(self) -> float:
        """How long the loop may wait before something is due (a retry, a re-claim, an
        attempt on a dependency that is down, bookkeeping of work held)."""
        timeout = IDLE_POLL_S if self._held == 0 else BUSY_POLL_S
        for due in (
            self._parked.next_due_in(),
            self.dependencies.next_attempt_in(),
            self.due.next_due_in() if self.due is not None else None,
            self.breaker.reopen_in(),
        ):
            if due is not None:
                timeout = min(timeout, due)
        return timeout

    def _wait(self, *, full: bool = False) -> None:
        """Wait for completions instead of polling; if that lasts, pause and poll on.

        ``full``: waiting for room; the loop comes back once an eighth of the handler
        slots finished (not for each one: fewer wake-ups and larger batches of marks).
        """
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        stopped = self.dependencies.is_down() or not self.breaker.accepting
        if stopped or now - self._waiting_since >= PAUSE_AFTER_S:
            self.backpressure.apply(self.rebalancer.assignment, pause=True)
            self._poll_started = time.monotonic()
            self._put_back(self.client.consume(1, 0))  # serves rebalances, keeps membership
            self.liveness.polled()
        if not self.stopping.is_set():
            at_least = max(1, self.dispatcher.slots // WAKE_FRACTION) if full else 1
            self.completions.wait(self._poll_timeout(), at_least)

    def _put_back(self, messages: list[Any]) -> None:
        """Messages polled but not taken: rewind to them, so that they are read again."""
        owned = self.trackers.by_key
        for message in messages:
            if message.error() is None and (message.topic(), message.partition()) in owned:
                self._rewind(message.topic(), message.partition(), message.offset())

    def _rewind(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic[partition]`` again from ``offset``."""
        try:
            self.client.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            log.info("%s: not rewinding: %s", self._who, exc.args[0].str())

    # Taking messages --------------------------------------------------------------

    def _accept(self, messages: list[Any]) -> int:
        """Take polled messages into the pipeline; return how many were records.

        (``Any``: a record message always has a topic, partition and offset.)
        """
        if self.due is not None:
            messages = self.due.admit(messages)  # not due yet: rewound, partition held
        works: list[Work] = []
        taken = 0
        lane = self._lane
        trackers = self.trackers.by_key
        for message in messages:
            if message.error() is not None and not usable_message(message, self.group, self._who):
                if message.error().code() == KafkaError._MAX_POLL_EXCEEDED:
                    self.liveness.lost(reported_by_poll_at=self._poll_started)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            tracker = trackers.get((topic, partition))
            if tracker is None:
                # Read before a rebalance callback of the same poll let its partition go
                # (a poll serves callbacks between the messages it gathers): another
                # member reads it from the commit. Taking it would commit a partition
                # this member no longer owns.
                self.stats.not_owned += 1
                continue
            taken += 1
            if tracker.add(offset):
                self.stats.finished_before += 1
                continue
            works.append(Work(message, tracker, offset, lane(topic, partition, message.key())))
        self.stats.consumed += taken
        self._observer.consumed_batch([work.tracker.topic for work in works])
        if not works:
            return taken
        self.commit_stage.begin_batch(len(works))
        self._hold(works)
        decoded: list[Work] = works if self._decode_late else []
        skipped: set[int] = set()  # ids of works settled before dispatch
        yield_every = 0 if self._inline else YIELD_EVERY
        for index, work in enumerate(() if self._decode_late else works):
            if yield_every and index % yield_every == yield_every - 1:
                # Let handler threads that woke up take the GIL now, not after the
                # whole batch is decoded (their wait would add to every handler call).
                time.sleep(0)
            problem = self._decode(work)
            if problem is None:
                decoded.append(work)
            elif isinstance(problem, DeserializationError):
                skipped.add(id(work))
                self._undecodable(work, problem)
            else:  # the registry is unreachable: the rest of the batch waits with it
                self.dependencies.failed(SCHEMA_REGISTRY, problem)
                self._parked.wait_for_registry(works[index:])
                break
        if self._gate is not None and decoded:
            skipped.update(id(work) for work in self._claim(decoded))
        dispatched = [work for work in works if id(work) not in skipped]
        if dispatched:
            self._dispatch(dispatched)
        return taken

    def _dispatch(self, works: list[Work]) -> None:
        """Hand decoded, claimed works to the handlers."""
        executor = self._executor
        idle = self.dispatcher.idle() and not any(work.blocked for work in works)
        if self._batch_call is not None and isinstance(executor, InlineExecutor) and idle:
            done, retries = executor.run_as_batch(
                self._batch_call, works, backoff_delays(self.settings)
            )
            self.stats.retries += retries
            if done:
                return
        if isinstance(executor, InlineExecutor) and idle:
            # Nothing parked: at concurrency 1 every lane runs in poll order anyway, so
            # skip the dispatcher and book the successes here, until a failure. Under a
            # dedup store, marks are written at least every MARK_EVERY_S meanwhile.
            while True:
                until = time.perf_counter() + MARK_EVERY_S if self._gate is not None else None
                ran = executor.run_in_order(works, until)
                self._succeeded(works[:ran])
                works = works[ran:]
                if not works or works[0].error is not None:
                    break
                if self.stopping.is_set():  # give the rest back
                    self._start(self.dispatcher.submit(works))
                    return
                if self._unmarked and self.dependencies.due(DEDUP_STORE):
                    self._mark()
            if not works:
                return
            works[0].blocked = True  # failed: it holds its lane until decided
            startable = self.dispatcher.submit(works)
            self._handled(works[0])
            self._start(startable)
            return
        self._start(self.dispatcher.submit(works))

    def _succeeded(self, works: list[Work]) -> None:
        """Book handler successes run inline (owned partitions: no poll happened)."""
        observer, unmarked = self._observer, self._unmarked
        for work in works:
            event = work.event
            tracker = work.tracker
            observer.processed(tracker.topic, event.timestamp if event else None)
            if work.claim is not None:
                unmarked.append(work)
            else:
                tracker.finish(work.offset)
                tracker.live -= 1
                self._held -= 1
        self.stats.processed += len(works)
        self.breaker.succeeded(len(works))

    def _hold(self, works: list[Work]) -> None:
        for work in works:
            work.tracker.live += 1
        self._held += len(works)
        if self._held > self.stats.in_flight_peak:
            self.stats.in_flight_peak = self._held

    def _claim(self, works: list[Work]) -> list[Work]:
        """Claim ``works``; unblock the claimed ones, park conflicts; return duplicates
        (finished already) so a first pass can leave them out of dispatch."""
        assert self._gate is not None
        try:
            outcome = self._gate.claim(works)
        except DedupStoreError as exc:
            self.dependencies.failed(DEDUP_STORE, exc)
            self._parked.wait_for_store(works)
            return []
        self.dependencies.ok(DEDUP_STORE)
        for work in outcome.duplicates:
            self.stats.duplicates_skipped += 1
            self._observer.duplicate(work.tracker.topic)
            self._start(self.dispatcher.release(work))
            self._finish(work)
        for work in outcome.conflicts:
            self.stats.claim_conflicts += 1
            self._parked.reclaim_in(work, self._gate.claim_retry_s)
        for work in outcome.claimed:
            if work.blocked:
                self._start(self.dispatcher.unblock(work))
        return outcome.duplicates

    def _start(self, works: Sequence[Work]) -> None:
        if not works:
            return
        if self._in_callback:
            # Not inside a rebalance callback: an inline handler would run within poll.
            self._deferred.extend(works)
            return
        assert self._executor is not None
        self._executor.start(works)

    # Bookkeeping (poll thread) ----------------------------------------------------

    def _bookkeep(self) -> None:
        if self._deferred:
            works, self._deferred = self._deferred, []
            self._start(works)
        for work in self.completions.take():
            self._handled(work)
        if self._unmarked and self.dependencies.due(DEDUP_STORE):
            self._mark()
        if self._to_release and self._gate is not None:
            keys, self._to_release = self._to_release, []
            self._gate.release(keys)
        self.sink.serve()
        self._restart_due()
        if self.due is not None:
            self.due.resume_due()
        self.commit_stage.turn(self.trackers, self._held)
        if self._commit_requested.is_set():
            self._commit_requested.clear()
            self.commit_now()
            self._committed.set()
        if self.dependencies.is_down() or self.breaker.state is BreakerState.OPEN:
            self.backpressure.apply(self.rebalancer.assignment, pause=True)
        now = time.monotonic()
        if now >= self._gauges_at:
            self._gauges_at = now + GAUGES_EVERY_S
            self._report()

    def _handled(self, work: Work) -> None:
        """A handler call ended (``work.error`` tells how), or a handler thread could not
        decode the message (``work.event`` is None)."""
        if work.event is None and work.error is not None:
            self._undecoded(work, work.error)
            return
        if work.error is None:
            self.stats.processed += 1
            self.breaker.record(None)
            event = work.event
            self._observer.processed(work.tracker.topic, event.timestamp if event else None)
            if work.claim is not None:
                self._unmarked.append(work)
            else:
                self._finish(work)
            return
        self.breaker.record(error_type_name(work.error))
        decision = self._policy.on_failure(work, work.error)
        leaving = self._closing or self.stopping.is_set()
        if not self._owned(work) or (leaving and isinstance(decision, RetryLater)):
            # Its partition is gone, or we stop: the next owner tries again.
            self._start(self.dispatcher.release(work))
            self._drop([work])
            return
        if isinstance(decision, RetryLater):
            self.stats.retries += 1
            self._observer.retry(work.tracker.topic)
            span = work.span
            span.retry(work.attempts, decision.delay_s)
            log.info(
                "handler failed on %r (%s: %s); retrying in %.2f s",
                work,
                type(work.error).__name__,
                work.error,
                decision.delay_s,
                extra=log_extra(work.message, span),
            )
            _end_span(work)
            self._parked.retry_in(work, decision.delay_s)
        else:
            self._forward(work, decision)

    def _mark(self) -> None:
        """Write the dedup marks of every event handled since the last turn, then finish
        their offsets."""
        assert self._gate is not None
        works, self._unmarked = self._unmarked, []
        try:
            self._gate.complete(works)
        except DedupStoreError as exc:
            self.dependencies.failed(DEDUP_STORE, exc)
            self._unmarked = works + self._unmarked
            return
        self.dependencies.ok(DEDUP_STORE)
        now = time.perf_counter()
        delays = self.stats.mark_delays
        for work in works:
            delays.append(now - work.handled_at)
            self._finish(work)

    def _restart_due(self) -> None:
        parked = self._parked
        for work in parked.due_retries():
            self._start(self.dispatcher.unblock(work))
        reclaims = parked.due_reclaims()
        if reclaims:
            self._claim(reclaims)
        if parked.undecoded and self.dependencies.due(SCHEMA_REGISTRY):
            self._decode_waiting()
        if parked.unclaimed and self.dependencies.due(DEDUP_STORE):
            works, parked.unclaimed = parked.unclaimed, []
            self._claim(works)
        if self._unsent and self.dependencies.due(DEAD_LETTER_TOPIC):
            works, self._unsent = self._unsent, []
            for work in works:
                self.sink.send(work, self._letters[work].letter)

    def _undecoded(self, work: Work, problem: BaseException) -> None:
        """A handler thread could not decode ``work``: dead-letter it, or wait for the
        registry (it keeps its lane meanwhile)."""
        if not self._owned(work) or self._closing or self.stopping.is_set():
            self._start(self.dispatcher.release(work))
            self._drop([work])
        elif isinstance(problem, DeserializationError):
            self._undecodable(work, problem)
        else:
            self.dependencies.failed(SCHEMA_REGISTRY, problem)
            self._parked.wait_for_registry([work])

    def _decode_waiting(self) -> None:
        works, self._parked.undecoded = self._parked.undecoded, []
        decoded: list[Work] = []
        for index, work in enumerate(works):
            problem = self._decode(work)
            if problem is not None and not isinstance(problem, DeserializationError):
                self.dependencies.failed(SCHEMA_REGISTRY, problem)
                self._parked.undecoded = works[index:]
                break
            self.dependencies.ok(SCHEMA_REGISTRY)
            if problem is None:
                decoded.append(work)
            else:
                self._undecodable(work, problem)
        claimed = [work for work in decoded if work.claim is not None or self._gate is None]
        for work in claimed:
            self._start(self.dispatcher.unblock(work))
        unclaimed = [work for work in decoded if work.claim is None and self._gate is not None]
        if unclaimed:
            self._claim(unclaimed)

    def _undecodable(self, work: Work, problem: DeserializationError) -> None:
        """``work``'s message cannot be decoded: a failure; it goes to the dead letters."""
        self.breaker.record(error_type_name(problem))
        self._forward(work, self._policy.on_undecodable(work, problem))

    def _forward(self, work: Work, decision: Forward) -> None:
        span = work.span
        if span is NO_PROCESS_SPAN:  # never handled (undecodable): a span of its own
            span = self._tracing.process(work.message, self.group)
            span.fail(decision.error)
        hop = decision.stage
        if hop is not None:
            span.retry(work.attempts, hop.delay_s)
        else:
            span.dead_letter(decision.letter.topic, decision.error)
        log.log(
            logging.INFO if hop is not None else logging.WARNING,
            "%s %s[%s]@%s to %s: %s",
            "retrying" if hop is not None else "dead-lettering",
            work.tracker.topic,
            work.tracker.partition,
            work.offset,
            decision.letter.topic,
            decision.error,
            # The handler's traceback, once, at the dead letter; an undecodable message's
            # reason says it all.
            exc_info=None
            if hop is not None or isinstance(decision.error, DeserializationError)
            else decision.error,
            extra=log_extra(work.message, span),
        )
        span.end()
        work.span = NO_PROCESS_SPAN
        self._start(self.dispatcher.release(work))
        self._letters[work] = decision
        self.sink.send(work, decision.letter)

    def _letter_settled(self, work: Work, error: KafkaClientError | None) -> None:
        """A dead letter was acknowledged (``error`` None) or failed."""
        if error is not None:
            self.dependencies.failed(DEAD_LETTER_TOPIC, error)
            self._unsent.append(work)
            return
        self.dependencies.ok(DEAD_LETTER_TOPIC)
        decision = self._letters.pop(work)
        if decision.stage is not None:
            self.stats.retries += 1
            self._observer.retry_hop(decision.stage.source, decision.stage.delay)
        else:
            self.stats.dead_lettered += 1
            self._observer.dead_lettered(work.tracker.topic, decision.reason)
        if work.claim is not None:
            self._to_release.append(work.claim)
        self._finish(work)

    def _owned(self, work: Work) -> bool:
        tracker = work.tracker
        return self.trackers.get(tracker.topic, tracker.partition) is tracker

    def _finish(self, work: Work) -> None:
        """The message is done: its offset may be committed."""
        tracker = work.tracker
        if self._owned(work):
            tracker.finish(work.offset)
        tracker.live -= 1
        self._held -= 1

    def _drop(self, works: Iterable[Work]) -> None:
        """Works leave unfinished (their partition goes, or the consumer stops): their
        offsets stay uncommitted and their claims are released for the next owner."""
        for work in works:
            if work.claim is not None:
                self._to_release.append(work.claim)
            _end_span(work)
            work.tracker.live -= 1
            self._held -= 1

    def _report(self) -> None:
        self._observer.pipeline(
            in_flight=self._held,
            running=self.dispatcher.running,
            paused=self.backpressure.paused,
        )
        self._observer.watermark_lags(
            {(t.topic, str(t.partition)): t.lag for t in self.trackers.all()}
        )
        if self.due is not None:
            self._observer.retries_waiting(self.due.waiting)
        self._observer.breaker(
            open_=not self.breaker.accepting, failure_rate=self.breaker.failure_rate
        )

    def _breaker_changed(self, breaker: FailureBreaker) -> None:
        tripped = breaker.trips > self.stats.breaker_trips
        self.stats.breaker_trips = breaker.trips
        self._observer.breaker(
            open_=not breaker.accepting, failure_rate=breaker.failure_rate, tripped=tripped
        )

    # Partitions leaving, stopping, committing -------------------------------------

    def let_go(self, partitions: set[tuple[str, int]], *, commit: bool) -> None:
        """Stop working on ``partitions``: drop their waiting works, drain their running
        ones (``commit``: bounded by ``drain_timeout_ms``), commit, forget them."""
        self._in_callback = True
        try:
            self._drop_waiting(lambda work: work.tracker.key in partitions)
            if self.due is not None:
                self.due.forget(partitions)
            self._deferred = [work for work in self._deferred if work.tracker.key not in partitions]
            trackers = [t for t in self.trackers.all() if t.key in partitions]
            if commit:
                self._drain(lambda: any(t.live for t in trackers))
                self.commit_stage.hand_over(trackers, self._held)
            self.backpressure.forget(partitions)
            for tracker in trackers:
                self.trackers.remove(tracker.topic, tracker.partition)
        finally:
            self._in_callback = False

    def _drop_waiting(self, drop: Callable[[Work], bool]) -> None:
        """Drop the works not running that ``drop`` selects."""
        deferred = [work for work in self._deferred if drop(work)]
        if deferred:
            self._deferred = [work for work in self._deferred if not drop(work)]
            for work in deferred:  # handed a slot but never started
                self.dispatcher.give_back(work)
        removed = self.dispatcher.discard(drop)
        gone = {id(work) for work in removed}
        blocked = [work for work in self._parked.drop(drop) if id(work) not in gone]
        for work in blocked:
            self._start(self.dispatcher.release(work))
        self._drop(removed + blocked)

    def _drain(self, busy: Callable[[], bool]) -> None:
        """Book completions until ``busy()`` is false or the drain timeout passed."""
        deadline = time.monotonic() + self.settings.drain_timeout_ms / 1000
        while True:
            for work in self.completions.take():
                self._handled(work)
            if self._unmarked:
                self._mark()
            self.sink.serve()
            if not busy() or time.monotonic() >= deadline:
                break
            self.completions.wait(min(BUSY_POLL_S, max(0.0, deadline - time.monotonic())))
            if self._letters:
                self.sink.flush(BUSY_POLL_S)
        if busy():
            log.warning(
                "%s: handlers still running after the drain timeout (%d ms); their "
                "messages stay uncommitted",
                self._who,
                self.settings.drain_timeout_ms,
            )

    def _shut_down(self) -> None:
        """Leave the run loop: drop what waits, drain what runs, commit."""
        self._closing = True
        try:
            self._drop_waiting(lambda _work: True)
            self._drain(lambda: self.dispatcher.running > 0 or bool(self._letters))
            self._drop_waiting(lambda _work: True)
            self.backpressure.apply(self.rebalancer.assignment, pause=False)
            self.commit_stage.hand_over(self.trackers.all(), self._held)
            if self._to_release and self._gate is not None:
                keys, self._to_release = self._to_release, []
                self._gate.release(keys)
        finally:
            if self._executor is not None:
                self._executor.close(self.settings.drain_timeout_ms / 1000)
            self._poll_thread = None

    def close(self) -> None:
        """Commit what was finished (unless manual), leave the group, close the sink."""
        try:
            self.commit_stage.hand_over(self.trackers.all(), self._held)
        finally:
            try:
                self.client.close()  # its last revoke is handled like any other
            finally:
                self.sink.close()

    def commit_now(self) -> None:
        """Commit every owned partition's watermark (``commit()`` in manual mode).

        From another thread while :meth:`run` is running, the loop does it on its next
        turn (within half a second) and this waits for it.
        """
        stage = self.commit_stage
        if self._poll_thread not in (None, threading.get_ident()):
            self._committed.clear()
            self._commit_requested.set()
            self.completions.wake.set()
            self._committed.wait(30)
            return
        if isinstance(stage, GroupCommit):
            stage.commit_now(self.trackers.all())


def _end_span(work: Work) -> None:
    """End the span a failed handler call left open (its fate is recorded)."""
    if work.span is not NO_PROCESS_SPAN:
        work.span.end()
        work.span = NO_PROCESS_SPAN
