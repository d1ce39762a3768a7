"""Decode step: a polled message becomes an :class:`~streamkit.serde.events.Event`.

Three outcomes, told apart here once for every face: decoded; undecodable (the bytes are
bad: the message goes to the dead-letter topic at once); or the writer schema cannot be
fetched because the registry is unreachable (the message is fine: it waits for the
registry, see :mod:`streamkit.consume.dependencies`).

A message read from a retry topic is decoded as the event it was when first read: its
source topic (whose reader schema applies), partition and offset.
"""

from __future__ import annotations

from collections.abc import Callable

from streamkit.consume.processing import KafkaMessage
from streamkit.consume.work import Work
from streamkit.errors import DeserializationError, RegistryError
from streamkit.serde.events import EventDecoder

__all__ = ["Decode", "Origin"]

Origin = Callable[[KafkaMessage], tuple[str, int, int] | None]


class Decode:
    """Decodes works' messages with ``decoder`` (writer schemas from the registry).

    Args:
        decoder: the event decoder.
        origin: where a message was first read, when not where it was read now (a
            retry topic's message); None for the others.
    """

    def __init__(self, decoder: EventDecoder, origin: Origin | None = None) -> None:
        self._decoder = decoder
        self._origin = origin

    def with_origin(self, origin: Origin) -> Decode:
        """This decode step, placing retried messages where they were first read."""
        return Decode(self._decoder, origin)

    def __repr__(self) -> str:
        return f"Decode({self._decoder!r})"

    def __call__(self, work: Work) -> DeserializationError | RegistryError | None:
        """Set ``work.event``; or return why not: a :class:`DeserializationError` (bad
        bytes) or a transient :class:`RegistryError` (registry unreachable)."""
        message = work.message
        tracker = work.tracker
        first = self._origin(message) if self._origin is not None else None
        topic, partition, offset = first or (tracker.topic, tracker.partition, work.offset)
        try:
            work.event = self._decoder.decode(
                message.value(),
                topic=topic,
                partition=partition,
                offset=offset,
                key=message.key(),
                headers=message.headers(),
            )
        except (DeserializationError, RegistryError) as exc:
            return exc
        return None
