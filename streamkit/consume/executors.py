"""Where handlers run: on the poll thread, on a bounded thread pool, or as asyncio tasks.

An executor runs the works the :class:`~streamkit.consume.dispatch.Dispatcher` hands
out. After each handler call it asks the dispatcher for the next work of the freed slot
and starts it at once (no round trip through the poll thread), and it reports the
outcome through the :class:`Completions` queue, which the poll thread drains in batches
to do the bookkeeping (dedup marks, offsets, commits).

- :class:`InlineExecutor` (concurrency 1, sync handler): the handler runs on the poll
  thread, as a plain loop: no thread hop at all.
- :class:`ThreadExecutor` (concurrency N, sync handler): N daemon threads.
- :class:`AsyncExecutor` (coroutine handler): up to N tasks on the service's event loop;
  the poll thread hands a batch over with one ``call_soon_threadsafe``.

Each runs the handler through the call the pipeline made of it
(:class:`~streamkit.consume.calls.HandlerCalls`: the consumer span), given the work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from streamkit.consume.calls import AsyncCall, BatchCall, SyncCall
from streamkit.consume.dispatch import Dispatcher
from streamkit.consume.work import Work

__all__ = [
    "AsyncExecutor",
    "Completions",
    "Executor",
    "InlineExecutor",
    "ThreadExecutor",
]

log = logging.getLogger(__name__)

DecodeCall = Callable[[Work], Exception | None]
Timed = Callable[[Work, float], None]


class Completions:
    """Works whose handler call ended, handed from the runners to the poll thread.

    ``deque`` appends and pops are atomic, so runners never take a lock here; the
    :attr:`wake` event lets a poll thread that waits for room or for a drain return at
    once.
    """

    def __init__(self) -> None:
        self._done: deque[Work] = deque()
        self.wake = threading.Event()
        self.waiting = False  # the poll thread waits on :attr:`wake`
        self._wanted = 1

    def __len__(self) -> int:
        return len(self._done)

    def put(self, work: Work) -> None:
        """Report a work whose handler call ended (``work.error`` says how)."""
        done = self._done
        done.append(work)
        # Setting the event costs a lock and wakes a thread: only when someone waits
        # for this many.
        if self.waiting and len(done) >= self._wanted:
            self.wake.set()

    def wait(self, timeout_s: float, at_least: int = 1) -> None:
        """Block until ``at_least`` works are reported (or :meth:`wake` is set) or
        ``timeout_s`` passed."""
        self._wanted = at_least
        self.waiting = True
        self.wake.clear()
        if len(self._done) < at_least:  # those reported before ``waiting``: no wait
            self.wake.wait(timeout_s)
        self.waiting = False

    def take(self) -> list[Work]:
        """Every work reported so far (poll thread)."""
        done = self._done
        taken = []
        while done:
            taken.append(done.popleft())
        return taken


class _Runner:
    """What every executor holds: the handler, the dispatcher, the completion queue and
    the pipeline's recorder of handler calls."""

    def __init__(
        self, handler: Any, dispatcher: Dispatcher, completions: Completions, timed: Timed
    ) -> None:
        self._handler = handler
        self._dispatcher = dispatcher
        self._completions = completions
        self._timed = timed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._dispatcher!r})"

    def _step(self, work: Work) -> Work | None:
        """Run one sync handler call, report it, return the next work of the slot."""
        _call(self._handler, work, self._timed)
        # Read before the report: once reported, the poll thread may run the work again
        # (a retry), and ``work.error`` becomes that call's outcome.
        succeeded = work.error is None
        self._completions.put(work)
        return self._dispatcher.finish(work, advance=succeeded)


class Executor(Protocol):
    """Runs works handed out by the dispatcher."""

    def start(self, works: Sequence[Work]) -> None:
        """Start ``works`` (each has a slot)."""
        ...

    def close(self, timeout_s: float) -> None:
        """Stop taking works; wait up to ``timeout_s`` for the runners to end."""
        ...


def _call(handler: SyncCall, work: Work, timed: Timed) -> None:
    """Run the handler call on ``work``; the outcome goes into ``work.error``."""
    started = _begin(work)
    try:
        handler(work)
    except Exception as exc:
        _end(work, started, timed, exc)
    else:
        _end(work, started, timed, None)


def _begin(work: Work) -> float:
    work.attempts += 1
    return time.perf_counter()


def _end(work: Work, started: float, timed: Timed, error: Exception | None) -> None:
    work.error = error
    work.handled_at = time.perf_counter()
    timed(work, work.handled_at - started)


