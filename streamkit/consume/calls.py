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

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from streamkit.consume.work import Work
from streamkit.observability.tracing import ProcessSpan, Tracing
from streamkit.serde.events import Event

__all__ = ["AsyncCall", "BatchCall", "HandlerCalls", "SyncCall"]

SyncCall = Callable[[Work], Any]
AsyncCall = Callable[[Work], Awaitable[Any]]
BatchCall = Callable[[Sequence[Work]], Any]


class _HandlerSpan:
    """The message's consumer span, current while the handler runs (on its thread, or
    in its task's own context). A class, not a generator: this is the traced hot path."""

    __slots__ = ("_span", "_token", "_work")

    def __init__(self, tracing: Tracing, group: str, work: Work) -> None:
        self._span: ProcessSpan = tracing.process(work.message, group)
        self._work = work

    def __enter__(self) -> None:
        self._token = self._span.activate()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if exc is not None:
            span.fail(exc)
            self._work.span = span  # the pipeline records its decision, then ends it
            span.deactivate(self._token)
            return
        span.deactivate(self._token)
        span.end()


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

    def sync(self, handler: Callable[[Event[Any]], Any]) -> SyncCall:
        """The call of a sync ``handler``."""
        if not self._tracing.enabled:

            def call(work: Work) -> Any:
                return handler(work.event)  # type: ignore[arg-type]  # dispatched: decoded

            return call
        tracing, group = self._tracing, self._group

        def traced(work: Work) -> Any:
            with _HandlerSpan(tracing, group, work):
                return handler(work.event)  # type: ignore[arg-type]

        return traced

    def coroutine(self, handler: Callable[[Event[Any]], Awaitable[Any]]) -> AsyncCall:
        """The call of a coroutine ``handler`` (run as a task of its own)."""
        if not self._tracing.enabled:

            def call(work: Work) -> Awaitable[Any]:
                return handler(work.event)  # type: ignore[arg-type]

            return call
        tracing, group = self._tracing, self._group

        async def traced(work: Work) -> Any:
            with _HandlerSpan(tracing, group, work):
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
