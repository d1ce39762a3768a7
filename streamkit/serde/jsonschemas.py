"""JSON Schema event schemas: the ``.json`` twin of :class:`~streamkit.serde.schemas.AvroSchema`.

A ``.json`` file in the schema directory holds one JSON Schema (draft-04, -06 or -07;
draft-07 when ``$schema`` is absent, as in Confluent's serializer). Its name is the
``title`` (else the file name), and, like an Avro event schema, it may declare its
topic with ``"streamkit.topic"``.

Records are validated with a validator compiled once per schema by ``fastjsonschema``
(``bench/json_validation.py``: 23 µs per order event against 395 µs for ``jsonschema``'s
cached validator). On the wire the value is UTF-8 JSON in the Confluent
format, which Confluent's ``JSONSerializer``/``JSONDeserializer`` read and write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import fastjsonschema

from streamkit.errors import SchemaLoadError, SchemaValidationError

__all__ = ["JSON_SCHEMA_DRAFTS", "JsonSchema"]

# fastjsonschema implements these; a later draft would be checked by draft-07 rules,
# silently, so it is refused at load time instead.
JSON_SCHEMA_DRAFTS = frozenset(
    f"{scheme}://json-schema.org/draft-{draft}/schema{tail}"
    for scheme in ("http", "https")
    for draft in ("04", "06", "07")
    for tail in ("", "#")
)
_TOPIC_ATTRIBUTE = "streamkit.topic"  # the same attribute as Avro's (schemas.TOPIC_ATTRIBUTE)
_ROOT = "data"  # fastjsonschema's name for the validated value in paths


@dataclass(frozen=True)
class JsonSchema:
    """One JSON Schema, compiled once for validation.

    Attributes:
        name: the schema's ``title`` (or the file name without ``.json``).
        definition: the JSON Schema document.
        path: the file it came from, if any.
    """

    name: str
    definition: dict[str, Any]
    path: Path | None = None
    schema_type: ClassVar[Literal["JSON"]] = "JSON"

    @property
    def text(self) -> str:
        """The definition as compact JSON, as registered."""
        return json.dumps(self.definition, separators=(",", ":"))

    @property
    def topic(self) -> str | None:
        """The topic the schema declares with ``streamkit.topic``."""
        topic = self.definition.get(_TOPIC_ATTRIBUTE)
        return topic if isinstance(topic, str) else None

    @property
    def field_names(self) -> frozenset[str]:
        """Top-level property names (empty when the schema is not an object)."""
        properties = self.definition.get("properties")
        return frozenset(properties) if isinstance(properties, Mapping) else frozenset()

    @cached_property
    def validator(self) -> Callable[[Any], Any]:
        """The compiled validator: returns the record, or raises fastjsonschema's error."""
        return _compile(self.definition, self.path)

    def validate(self, record: Any) -> None:
        """Check ``record`` against the schema.

        Raises:
            SchemaValidationError: naming the field path, what the schema expects
                there and the type found (``missing`` for an absent required property).
        """
        try:
            self.validator(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _validation_error(self.name, exc) from None

    @classmethod
    def from_definition(
        cls, definition: Mapping[str, Any] | str, *, path: Path | None = None
    ) -> JsonSchema:
        """Parse and compile a standalone schema, e.g. a writer schema from the registry.

        Raises:
            SchemaLoadError: not a JSON object, an unsupported draft, or an invalid schema.
        """
        try:
            raw = json.loads(definition) if isinstance(definition, str) else dict(definition)
        except ValueError as exc:
            raise SchemaLoadError(f"invalid JSON schema: {exc}", path=_where(path)) from exc
        if not isinstance(raw, dict):
            raise SchemaLoadError("a JSON schema must be a JSON object", path=_where(path))
        name = raw.get("title")
        if not isinstance(name, str) or not name:
            name = path.stem if path else "json-schema"
        schema = cls(name=name, definition=raw, path=path)
        _ = schema.validator  # compile now: a broken schema fails at load, not at first send
        return schema


def _where(path: Path | None) -> str | None:
    return str(path) if path else None


def _compile(definition: dict[str, Any], path: Path | None) -> Callable[[Any], Any]:
    draft = definition.get("$schema")
    if draft is not None and draft not in JSON_SCHEMA_DRAFTS:
        raise SchemaLoadError(
            f"unsupported JSON Schema draft {draft!r} (hint: use draft-07, "
            '"$schema": "http://json-schema.org/draft-07/schema#", or leave it out)',
            path=_where(path),
        )
    try:
        validator: Callable[[Any], Any] = fastjsonschema.compile(definition)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise SchemaLoadError(f"invalid JSON schema: {exc}", path=_where(path)) from exc
    return validator


def _field_path(name: str) -> str:
    """``data.payload.items[0]`` -> ``payload.items[0]`` (the Avro side's notation)."""
    if name == _ROOT:
        return "<root>"
    return name.removeprefix(f"{_ROOT}.") if name.startswith(f"{_ROOT}.") else name


def _label(definition: Any) -> str:
    """A short description of what a (sub-)schema accepts."""
    if not isinstance(definition, Mapping):
        return "any"
    if "type" in definition:
        kind = definition["type"]
        return " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in definition:
        return "one of " + ", ".join(str(item) for item in definition["enum"])
    if "$ref" in definition:
        return str(definition["$ref"]).rpartition("/")[2]
    if "const" in definition:
        return f"const {definition['const']!r}"
    return "any"


def _validation_error(schema: str, exc: fastjsonschema.JsonSchemaValueException) -> Exception:
    name = exc.name or _ROOT
    where = _field_path(name)
    actual = type(exc.value).__name__
    rule, rule_value = exc.rule, exc.rule_definition
    if rule == "required" and isinstance(exc.value, Mapping):
        missing = next((name for name in rule_value if name not in exc.value), "?")
        properties = (exc.definition or {}).get("properties", {})
        child = missing if where == "<root>" else f"{where}.{missing}"
        return SchemaValidationError(
            schema=schema, field=child, expected=_label(properties.get(missing)), actual="missing"
        )
    if rule == "type":
        expected = " | ".join(rule_value) if isinstance(rule_value, list) else str(rule_value)
        return SchemaValidationError(schema=schema, field=where, expected=expected, actual=actual)
    if rule in ("enum", "const"):
        expected = _label({rule: rule_value})
        # The value, not only its type: a wrong enum symbol is a string either way.
        return SchemaValidationError(
            schema=schema, field=where, expected=expected, actual=repr(exc.value)[:80]
        )
    # Constraints (minimum, maxLength, pattern, additionalProperties, ...): the library's
    # sentence names the rule without echoing the value, which may be sensitive.
    reason = exc.message.removeprefix(name).strip()
    return SchemaValidationError(
        schema=schema,
        field=where,
        expected=f"{rule} {rule_value!r}"[:120],
        actual=actual,
        reason=reason or f"breaks {rule}",
    )
