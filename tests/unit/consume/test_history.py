from __future__ import annotations

import pytest

from streamkit.consume.dead_letter import dead_letter
from streamkit.consume.history import (
    HEADER_ATTEMPT_HISTORY,
    FailedAttempt,
    attempt_history,
    attempts_so_far,
    failed_attempt,
    with_entry,
)
from tests.fakes import message


def _failure(headers: list[tuple[str, bytes | str | None]], attempts: int = 3) -> FailedAttempt:
    read = message(headers=headers, topic="orders", partition=1, offset=7)
    return failed_attempt(read, RuntimeError("db down"), attempts=attempts, group="billing")


def test_entry_round_trips_through_its_header() -> None:
    entry = _failure([])
    name, value = entry.header()
    assert name == HEADER_ATTEMPT_HISTORY
    assert FailedAttempt.parse(value) == entry
    assert entry.attempt == 3
    assert entry.error == "RuntimeError: db down"
    assert entry.error_type == "builtins.RuntimeError"


def test_attempts_accumulate_over_the_history() -> None:
    first = _failure([("event-id", b"e-1")])
    headers = with_entry([("event-id", b"e-1"), ("skipped", None)], first)
    assert headers == [("event-id", b"e-1"), first.header()]
    second = _failure(headers, attempts=1)
    assert second.attempt == 4
    both = with_entry(headers, second)
    assert attempt_history(both) == [first, second]
    assert attempts_so_far(both) == 4
    assert attempts_so_far([]) == 0


@pytest.mark.parametrize("value", [b"not json", b'{"attempt": 1}', b"[]", b'"text"'])
def test_foreign_history_headers_are_ignored(value: bytes) -> None:
    assert attempt_history([(HEADER_ATTEMPT_HISTORY, value)]) == []


def test_long_errors_are_cut() -> None:
    entry = failed_attempt(message(), ValueError("x" * 5000), attempts=1, group="g")
    assert len(entry.error) == 500


def test_dead_letter_appends_history_and_keeps_it_on_a_second_failure() -> None:
    read = message(headers=[("event-id", b"e-1")])
    letter = dead_letter(read, RuntimeError("no"), attempts=3, group="billing", suffix=".dlq")
    history = attempt_history(letter.headers)
    assert [(e.attempt, e.topic, e.partition, e.offset) for e in history] == [(3, "orders", 2, 41)]
    assert dict(letter.headers)["dlq-failed-at"] == str(history[0].failed_at).encode()
    # Replayed (dlq-* dropped, history kept) and failing again: the history grows.
    replayed = [(k, v) for k, v in letter.headers if not k.startswith("dlq-")]
    again = dead_letter(
        message(headers=replayed), KeyError("k"), attempts=3, group="b", suffix=".dlq"
    )
    assert [e.attempt for e in attempt_history(again.headers)] == [3, 6]
