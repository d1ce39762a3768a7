"""The handler call: how every executor calls a handler on a decoded work.

The pipeline wraps the face's handler once (:class:`HandlerCalls`) and gives the
executors the wrapped call, which takes the :class:`~streamkit.consume.work.Work`:

- untraced (OpenTelemetry absent or unset): the handler is called with ``work.event``,
  nothing more;
- traced: the call runs in the message's consumer span ``process <topic>``, current on
  the handler's thread or task (so whatever the handler sends is its child). A
  successful call ends the span; a failed call records the exception and leaves the
  span on ``work.span``, for the pipeline to record what follows (a retry, a dead
  letter) and end it. A batch handler runs in one span linked to every message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from streamkit.consume.work import Work
from streamkit.observability.tracing import Tracing
from streamkit.serde.events import Event

__all__ = ["AsyncCall", "BatchCall", "HandlerCalls", "SyncCall"]

SyncCall = Callable[[Work], Any]
AsyncCall = Callable[[Work], Awaitable[Any]]
BatchCall = Callable[[Sequence[Work]], Any]


class HandlerCalls:
    """Wraps handlers into the calls the executors make.

    Args:
        tracing: the tracing chosen when the face was built.
        group: the consumer group (a span attribute).
    """

    def __init__(self, tracing: Tracing, group: str) -> None:
        self._tracing = tracing
        self._group = group

    def __repr__(self) -> str:
        return f"HandlerCalls({self._tracing!r})"

    @contextmanager
    def _span(self, work: Work) -> Iterator[None]:
        """The message's consumer span, current while the handler runs."""
        span = self._tracing.process(work.message, self._group)
        token = span.activate()  # on this thread, or in this task's own context
        try:
            yield
        except BaseException as exc:
            span.fail(exc)
            work.span = span  # the pipeline records its decision, then ends it
            raise
        finally:
            span.deactivate(token)
        span.end()

    def sync(self, handler: Callable[[Event[Any]], Any]) -> SyncCall:
        """The call of a sync ``handler``."""
        if not self._tracing.enabled:

            def call(work: Work) -> Any:
                return handler(work.event)  # type: ignore[arg-type]  # dispatched: decoded

            return call

        def traced(work: Work) -> Any:
            with self._span(work):
                return handler(work.event)  # type: ignore[arg-type]

        return traced

    def coroutine(self, handler: Callable[[Event[Any]], Awaitable[Any]]) -> AsyncCall:
        """The call of a coroutine ``handler`` (run as a task of its own)."""
        if not self._tracing.enabled:

            def call(work: Work) -> Awaitable[Any]:
                return handler(work.event)  # type: ignore[arg-type]

            return call

        async def traced(work: Work) -> Any:
            with self._span(work):
                return await handler(work.event)  # type: ignore[arg-type]

        return traced

    def batch(self, handler: Callable[[list[Event[Any]]], Any]) -> BatchCall:
        """The call of a batch ``handler`` (one span linked to every message)."""
        tracing, group = self._tracing, self._group

        def call(works: Sequence[Work]) -> Any:
            events: list[Event[Any]] = [work.event for work in works]  # type: ignore[misc]
            if not tracing.enabled:
                return handler(events)
            with tracing.process_batch([work.message for work in works], group):
                return handler(events)

        return call
