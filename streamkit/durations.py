"""Durations written the way people write them: ``500ms``, ``5s``, ``1m``, ``10m``, ``2h``, ``7d``.

Used by settings (``STREAMKIT_CONSUMER__RETRY_DELAYS=5s,1m,10m``) and by the ``streamkit
dlq`` command (``--since 2h``). A bare number is seconds.
"""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``"1m"`` → 60.0; ``"1.5s"`` → 1.5; ``"30"`` → 30.0).

    Raises:
        ValueError: not a number followed by one of ms, s, m, h, d.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (ms, s, m, h, d), e.g. 5s, 1m"
        )
    return float(match["amount"]) * _UNITS[match["unit"] or "s"]
