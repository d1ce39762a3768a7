"""The validating encoder of each topic, its schema registered (or looked up) once.

:class:`EventEncoders` is what :class:`~streamkit.produce.producer.EventProducer` encodes
with, usable without a Kafka connection: the transactional outbox
(:class:`~streamkit.produce.outbox.Outbox`) encodes rows with it inside a database
transaction, so that a record that breaks its schema fails there, naming the field.
"""

from __future__ import annotations

import threading
from pathlib import Path

from streamkit.serde.events import EventEncoder
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet, load_schemas, subject_name
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["EventEncoders"]


class EventEncoders:
    """Encoders by (topic, schema name), each built once.

    Args:
        settings: resolved settings (default: :func:`~streamkit.settings.load_settings`).
        schemas: the loaded schemas or their directory (default ``schemas/``).
        registry: the schema registry face (default: built from settings).
        auto_register: register a topic's schema on first use (else look it up).
    """

    def __init__(
        self,
        settings: StreamkitSettings | None = None,
        *,
        schemas: SchemaSet | str | Path = "schemas",
        registry: SchemaRegistry | None = None,
        auto_register: bool = True,
    ) -> None:
        self.settings = settings or load_settings()
        self.schemas = schemas if isinstance(schemas, SchemaSet) else load_schemas(schemas)
        self._owns_registry = registry is None
        self.registry = registry or SchemaRegistry(self.settings)
        self.auto_register = auto_register
        #: The encoders built so far; the producer's hot path reads it directly.
        self.cache: dict[tuple[str, str | None], EventEncoder] = {}
        # Threads meeting a topic first register its schema once, not each in a race.
        self._building = threading.Lock()

    def __repr__(self) -> str:
        return f"EventEncoders(schemas={len(self.schemas)}, registry={self.registry!r})"

    def encoder(self, topic: str, schema: str | None = None) -> EventEncoder:
        """The encoder for ``topic`` (registering or looking up its schema once).

        Args:
            topic: destination topic.
            schema: full name of the value schema; default: the schema that declares
                ``streamkit.topic`` = ``topic``.
        """
        cached = self.cache.get((topic, schema))
        if cached is not None:
            return cached
        with self._building:
            return self.cache.get((topic, schema)) or self._build(topic, schema)

    def _build(self, topic: str, schema: str | None) -> EventEncoder:
        value_schema = self.schemas[schema] if schema else self.schemas.for_topic(topic)
        strategy = self.settings.schema_registry.subject_name_strategy
        subject = subject_name(strategy, topic, value_schema.name)
        if self.auto_register:
            schema_id = self.registry.register(subject, value_schema)
        else:
            schema_id = self.registry.lookup(subject, value_schema)
        encoder = EventEncoder(value_schema, schema_id)
        self.cache[(topic, schema)] = encoder
        return encoder

    def close(self) -> None:
        """Close the registry face when this object made it."""
        if self._owns_registry:
            self.registry.close()
