"""Typed payloads: decoded records turned into pydantic models.

A consumer given ``payload_type=OrderPlaced`` hands its handler ``Event[OrderPlaced]``;
given a mapping from schema full name to model (a topic that carries several event
types), each payload becomes the model of its writer schema. :meth:`PayloadModels.typed`
is the per-event step: one ``model_validate`` of the record fastavro (or the JSON parser)
produced. A payload that does not fit raises
:class:`~streamkit.errors.DeserializationError` naming the field, so the consumer
dead-letters it with the reason instead of handing the handler a half-typed value.

The consume pipeline runs the step in its decode stage
(:class:`~streamkit.consume.decode.Decode`), once per event, for every face: on the poll
thread at concurrency 1 and for coroutine handlers, on the handler's own thread otherwise.
``bench/typed.py`` sets its CPU per event against the dict path (figures in
``bench/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from streamkit.errors import DeserializationError

if TYPE_CHECKING:
    from streamkit.serde.events import Event, WriterSchemaSource

__all__ = ["PayloadModels", "PayloadType", "field_path"]

PayloadType = type[BaseModel] | Mapping[str, type[BaseModel]]
"""One model for every payload, or a model per writer schema full name."""


def field_path(location: tuple[int | str, ...]) -> str:
    """pydantic's error location as the dotted path the schema errors use
    (``items[2].sku``)."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "<root>"


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:3]:
        problems.append(f"field {field_path(item['loc'])!r}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


class PayloadModels:
    """Resolves the model of each writer schema and validates payloads into it.

    Args:
        payload_type: one model class for every event, or a mapping from the writer
            schema's full name (``shop.events.OrderPlaced``; for an envelope schema,
            the envelope's name) to the model of its payload.
        schemas: resolves an event's writer schema id (the registry face, cached);
            only asked, once per schema id, when ``payload_type`` is a mapping.
    """

    __slots__ = ("_by_id", "_by_name", "_schemas", "_single")

    def __init__(self, payload_type: PayloadType, schemas: WriterSchemaSource) -> None:
        if isinstance(payload_type, type):
            if not issubclass(payload_type, BaseModel):
                raise TypeError(f"payload_type must be a pydantic model, not {payload_type!r}")
            self._single: type[BaseModel] | None = payload_type
            self._by_name: dict[str, type[BaseModel]] = {}
        else:
            self._single = None
            self._by_name = dict(payload_type)
            wrong = [n for n, m in self._by_name.items() if not issubclass(m, BaseModel)]
            if wrong:
                raise TypeError(f"payload_type maps {wrong} to classes that are not models")
        self._schemas = schemas
        self._by_id: dict[int | None, tuple[type[BaseModel] | None, str]] = {}

    def __repr__(self) -> str:
        if self._single is not None:
            return f"PayloadModels({self._single.__qualname__})"
        names = {name: model.__qualname__ for name, model in self._by_name.items()}
        return f"PayloadModels({names!r})"

    def _model_for(self, schema_id: int | None) -> tuple[type[BaseModel] | None, str]:
        """(the model of payloads written with this schema id, the schema's name)."""
        found = self._by_id.get(schema_id)
        if found is None:
            if self._single is not None:
                found = (self._single, "")
            else:
                name = self._schemas.schema_by_id(schema_id).name if schema_id is not None else ""
                found = (self._by_name.get(name), name)
            self._by_id[schema_id] = found
        return found

    def typed(self, event: Event[Any]) -> Event[Any]:
        """``event`` with its payload validated into the model of its writer schema.

        Raises:
            DeserializationError: no model for the writer schema, or the payload does
                not fit the model (the field named; the value is not echoed); where
                the event sits is attached.
            RegistryError: the writer schema of a mapped topic could not be resolved
                (``transient`` when the registry is unreachable).
        """
        model, name = self._model_for(event.schema_id)
        if model is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            reason = (
                f"no payload model for schema {name!r} (known: {known}); "
                "hint: add it to payload_type"
            )
            raise DeserializationError(
                reason, topic=event.topic, partition=event.partition, offset=event.offset
            )
        try:
            # The model's compiled validator itself: model_validate is a Python wrapper
            # around it, paid for every event.
            event.payload = model.__pydantic_validator__.validate_python(event.payload)
        except ValidationError as exc:
            raise DeserializationError(
                f"payload does not fit model {model.__qualname__}: {_describe(exc)}",
                topic=event.topic,
                partition=event.partition,
                offset=event.offset,
            ) from exc
        return event
