"""The attempt history an event carries in its headers, across retries, dead letters, replays.

Every time streamkit gives up on a delivery of an event (it goes to a retry topic or to
the dead-letter topic), one ``attempt-history`` header is appended to the message: a
compact JSON object saying which attempt failed, when, with what error, where the
message was read and by which group. Kafka headers may repeat, so the history is the
list of these headers in order. Retry hops and ``streamkit dlq replay`` copy them (the
replay drops the ``dlq-*`` headers, not the history), so an event that fails again
after a replay lands in the dead-letter topic with its whole story.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Protocol

from streamkit.serde.events import Header, Headers, RawHeaders, header_items

__all__ = [
    "HEADER_ATTEMPT_HISTORY",
    "Delivery",
    "FailedAttempt",
    "attempt_history",
    "attempts_so_far",
    "error_type_name",
    "failed_attempt",
    "with_entry",
]

HEADER_ATTEMPT_HISTORY = "attempt-history"
_MAX_ERROR = 500


@dataclass(frozen=True)
class FailedAttempt:
    """One failed delivery of an event, as recorded in an ``attempt-history`` header.

    ``attempt`` counts handler calls over the event's whole life (a delivery retried in
    place three times adds three); ``attempt`` 0 means the message was never handed to
    the handler (it could not be decoded).
    """

    attempt: int
    failed_at: int
    """Epoch milliseconds."""
    error_type: str
    """``module.QualifiedName`` of the exception."""
    error: str
    """``Type: message``, cut to 500 characters."""
    topic: str
    partition: int
    offset: int
    group: str

    def header(self) -> Header:
        """The ``attempt-history`` header of this entry."""
        text = json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)
        return (HEADER_ATTEMPT_HISTORY, text.encode())

    @classmethod
    def parse(cls, value: bytes | str) -> FailedAttempt | None:
        """The entry in a header value, or None if it is not one (written by someone else)."""
        try:
            data = json.loads(value)
            return cls(
                attempt=int(data["attempt"]),
                failed_at=int(data["failed_at"]),
                error_type=str(data["error_type"]),
                error=str(data["error"]),
                topic=str(data["topic"]),
                partition=int(data["partition"]),
                offset=int(data["offset"]),
                group=str(data["group"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def error_type_name(error: BaseException) -> str:
    """``module.QualifiedName`` of ``error``'s class (``builtins.RuntimeError``)."""
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def attempt_history(headers: RawHeaders) -> list[FailedAttempt]:
    """The failed attempts recorded in ``headers``, oldest first."""
    history = []
    for key, value in header_items(headers):
        if key == HEADER_ATTEMPT_HISTORY and value is not None:
            entry = FailedAttempt.parse(value)
            if entry is not None:
                history.append(entry)
    return history


def attempts_so_far(headers: RawHeaders) -> int:
    """Handler calls the history in ``headers`` accounts for (0 without a history)."""
    history = attempt_history(headers)
    return max((entry.attempt for entry in history), default=0)


class Delivery(Protocol):
    """Where a message was read, and its headers (a ``confluent_kafka.Message`` is one)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def headers(self) -> RawHeaders: ...


def failed_attempt(
    message: Delivery, error: BaseException, *, attempts: int, group: str
) -> FailedAttempt:
    """The history entry for ``message``, whose delivery just failed with ``error`` after
    ``attempts`` handler calls (``group`` gave up on it)."""
    reason = f"{type(error).__name__}: {error}"
    return FailedAttempt(
        attempt=attempts_so_far(message.headers()) + attempts,
        failed_at=time.time_ns() // 1_000_000,
        error_type=error_type_name(error),
        error=reason[:_MAX_ERROR],
        topic=str(message.topic()),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        group=group,
    )


def with_entry(headers: RawHeaders, entry: FailedAttempt) -> Headers:
    """``headers`` (None values dropped) followed by ``entry``'s history header."""
    kept: Headers = [(k, v) for k, v in header_items(headers) if v is not None]
    kept.append(entry.header())
    return kept
