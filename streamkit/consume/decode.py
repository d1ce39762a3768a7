"""Decode step: a polled message becomes an :class:`~streamkit.serde.events.Event`.

Three outcomes, told apart here once for every face: decoded; undecodable (the bytes are
bad, or the payload does not fit the face's ``payload_type``: the message goes to the
dead-letter topic at once); or the writer schema cannot be fetched because the registry
is unreachable (the message is fine: it waits for the registry, see
:mod:`streamkit.consume.dependencies`).

With a ``payload_type``, the payload becomes its pydantic model here
(:class:`~streamkit.serde.payloads.PayloadModels`), so the handler gets ``Event[Model]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamkit.consume.work import Work
from streamkit.errors import DeserializationError, RegistryError
from streamkit.serde.events import EventDecoder
from streamkit.serde.payloads import PayloadModels, PayloadType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from streamkit.serde.registry import SchemaRegistry
    from streamkit.serde.schemas import AvroSchema

__all__ = ["Decode"]


class Decode:
    """Decodes works' messages with ``decoder`` (writer schemas from the registry), and
    validates their payloads into ``models`` when given."""

    def __init__(self, decoder: EventDecoder, models: PayloadModels | None = None) -> None:
        self._decoder = decoder
        self._models = models

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

    def __call__(self, work: Work) -> DeserializationError | RegistryError | None:
        """Set ``work.event``; or return why not: a :class:`DeserializationError` (bad
        bytes) or a transient :class:`RegistryError` (registry unreachable)."""
        message = work.message
        try:
            event = self._decoder.decode(
                message.value(),
                topic=work.tracker.topic,
                partition=work.tracker.partition,
                offset=work.offset,
                key=message.key(),
                headers=message.headers(),
            )
            if self._models is not None:
                self._models.typed(event)
        except (DeserializationError, RegistryError) as exc:
            return exc
        work.event = event
        return None
