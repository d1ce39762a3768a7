"""The decode stage: a message's bytes become an :class:`~streamkit.serde.events.Event`.

Decoding fails in two ways: the bytes are not an event of a known schema (the message is
bad, or the payload does not fit the face's ``payload_type``: the message goes to the
dead-letter topic at once); or the writer schema cannot be fetched because the registry
is unreachable (the message is fine: it waits for the registry, see
:mod:`streamkit.consume.dependencies`).

With a ``payload_type``, the payload becomes its pydantic model here
(:class:`~streamkit.serde.payloads.PayloadModels`), so the handler gets ``Event[Model]``.
A message read from a retry topic is decoded as the event it was when first read: its
source topic (whose reader schema applies), partition and offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from streamkit.consume.processing import KafkaMessage
from streamkit.consume.work import Work
from streamkit.errors import DeserializationError, RegistryError
from streamkit.serde.events import EventDecoder
from streamkit.serde.payloads import PayloadModels, PayloadType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from streamkit.serde.registry import SchemaRegistry
    from streamkit.serde.schemas import AvroSchema

__all__ = ["Decode", "Origin"]

Origin = Callable[[KafkaMessage], tuple[str, int, int] | None]


class Decode:
    """Decodes works' messages with ``decoder`` (writer schemas from the registry), and
    validates their payloads into ``models`` when given.

    Args:
        decoder: the event decoder.
        models: the face's payload models, or None for dict payloads.
        origin: where a message was first read, when not where it was read now (a
            retry topic's message); None for the others.
    """

    def __init__(
        self,
        decoder: EventDecoder,
        models: PayloadModels | None = None,
        origin: Origin | None = None,
    ) -> None:
        self._decoder = decoder
        self._models = models
        self._origin = origin

    def __repr__(self) -> str:
        return f"Decode({self._decoder!r}, {self._models!r})"

    @classmethod
    def of(
        cls,
        registry: SchemaRegistry,
        reader_schemas: Mapping[str, AvroSchema] | None = None,
        payload_type: PayloadType | None = None,
    ) -> Decode:
        """The decode step of a face: writer schemas from ``registry``, optional reader
        schemas per topic, payloads into ``payload_type``'s models when given."""
        models = PayloadModels(payload_type, registry) if payload_type is not None else None
        return cls(EventDecoder(registry, reader_schemas), models)

    def with_origin(self, origin: Origin) -> Decode:
        """This decode step, placing retried messages where they were first read."""
        return Decode(self._decoder, self._models, origin)

    def __call__(self, work: Work) -> DeserializationError | RegistryError | None:
        """Set ``work.event``; or return why not: a :class:`DeserializationError` (bad
        bytes, or a payload that does not fit its model) or a transient
        :class:`RegistryError` (registry unreachable)."""
        message = work.message
        tracker = work.tracker
        first = self._origin(message) if self._origin is not None else None
        topic, partition, offset = first or (tracker.topic, tracker.partition, work.offset)
        try:
            event = self._decoder.decode(
                message.value(),
                topic=topic,
                partition=partition,
                offset=offset,
                key=message.key(),
                headers=message.headers(),
            )
            if self._models is not None:
                self._models.typed(event)
        except (DeserializationError, RegistryError) as exc:
            return exc
        work.event = event
        return None
