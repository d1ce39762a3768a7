"""One dead letter read from its headers, and which dead letters a replay selects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import Message

from streamkit.consume.history import FailedAttempt, attempt_history
from streamkit.durations import parse_duration
from streamkit.errors import DeserializationError
from streamkit.serde.events import Headers, header_value, int_header

__all__ = [
    "HANDLER_FAILED",
    "HEADER_REPLAYED_FROM",
    "REASONS",
    "UNDECODABLE",
    "UNKNOWN",
    "DeadLetter",
    "DeadLetterSelection",
    "as_instant",
    "epoch_ms",
    "parse_instant",
    "replay_group",
    "replay_headers",
]

HEADER_REPLAYED_FROM = "replayed-from"
UNDECODABLE = "undecodable"
HANDLER_FAILED = "handler_failed"
UNKNOWN = "unknown"
REASONS = (UNDECODABLE, HANDLER_FAILED, UNKNOWN)
"""Reasons a dead letter is counted and selected by: decoding failed, the handler kept
failing, or the message carries no ``dlq-error-type`` header (not written by streamkit)."""

# Headers that describe one hop (a dead letter, a retry): a replayed copy starts afresh.
_HOP_HEADER_PREFIXES = ("dlq-", "retry-")
_UNDECODABLE_TYPE = f"{DeserializationError.__module__}.{DeserializationError.__qualname__}"


def _text(headers: Headers, name: str) -> str | None:
    value = header_value(headers, name)
    return value.decode(errors="replace") if value is not None else None


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter topic, its ``dlq-*`` headers read."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    failed_at: int
    """Epoch milliseconds: ``dlq-failed-at``, else the message timestamp."""
    reason: str
    """One of :data:`REASONS`."""
    error_type: str
    error: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    attempts: int | None
    group: str | None
    history: tuple[FailedAttempt, ...]

    @classmethod
    def of(cls, message: Message) -> DeadLetter:
        """Read the dead letter in ``message``."""
        raw = message.headers()
        items = raw.items() if isinstance(raw, dict) else raw or ()
        headers: Headers = [(k, v) for k, v in items if v is not None]
        error_type = _text(headers, "dlq-error-type")
        if error_type is None:
            reason = UNKNOWN
        else:
            reason = UNDECODABLE if error_type == _UNDECODABLE_TYPE else HANDLER_FAILED
        _, timestamp = message.timestamp()
        return cls(
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=headers,
            failed_at=int_header(headers, "dlq-failed-at") or max(timestamp, 0),
            reason=reason,
            error_type=error_type or "",
            error=_text(headers, "dlq-reason") or "",
            source_topic=_text(headers, "dlq-source-topic"),
            source_partition=int_header(headers, "dlq-source-partition"),
            source_offset=int_header(headers, "dlq-source-offset"),
            attempts=int_header(headers, "dlq-attempts"),
            group=_text(headers, "dlq-consumer-group"),
            history=tuple(attempt_history(headers)),
        )

    @property
    def source(self) -> str:
        """``topic[partition]`` the message was dead-lettered from (``?`` when unknown)."""
        partition = "?" if self.source_partition is None else self.source_partition
        return f"{self.source_topic or '?'}[{partition}]"


def _error_type_matches(wanted: str, error_type: str) -> bool:
    # ``RuntimeError`` selects ``builtins.RuntimeError``; a full name selects itself.
    return error_type == wanted or error_type.rpartition(".")[2] == wanted


def parse_instant(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00Z``; naive = UTC)
    or a duration before ``now`` (``30m``, ``2h``, ``7d``).

    Raises:
        ValueError: neither form.
    """
    try:
        return (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601 (2024-05-01T12:00:00Z) "
            "or a duration before now (30m, 2h, 7d)"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def as_instant(value: str | datetime | None) -> datetime | None:
    """``value`` as an aware datetime (text through :func:`parse_instant`)."""
    if value is None or isinstance(value, datetime):
        return value
    return parse_instant(value)


def epoch_ms(instant: datetime | None) -> int | None:
    """``instant`` in epoch milliseconds (None stays None)."""
    return None if instant is None else int(instant.timestamp() * 1000)


@dataclass(frozen=True)
class DeadLetterSelection:
    """Which dead letters a replay takes; every given condition must hold.

    Args:
        reason: one of :data:`REASONS`.
        error_type: ``module.Name`` of the exception, or its bare class name.
        since: dead-lettered at or after (a datetime, ISO 8601 text, or a duration
            before the run such as ``"2h"``).
        until: dead-lettered at or before; a run stops reading a partition at its first
            later message (the next run continues there).
    """

    reason: str | None = None
    error_type: str | None = None
    since: str | datetime | None = None
    until: str | datetime | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(f"reason {self.reason!r} is not one of {', '.join(REASONS)}")
        for bound in (self.since, self.until):
            as_instant(bound)  # refuse a bad time now, not in the middle of a replay

    def matches(self, letter: DeadLetter, since_ms: int | None = None) -> bool:
        """Whether ``letter`` is selected (``since_ms``: ``since`` resolved for this run)."""
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.error_type is not None and not _error_type_matches(
            self.error_type, letter.error_type
        ):
            return False
        return since_ms is None or letter.failed_at >= since_ms

    def job(self) -> str:
        """What identifies this selection's replay job (the time bound as written)."""
        parts = [
            f"{name}={value.isoformat() if isinstance(value, datetime) else value}"
            for name, value in (
                ("reason", self.reason),
                ("error-type", self.error_type),
                ("since", self.since),
            )
            if value is not None
        ]
        return ",".join(parts)


def replay_group(topic: str, selection: DeadLetterSelection | None = None) -> str:
    """The consumer group that keeps a replay job's position on ``topic``.

    ``streamkit-dlq-replay.<topic>`` for the whole topic; with filters, a short digest
    of the selection is appended, so each selection continues where it stopped.
    """
    job = (selection or DeadLetterSelection()).job()
    if not job:
        return f"streamkit-dlq-replay.{topic}"
    digest = hashlib.sha256(job.encode()).hexdigest()[:10]
    return f"streamkit-dlq-replay.{topic}.{digest}"


def replay_headers(letter: DeadLetter, topic: str) -> Headers:
    """The headers of ``letter``'s replayed copy: its own and its attempt history, without
    the ``dlq-*``/``retry-*`` headers of the last hop, plus ``replayed-from``."""
    kept: Headers = [
        (k, v)
        for k, v in letter.headers
        if not k.startswith(_HOP_HEADER_PREFIXES) and k != HEADER_REPLAYED_FROM
    ]
    kept.append((HEADER_REPLAYED_FROM, f"{topic}[{letter.partition}]@{letter.offset}".encode()))
    return kept
