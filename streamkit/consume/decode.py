"""Decode step: a polled message becomes an :class:`~streamkit.serde.events.Event`.

Three outcomes, told apart here once for every face: decoded; undecodable (the bytes are
bad: the message goes to the dead-letter topic at once); or the writer schema cannot be
fetched because the registry is unreachable (the message is fine: it waits for the
registry, see :mod:`streamkit.consume.dependencies`).
"""

from __future__ import annotations

from streamkit.consume.work import Work
from streamkit.errors import DeserializationError, RegistryError
from streamkit.serde.events import EventDecoder

__all__ = ["Decode"]


class Decode:
    """Decodes works' messages with ``decoder`` (writer schemas from the registry)."""

    def __init__(self, decoder: EventDecoder) -> None:
        self._decoder = decoder

    def __repr__(self) -> str:
        return f"Decode({self._decoder!r})"

    def __call__(self, work: Work) -> DeserializationError | RegistryError | None:
        """Set ``work.event``; or return why not: a :class:`DeserializationError` (bad
        bytes) or a transient :class:`RegistryError` (registry unreachable)."""
        message = work.message
        try:
            work.event = self._decoder.decode(
                message.value(),
                topic=work.tracker.topic,
                partition=work.tracker.partition,
                offset=work.offset,
                key=message.key(),
                headers=message.headers(),
            )
        except (DeserializationError, RegistryError) as exc:
            return exc
        return None
