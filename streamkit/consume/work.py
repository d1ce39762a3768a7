"""The unit of work of the consume pipeline: one polled message on its way to commit."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from streamkit.observability.tracing import NO_PROCESS_SPAN, ProcessSpan

if TYPE_CHECKING:
    from confluent_kafka import Message

    from streamkit.consume.offsets import PartitionTracker
    from streamkit.serde.events import Event

__all__ = ["Work"]


class Work:
    """One polled message and what the pipeline knows about it.

    Attributes:
        message: the confluent-kafka message.
        tracker: the offset tracker of its partition at poll time (a partition that is
            revoked and assigned again gets a new tracker: late results of the old
            assignment never touch the new one).
        offset: the message's offset.
        lane: what it must not overtake (see :mod:`streamkit.consume.dispatch`); None
            for no order.
        event: the decoded event (None until decoded).
        claim: the dedup key claimed for it (None without a store or a claim).
        attempts: handler calls made so far.
        blocked: waiting for something other than a free handler slot (a retry's
            due time, a claim held elsewhere, a dependency); set by the pipeline.
        head: the first of its lane (only the head may run).
        dropped: left the pipeline while following in its lane (skipped when its turn
            comes).
        error: the exception of the last handler call, None after a success.
        handled_at: ``time.perf_counter()`` when the handler succeeded.
        span: the consumer span of the last failed handler call, open until the
            pipeline recorded what follows (:mod:`streamkit.consume.calls`);
            ``NO_PROCESS_SPAN`` otherwise.
    """

    __slots__ = (
        "attempts",
        "blocked",
        "claim",
        "dropped",
        "error",
        "event",
        "handled_at",
        "head",
        "lane",
        "message",
        "offset",
        "span",
        "tracker",
    )

    def __init__(
        self, message: Message, tracker: PartitionTracker, offset: int, lane: Hashable
    ) -> None:
        self.message = message
        self.tracker = tracker
        self.offset = offset
        self.lane = lane
        self.event: Event | None = None
        self.claim: str | None = None
        self.attempts = 0
        self.blocked = False
        self.head = False
        self.dropped = False
        self.error: BaseException | None = None
        self.handled_at = 0.0
        self.span: ProcessSpan = NO_PROCESS_SPAN

    def __repr__(self) -> str:
        return f"Work({self.tracker.topic}[{self.tracker.partition}]@{self.offset})"

    @property
    def topic(self) -> str:
        """The message's topic."""
        return self.tracker.topic

    @property
    def partition(self) -> int:
        """The message's partition."""
        return self.tracker.partition