class InlineExecutor(_Runner):
    """Concurrency 1 with a sync handler: runs each work on the calling (poll) thread.

    :meth:`start` returns when the started work and every work the dispatcher hands out
    after it have run; ``stopping`` is checked between works, and a work not started
    because of it is given back to the dispatcher.
    """

    _handler: SyncCall

    def __init__(
        self,
        handler: SyncCall,
        dispatcher: Dispatcher,
        completions: Completions,
        timed: Timed,
        stopping: threading.Event,
    ) -> None:
        super().__init__(handler, dispatcher, completions, timed)
        self._stopping = stopping

    def run_in_order(self, works: Sequence[Work], until: float | None = None) -> int:
        """Run ``works`` one after the other (the fast path when nothing is parked):
        return how many ran and succeeded; the next one failed, or was not started
        because of ``stopping`` or because ``time.perf_counter()`` passed ``until``.
        Outcomes are the caller's to book."""
        handler, timed, stopping = self._handler, self._timed, self._stopping
        for index, work in enumerate(works):
            if stopping.is_set() or (until is not None and time.perf_counter() > until):
                return index
            _call(handler, work, timed)
            if work.error is not None:
                return index
        return len(works)

    def run_as_batch(
        self, call: BatchCall, works: Sequence[Work], delays: Iterator[float]
    ) -> tuple[bool, int]:
        """Hand every work's event to a batch handler at once, retrying in place (on the
        poll thread) after each of ``delays``. Returns whether it succeeded (then every
        work is reported handled) and how many retries it took; on failure the works are
        to be handled one by one."""
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                call(works)
            except Exception as exc:
                delay = next(delays, None)
                if delay is None or self._stopping.wait(delay):
                    log.warning("batch of %d events failed (%s); one by one now", len(works), exc)
                    return False, retries
                retries += 1
                continue
            done = time.perf_counter()
            self._timed(works[0], done - started)
            for work in works:
                work.attempts, work.error, work.handled_at = retries + 1, None, done
                self._completions.put(work)
            return True, retries

    def start(self, works: Sequence[Work]) -> None:
        for first in works:
            work: Work | None = first
            while work is not None:
                if self._stopping.is_set():
                    self._dispatcher.give_back(work)
                    break
                work = self._step(work)

    def close(self, timeout_s: float) -> None:
        pass


class ThreadExecutor(_Runner):
    """Concurrency N with a sync handler: N daemon threads run the works.

    Each thread also decodes the message of its work (``decode``), so that the poll
    thread, which feeds all of them, spends a few microseconds per message rather than
    the decode's tens. A message that cannot be decoded is reported like a failed call,
    with the decode error in ``work.error`` and ``work.event`` still None.
    """

    _handler: SyncCall

    def __init__(
        self,
        handler: SyncCall,
        dispatcher: Dispatcher,
        completions: Completions,
        timed: Timed,
        *,
        name: str,
        decode: DecodeCall,
    ) -> None:
        super().__init__(handler, dispatcher, completions, timed)
        self._decode = decode
        self._inbox: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
            for index in range(dispatcher.slots)
        ]
        for thread in self._threads:
            thread.start()

    def start(self, works: Sequence[Work]) -> None:
        for work in works:
            self._inbox.put(work)

    def _serve(self) -> None:
        while True:
            work = self._inbox.get()
            if work is None:  # close() sends one per thread
                return
            while work is not None:
                if work.event is None:
                    work.error = self._decode(work)
                    if work.error is not None:  # the poll thread decides its fate
                        self._completions.put(work)
                        work = self._dispatcher.finish(work, advance=False)
                        continue
                work = self._step(work)

    def close(self, timeout_s: float) -> None:
        for _ in self._threads:
            self._inbox.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(thread.is_alive() for thread in self._threads)
        if stuck:
            log.warning("%d handler threads still busy after %.1f s; left behind", stuck, timeout_s)


class AsyncExecutor(_Runner):
    """Coroutine handlers as up to N tasks on ``loop`` (the service's own event loop)."""

    _handler: AsyncCall

    def __init__(
        self,
        handler: AsyncCall,
        dispatcher: Dispatcher,
        completions: Completions,
        timed: Timed,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(handler, dispatcher, completions, timed)
        self._loop = loop
        # The loop keeps only weak references to tasks: these are the strong ones. Each
        # task removes itself when it ends (cheaper than a done-callback per task).
        self._tasks: dict[Work, asyncio.Task[None]] = {}

    @property
    def running_tasks(self) -> int:
        """Tasks alive on the loop."""
        return len(self._tasks)

    def start(self, works: Sequence[Work]) -> None:
        # One hop per batch, never one per message.
        if works:
            self._loop.call_soon_threadsafe(self._spawn_all, list(works))

    def _spawn_all(self, works: list[Work]) -> None:
        for work in works:
            self._spawn(work)

    def _spawn(self, work: Work) -> None:
        self._tasks[work] = self._loop.create_task(self._run(work))

    async def _run(self, work: Work) -> None:
        started = _begin(work)
        try:
            await self._handler(work)
        except Exception as exc:
            _end(work, started, self._timed, exc)
        else:
            _end(work, started, self._timed, None)
        del self._tasks[work]
        succeeded = work.error is None  # before the report (see _Runner._step)
        self._completions.put(work)
        following = self._dispatcher.finish(work, advance=succeeded)
        if following is not None:
            # The slot passes on at once; a task of its own keeps each handler's context
            # (contextvars, tracing) its own.
            self._spawn(following)

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._tasks:
            log.warning(
                "%d handler tasks still running after %.1f s; left on the loop",
                len(self._tasks),
                timeout_s,
            )
