"""asyncio face of :class:`~streamkit.consume.consumer.EventConsumer`, for async services.

The handler is a coroutine function and runs on the service's event loop, so it can
use the service's async clients. Polling, decoding, deduplication, retries, dead
letters and commits are the very same code as the synchronous consumer's (one
implementation of the at-least-once rules): it runs in a worker thread, as
``confluent_kafka.aio.AIOConsumer`` runs librdkafka calls in a thread pool, and hands
each event to the loop, waiting for the handler's outcome before it moves on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Self

from streamkit.consume.consumer import EventConsumer
from streamkit.consume.processing import ConsumerStats
from streamkit.serde.events import Event

__all__ = ["AsyncEventConsumer", "AsyncHandler"]

AsyncHandler = Callable[[Event], Coroutine[Any, Any, Any]]


class AsyncEventConsumer:
    """Runs a coroutine handler over the events of one or more topics, as a group member.

    Args:
        topics: topics to subscribe to.
        handler: ``async def handler(event)``; raising means failure (retried, then
            dead-lettered).
        **options: every keyword argument of :class:`~streamkit.consume.consumer.EventConsumer`
            (``settings``, ``dedup``, ``reader_schemas``, ``batch_size``, ...).
    """

    def __init__(self, topics: Sequence[str], handler: AsyncHandler, **options: Any) -> None:
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer = EventConsumer(topics, self._call_on_loop, **options)

    def __repr__(self) -> str:
        return f"Async{self._consumer!r}"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def stats(self) -> ConsumerStats:
        """Counters of the run."""
        return self._consumer.stats

    @property
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs currently assigned to this member."""
        return self._consumer.assignment

    def _call_on_loop(self, event: Event) -> Any:
        if self._loop is None:  # pragma: no cover - run() sets it first
            raise RuntimeError("AsyncEventConsumer.run() is not running")
        return asyncio.run_coroutine_threadsafe(self._handler(event), self._loop).result()

    async def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        The message in flight is finished and committed before this returns.
        """
        loop = self._loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, self.stop)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError):  # not the main thread / loop
                    break
        try:
            return await loop.run_in_executor(
                None,
                lambda: self._consumer.run(
                    max_messages=max_messages,
                    idle_timeout_s=idle_timeout_s,
                    handle_signals=False,
                ),
            )
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def stop(self) -> None:
        """Ask :meth:`run` to finish the message in flight, commit, and return."""
        self._consumer.stop()

    def commit(self) -> None:
        """Commit the offsets of every message handled so far (manual mode)."""
        self._consumer.commit()

    async def close(self) -> None:
        """Commit what was handled, leave the group, release clients."""
        await asyncio.get_running_loop().run_in_executor(None, self._consumer.close)
