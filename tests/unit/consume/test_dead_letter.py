"""Dead letters keep the original bytes and headers and say why."""

from __future__ import annotations

import pytest

from streamkit.consume.dead_letter import DLQ_HEADERS, dead_letter
from tests.fakes import message


def test_dead_letter_keeps_bytes_and_headers_and_adds_reason() -> None:
    record = message(headers=[("trace", b"t"), ("empty", None)])
    letter = dead_letter(record, ValueError("bad"), attempts=4, group="g", suffix=".dlq")
    headers = dict(letter.headers)
    assert letter.topic == "orders.dlq"
    assert (letter.key, letter.value) == (b"k", b"v")
    assert headers["trace"] == b"t"
    assert "empty" not in headers
    assert set(DLQ_HEADERS) <= headers.keys()
    assert headers["dlq-reason"] == b"ValueError: bad"
    assert headers["dlq-error-type"] == b"builtins.ValueError"
    assert headers["dlq-attempts"] == b"4"
    assert headers["dlq-source-partition"] == b"2"


@pytest.mark.parametrize("size", [10, 5000])
def test_dead_letter_reason_is_bounded(size: int) -> None:
    letter = dead_letter(message(), RuntimeError("x" * size), attempts=1, group="g", suffix=".dlq")
    assert len(dict(letter.headers)["dlq-reason"]) <= 2000
