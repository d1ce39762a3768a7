"""asyncio face of the consume pipeline, for async services.

The handler is a coroutine function; it runs as tasks on the service's own event loop
(up to ``concurrency`` at once, one key at a time under ``ordering="key"``), so it can
use the service's async clients, e.g. ``await producer.send_async(...)``. Polling,
decoding, deduplication, retries, dead letters and commits are the very same code as
the synchronous consumer's: the pipeline's poll loop runs in a worker thread and hands
each polled batch to the loop with one ``call_soon_threadsafe`` (never one hop per
message); a finishing task starts the next task of its slot itself.
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

AsyncHandler = Callable[[Event[Any]], Coroutine[Any, Any, Any]]


def _not_called(_event: Event[Any]) -> None:  # pragma: no cover - the async executor runs instead
    raise RuntimeError("AsyncEventConsumer runs its handler as tasks on the loop")


class AsyncEventConsumer:
    """Runs a coroutine handler over the events of one or more topics, as a group member.

    Args:
        topics: topics to subscribe to.
        handler: ``async def handler(event)``; raising means failure (retried, then
            dead-lettered).
        **options: every keyword argument of :class:`~streamkit.consume.consumer.EventConsumer`
            (``settings``, ``dedup``, ``concurrency``, ``ordering``, ``max_in_flight``,
            ``reader_schemas``, ``batch_size``, ``payload_type``, ``tracer_provider``, ...),
            except ``batch_handler``.
    """

    def __init__(self, topics: Sequence[str], handler: AsyncHandler, **options: Any) -> None:
        if "batch_handler" in options:
            raise TypeError("AsyncEventConsumer takes a coroutine handler, not batch_handler")
        self._handler = handler
        self._consumer = EventConsumer(topics, _not_called, **options)

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

    @property
    def consumer(self) -> EventConsumer:
        """The synchronous face running the poll loop."""
        return self._consumer

    async def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        handle_signals: bool = True,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`, SIGTERM/SIGINT, or a bound is reached.

        The handlers in flight are finished and committed before this returns.
        """
        loop = asyncio.get_running_loop()
        pipeline = self._consumer.pipeline
        executor = pipeline.async_executor_for(self._handler, loop)
        installed = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, self.stop)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError):  # not the main thread / loop
                    break
        try:
            return await asyncio.to_thread(
                self._consumer.run_with,
                executor,
                max_messages=max_messages,
                idle_timeout_s=idle_timeout_s,
            )
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def stop(self) -> None:
        """Ask :meth:`run` to stop taking messages, finish the handlers in flight,
        commit, and return."""
        self._consumer.stop()

    def commit(self) -> None:
        """Commit the offsets of every message finished so far (manual mode)."""
        self._consumer.commit()

    def is_alive(self) -> bool:
        """See :meth:`EventConsumer.is_alive`."""
        return self._consumer.is_alive()

    def is_ready(self) -> bool:
        """See :meth:`EventConsumer.is_ready`."""
        return self._consumer.is_ready()

    async def close(self) -> None:
        """Commit what was finished, leave the group, release clients."""
        await asyncio.to_thread(self._consumer.close)
