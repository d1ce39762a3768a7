"""The pure parts of dead-letter operations: reading headers, selections, masking."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamkit.consume.dead_letter import dead_letter
from streamkit.errors import DeserializationError
from streamkit.ops.dlq import (
    HEADER_REPLAYED_FROM,
    DeadLetter,
    DeadLetterSelection,
    parse_instant,
    replay_group,
    replay_headers,
)
from streamkit.ops.dlq.summary import _masked_payload, _Samples
from streamkit.settings import StreamkitSettings
from tests.fakes import message

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class DlqMessage:
    """A message read back from a dead-letter topic."""

    _headers: list[tuple[str, Any]] = field(default_factory=list)
    _partition: int = 1
    _offset: int = 9
    _timestamp: int = 1_700_000_000_000

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"

    def headers(self) -> list[tuple[str, Any]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


def _letter(error: BaseException, **where: Any) -> DeadLetter:
    built = dead_letter(
        message(headers=[("event-id", b"e-1"), ("trace", b"t")]),
        error,
        attempts=3,
        group="billing",
        suffix=".dlq",
    )
    return DeadLetter.of(DlqMessage(built.headers, **where))  # type: ignore[arg-type]


def test_dead_letter_headers_are_read() -> None:
    letter = _letter(RuntimeError("db down"))
    assert letter.reason == "handler_failed"
    assert letter.error_type == "builtins.RuntimeError"
    assert letter.error == "RuntimeError: db down"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("orders", 2, 41)
    assert letter.source == "orders[2]"
    assert letter.attempts == 3
    assert letter.group == "billing"
    assert [entry.attempt for entry in letter.history] == [3]
    assert letter.failed_at == letter.history[0].failed_at


def test_undecodable_and_foreign_messages_have_their_reason() -> None:
    assert _letter(DeserializationError("bad bytes")).reason == "undecodable"
    foreign = DeadLetter.of(DlqMessage([("x", b"1")]))  # type: ignore[arg-type]
    assert (foreign.reason, foreign.source, foreign.failed_at) == (
        "unknown",
        "?[?]",
        1_700_000_000_000,
    )


def test_replay_headers_drop_hop_headers_and_keep_history() -> None:
    letter = _letter(RuntimeError("x"))
    headers = replay_headers(letter, "orders.dlq")
    names = [name for name, _ in headers]
    assert names == ["event-id", "trace", "attempt-history", HEADER_REPLAYED_FROM]
    assert headers[-1] == (HEADER_REPLAYED_FROM, b"orders.dlq[1]@9")
    # A copy replayed once more keeps one replayed-from: the newest.
    again = DeadLetter.of(DlqMessage([*headers, ("retry-attempt", b"2")]))  # type: ignore[arg-type]
    assert [v for k, v in replay_headers(again, "orders.dlq") if k == HEADER_REPLAYED_FROM] == [
        b"orders.dlq[1]@9"
    ]


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (DeadLetterSelection(), True),
        (DeadLetterSelection(reason="handler_failed"), True),
        (DeadLetterSelection(reason="undecodable"), False),
        (DeadLetterSelection(error_type="RuntimeError"), True),
        (DeadLetterSelection(error_type="builtins.RuntimeError"), True),
        (DeadLetterSelection(error_type="Error"), False),
        (DeadLetterSelection(error_type="ValueError"), False),
    ],
)
def test_selection_matches(selection: DeadLetterSelection, selected: bool) -> None:
    assert selection.matches(_letter(RuntimeError("x"))) is selected


def test_selection_since_bound() -> None:
    letter = _letter(RuntimeError("x"))
    assert DeadLetterSelection().matches(letter, since_ms=letter.failed_at)
    assert not DeadLetterSelection().matches(letter, since_ms=letter.failed_at + 1)


def test_selection_refuses_bad_reason_and_time() -> None:
    with pytest.raises(ValueError, match="not one of undecodable, handler_failed, unknown"):
        DeadLetterSelection(reason="handler-failed")
    with pytest.raises(ValueError, match="not a time"):
        DeadLetterSelection(since="last tuesday")


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2026-04-30", datetime(2026, 4, 30, tzinfo=UTC)),
        ("2026-04-30T10:00:00Z", datetime(2026, 4, 30, 10, tzinfo=UTC)),
        ("2026-04-30T10:00:00+02:00", datetime(2026, 4, 30, 8, tzinfo=UTC)),
    ],
)
def test_parse_instant(text: str, instant: datetime) -> None:
    assert parse_instant(text, now=NOW) == instant


def test_each_selection_is_a_job_of_its_own() -> None:
    whole = replay_group("orders.dlq")
    assert whole == "streamkit-dlq-replay.orders.dlq"
    assert replay_group("orders.dlq", DeadLetterSelection(until="1h")) == whole
    by_reason = replay_group("orders.dlq", DeadLetterSelection(reason="handler_failed"))
    by_type = replay_group("orders.dlq", DeadLetterSelection(error_type="KeyError"))
    assert len({whole, by_reason, by_type}) == 3
    assert by_reason.startswith(whole + ".")
    # A relative bound is the same job on every run.
    assert replay_group("o.dlq", DeadLetterSelection(since="2h")) == replay_group(
        "o.dlq", DeadLetterSelection(since="2h")
    )


def test_secret_looking_payload_fields_are_masked() -> None:
    payload = {
        "user": "ann",
        "password": "hunter2",
        "card": {"number": "4111", "api_key": "k", "items": [{"token": "t", "sku": "s"}]},
        "Authorization": "Bearer x",
    }
    assert _masked_payload(payload) == {
        "user": "ann",
        "password": "**********",
        "card": {"number": "4111", "api_key": "**********", "items": [
            {"token": "**********", "sku": "s"}
        ]},
        "Authorization": "**********",
    }  # fmt: skip


def test_sample_masks_secret_headers_and_says_why_no_payload() -> None:
    built = dead_letter(
        message(
            headers=[("authorization", b"Bearer abc"), ("x-api-key", b"k"), ("trace", b"\xff")]
        ),
        RuntimeError("x"),
        attempts=1,
        group="g",
        suffix=".dlq",
    )
    letter = DeadLetter.of(DlqMessage(built.headers))  # type: ignore[arg-type]
    sample = _Samples(StreamkitSettings()).sample(letter)
    shown = dict(sample.headers)
    assert shown["authorization"] == "**********"
    assert shown["x-api-key"] == "**********"
    assert shown["trace"] == "0xff"
    assert sample.payload is None
    assert sample.decode_error is not None
    assert "STREAMKIT_SCHEMA_REGISTRY__URL" in sample.decode_error
