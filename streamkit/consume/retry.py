"""What happens to a message whose handler failed: try again later, or send it on.

A :class:`RetryPolicy` answers each failure with a decision:

- :class:`RetryLater`: call the handler again after a delay. The message keeps its
  lane (its key's later events wait behind it) but not its handler slot: other keys
  run meanwhile, and the poll thread is never held.
- :class:`Forward`: produce the message to another topic (the dead-letter topic today;
  a delayed retry topic is another policy's answer); its offset is finished once that
  topic acknowledged it.

:class:`InPlaceRetry` is the default: ``max_retries`` attempts after the first, with
exponential backoff from ``retry_backoff_ms`` capped at ``retry_backoff_max_ms``, then
the dead-letter topic (``<topic><dead_letter_suffix>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamkit.consume.dead_letter import DeadLetter, dead_letter
from streamkit.consume.work import Work
from streamkit.settings import ConsumerSettings

__all__ = ["Decision", "Forward", "InPlaceRetry", "RetryLater", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Call the handler again in ``delay_s`` seconds."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Forward:
    """Produce ``letter`` and finish the message once it is acknowledged.

    ``reason`` labels the metric (``undecodable``, ``handler_failed``); ``error`` is
    what failed.
    """

    letter: DeadLetter
    reason: str
    error: BaseException


Decision = RetryLater | Forward


class RetryPolicy(Protocol):
    """Decides the fate of a failed message."""

    def on_failure(self, work: Work, error: BaseException) -> Decision:
        """``work`` failed with ``error`` after ``work.attempts`` handler calls."""
        ...

    def on_undecodable(self, work: Work, error: BaseException) -> Forward:
        """``work``'s message cannot be decoded (retrying cannot help)."""
        ...


class InPlaceRetry:
    """Retries with exponential backoff, then the dead-letter topic.

    Args:
        settings: ``max_retries``, ``retry_backoff_ms``, ``retry_backoff_max_ms`` and
            ``dead_letter_suffix``.
        group: the consumer group, written into the dead letter's headers.
        retriable: which errors are worth another call (default: all); the others go
            to the dead-letter topic at once.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        group: str,
        retriable: Callable[[BaseException], bool] = lambda _error: True,
    ) -> None:
        self._settings = settings
        self._group = group
        self._retriable = retriable

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"InPlaceRetry(max_retries={s.max_retries}, backoff_ms={s.retry_backoff_ms}, "
            f"backoff_max_ms={s.retry_backoff_max_ms})"
        )

    def delay_s(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based): doubling, capped."""
        s = self._settings
        return float(min(s.retry_backoff_ms * 2 ** (retry - 1), s.retry_backoff_max_ms) / 1000)

    def on_failure(self, work: Work, error: BaseException) -> Decision:
        if work.attempts <= self._settings.max_retries and self._retriable(error):
            return RetryLater(self.delay_s(work.attempts))
        return self._forward(work, error, "handler_failed")

    def on_undecodable(self, work: Work, error: BaseException) -> Forward:
        return self._forward(work, error, "undecodable")

    def _forward(self, work: Work, error: BaseException, reason: str) -> Forward:
        letter = dead_letter(
            work.message,
            error,
            attempts=work.attempts,
            group=self._group,
            suffix=self._settings.dead_letter_suffix,
        )
        return Forward(letter, reason, error)
