from __future__ import annotations

import pytest

from streamkit.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("1m", 60.0), ("10m", 600.0), ("2h", 7200.0), ("7d", 604800.0),
     ("1.5s", 1.5), ("30", 30.0), (" 2 M ", 120.0)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5 weeks", "-1s", "1m30s", "five"])
def test_parse_duration_refuses_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: .*ms, s, m, h, d"):
        parse_duration(text)
