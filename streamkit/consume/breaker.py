"""The failure circuit breaker: stop taking messages when most of them fail.

A burst of failures is usually a bad deploy or a dependency down, not bad data; going
on would drain the topic into retry topics and the dead-letter topic. The breaker
judges the last ``failure_window`` outcomes (handler calls, and messages that cannot
be decoded). When more than ``failure_rate_limit`` of them failed it *opens*: the
consumer takes no new message (its partitions pause while it keeps polling, so it
stays in its group), ``/readyz`` answers 503, an error names the most frequent error
type, and ``streamkit_breaker_open`` is 1. Messages already in flight finish under
their own rules.

After ``failure_cooldown_ms`` it *probes*: one message at a time, each once nothing
else is held. A failed probe opens it again for another cool-down; after
:data:`PROBES_TO_CLOSE` successful probes it *closes* and the consumer takes messages
as before, with a fresh window.

Defaults (``0.5`` over ``200``) need more than 100 failures among the last 200
outcomes: a poison message or two, even retried, never trips it. ``1`` switches it off.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from streamkit.settings import ConsumerSettings

__all__ = ["PROBES_TO_CLOSE", "BreakerState", "FailureBreaker"]

log = logging.getLogger(__name__)

PROBES_TO_CLOSE = 3


class BreakerState(enum.Enum):
    """Whether the consumer takes messages."""

    CLOSED = "closed"
    """Taking messages."""
    OPEN = "open"
    """Taking none until the cool-down passed."""
    PROBING = "probing"
    """Taking one message at a time to see whether handlers succeed again."""


StateChange = Callable[["FailureBreaker"], None]


class FailureBreaker:
    """Counts recent failures and says how many messages the consumer may take.

    Args:
        limit: open when more than this share of the window failed (1: never).
        window: how many recent outcomes are judged.
        cooldown_s: how long it stays open before probing.
        who: names the consumer in log records.
        on_change: called after each change of :attr:`state` (metrics, readiness).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        limit: float,
        window: int,
        cooldown_s: float,
        who: str = "consumer",
        on_change: StateChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.cooldown_s = cooldown_s
        self._who = who
        self._on_change = on_change
        self._clock = clock
        self._outcomes: deque[str | None] = deque(maxlen=window)  # error type or None
        self._failures = 0
        self.state = BreakerState.CLOSED
        self.opened_at: float | None = None
        self.trips = 0
        self._probes_ok = 0

    @classmethod
    def from_settings(
        cls,
        settings: ConsumerSettings,
        *,
        who: str = "consumer",
        on_change: StateChange | None = None,
    ) -> FailureBreaker:
        """The breaker ``failure_rate_limit``, ``failure_window`` and
        ``failure_cooldown_ms`` describe."""
        return cls(
            limit=settings.failure_rate_limit,
            window=settings.failure_window,
            cooldown_s=settings.failure_cooldown_ms / 1000,
            who=who,
            on_change=on_change,
        )

    def __repr__(self) -> str:
        return (
            f"FailureBreaker({self.state.value}, failures={self._failures}/"
            f"{len(self._outcomes)}, limit={self.limit}, window={self.window})"
        )

    @property
    def enabled(self) -> bool:
        """Whether it can open at all (``limit`` below 1)."""
        return self.limit < 1

    @property
    def failure_rate(self) -> float:
        """Share of the window that failed (over the full window size)."""
        return self._failures / self.window

    @property
    def accepting(self) -> bool:
        """Whether the consumer takes messages freely (closed); readiness follows it."""
        return self.state is BreakerState.CLOSED

    def top_error(self) -> tuple[str, int] | None:
        """The most frequent error type in the window and its count."""
        counts = Counter(kind for kind in self._outcomes if kind is not None)
        return counts.most_common(1)[0] if counts else None

    def record(self, error_type: str | None) -> None:
        """One outcome: ``error_type`` (``module.Class``) of a failure, None for a success."""
        if self.state is BreakerState.PROBING:
            self._probe_result(error_type)
            return
        if len(self._outcomes) == self.window and self._outcomes[0] is not None:
            self._failures -= 1
        self._outcomes.append(error_type)
        if error_type is None:
            return
        self._failures += 1
        if (
            self.state is BreakerState.CLOSED
            and self.enabled
            and self._failures > self.limit * self.window
        ):
            self._open()

    def succeeded(self, count: int) -> None:
        """``count`` successes (a batch of handler calls that all succeeded)."""
        if self.state is not BreakerState.CLOSED:
            for _ in range(count):
                self.record(None)
            return
        outcomes = self._outcomes
        for _ in range(min(count, self.window)):
            if len(outcomes) == self.window and outcomes[0] is not None:
                self._failures -= 1
            outcomes.append(None)

    def room(self, held: int) -> int | None:
        """How many messages may be taken now: None (no limit), 0, or 1 (a probe, taken
        only once the ``held`` messages are all finished)."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if self._clock() - self.opened_at < self.cooldown_s:
                return 0
            self._change(BreakerState.PROBING)
            log.warning("%s: circuit breaker probing with one message at a time", self._who)
        return 1 if held == 0 else 0

    def reopen_in(self) -> float | None:
        """Seconds until an open breaker probes (None unless open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return None
        return max(0.0, self.opened_at + self.cooldown_s - self._clock())

    def _open(self) -> None:
        self.trips += 1
        self.opened_at = self._clock()
        self._probes_ok = 0
        top = self.top_error()
        log.error(
            "%s: circuit breaker open: %d of the last %d outcomes failed (limit %.0f%%); "
            "most frequent: %s (%d); taking no new message for %.0f s, then probing",
            self._who,
            self._failures,
            len(self._outcomes),
            self.limit * 100,
            top[0] if top else "?",
            top[1] if top else 0,
            self.cooldown_s,
        )
        self._change(BreakerState.OPEN)

    def _probe_result(self, error_type: str | None) -> None:
        if error_type is not None:
            self.opened_at = self._clock()
            self._probes_ok = 0
            log.error(
                "%s: circuit breaker probe failed (%s); open again for %.0f s",
                self._who,
                error_type,
                self.cooldown_s,
            )
            self._change(BreakerState.OPEN)
            return
        self._probes_ok += 1
        if self._probes_ok >= PROBES_TO_CLOSE:
            self._outcomes.clear()
            self._failures = 0
            self.opened_at = None
            log.warning("%s: circuit breaker closed: handlers succeed again", self._who)
            self._change(BreakerState.CLOSED)

    def _change(self, state: BreakerState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(self)
