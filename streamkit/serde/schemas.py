"""Event schemas: load ``.avsc`` (Avro) and ``.json`` (JSON Schema) files, validate records.

Both kinds share the :class:`EventSchema` protocol (name, text, schema type, topic,
``validate``), so the registry, the producer and the consumer treat them alike; JSON
Schema lives in :mod:`streamkit.serde.jsonschemas`.

Every ``.avsc`` file under a directory is parsed once with fastavro. A file may use
named types defined in other files, whatever the file names: files are parsed in
dependency order. Each schema is also rendered self-contained (referenced named types
inlined at first use), which is what gets registered, so any Confluent-compatible
registry and client can read it without schema references.

A top-level event schema names the topic it belongs to with the attribute
``"streamkit.topic"``; that is what ``streamkit schemas register`` uses with the
``topic`` subject naming strategy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast

from fastavro.schema import parse_schema

try:  # the compiled validator, called with the schema's named types (no re-parse per record)
    from fastavro._validation import _validate  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - pure-Python fastavro
    from fastavro._validation_py import _validate

from streamkit.errors import SchemaLoadError, SchemaValidationError
from streamkit.serde.jsonschemas import JsonSchema
from streamkit.serde.validation import Check, compile_check

__all__ = [
    "TOPIC_ATTRIBUTE",
    "AvroSchema",
    "EventSchema",
    "JsonSchema",
    "SchemaSet",
    "SchemaType",
    "SubjectNameStrategy",
    "ValueSchema",
    "load_schemas",
    "subject_name",
    "validate_record",
]

TOPIC_ATTRIBUTE = "streamkit.topic"
SubjectNameStrategy = Literal["topic", "record", "topic_record"]
_NAMED_TYPES = frozenset({"record", "enum", "fixed"})
_MISSING = object()
SchemaType = Literal["AVRO", "JSON"]


class EventSchema(Protocol):
    """What every value schema offers, whatever its type (Avro, JSON Schema)."""

    @property
    def name(self) -> str:
        """Full name (Avro ``namespace.Name``, JSON Schema ``title``)."""
        ...

    @property
    def text(self) -> str:
        """The definition as registered."""
        ...

    @property
    def schema_type(self) -> SchemaType:
        """The registry's ``schemaType``."""
        ...

    @property
    def topic(self) -> str | None:
        """The topic the schema declares with ``streamkit.topic``."""
        ...

    @property
    def field_names(self) -> frozenset[str]:
        """Top-level field names (empty when the record is not an object)."""
        ...

    def validate(self, record: Any) -> None:
        """Raise SchemaValidationError naming the failing field path, expected and actual."""
        ...


@dataclass(frozen=True)
class AvroSchema:
    """One parsed Avro schema.

    Attributes:
        name: full name (``namespace.Name``).
        definition: self-contained JSON definition (named types inlined at first use).
        parsed: fastavro's parsed form, ready for encoding.
        path: the file it came from, if any.
    """

    name: str
    definition: dict[str, Any]
    parsed: dict[str, Any] = field(repr=False, compare=False)
    path: Path | None = None
    schema_type: ClassVar[Literal["AVRO"]] = "AVRO"

    @property
    def text(self) -> str:
        """The definition as compact JSON, as registered."""
        return json.dumps(self.definition, separators=(",", ":"))

    @property
    def topic(self) -> str | None:
        """The topic the schema declares with ``streamkit.topic``."""
        topic = self.definition.get(TOPIC_ATTRIBUTE)
        return topic if isinstance(topic, str) else None

    @cached_property
    def check(self) -> Check:
        """The compiled ``check(record) -> bool`` (see :mod:`streamkit.serde.validation`)."""
        return compile_check(self.parsed, self.named_types)

    def validate(self, record: Any) -> None:
        """Check ``record``; see :func:`validate_record`."""
        validate_record(self, record)

    @property
    def named_types(self) -> dict[str, Any]:
        """fastavro's index of the named types the schema defines."""
        named: dict[str, Any] = self.parsed["__named_schemas"]
        return named

    @property
    def field_names(self) -> frozenset[str]:
        """Top-level field names (empty for non-record schemas)."""
        return frozenset(f["name"] for f in self.definition.get("fields", ()))

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any] | str) -> AvroSchema:
        """Parse a standalone (self-contained) schema, e.g. a writer schema from the registry."""
        raw = json.loads(definition) if isinstance(definition, str) else dict(definition)
        try:
            parsed = cast(dict[str, Any], parse_schema(raw))
        except Exception as exc:
            raise SchemaLoadError(f"invalid Avro schema: {exc}") from exc
        return cls(name=_full_name(raw, ""), definition=raw, parsed=parsed)


ValueSchema = AvroSchema | JsonSchema


class SchemaSet(Mapping[str, ValueSchema]):
    """The schemas loaded from a directory, by full name."""

    def __init__(self, schemas: Mapping[str, ValueSchema], directory: Path | None = None) -> None:
        self._schemas = dict(schemas)
        self.directory = directory

    def __getitem__(self, name: str) -> ValueSchema:
        try:
            return self._schemas[name]
        except KeyError:
            known = ", ".join(sorted(self._schemas)) or "none"
            raise SchemaLoadError(f"no schema named {name!r} (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._schemas)

    def __contains__(self, name: object) -> bool:
        # Mapping's default asks __getitem__, whose miss is a SchemaLoadError, not a KeyError.
        return name in self._schemas

    def __len__(self) -> int:
        return len(self._schemas)

    def __repr__(self) -> str:
        return f"SchemaSet({sorted(self._schemas)!r}, directory={self.directory!r})"

    def for_topic(self, topic: str) -> ValueSchema:
        """The schema that declares ``streamkit.topic`` = ``topic``."""
        matches = [schema for schema in self._schemas.values() if schema.topic == topic]
        if len(matches) != 1:
            raise SchemaLoadError(
                f"{len(matches)} schemas declare {TOPIC_ATTRIBUTE}={topic!r}; expected exactly one "
                f'(hint: add "{TOPIC_ATTRIBUTE}": "{topic}" to the event schema, or pass '
                "the schema name explicitly)"
            )
        return matches[0]

    def top_level(self) -> list[ValueSchema]:
        """Schemas that declare a topic: the ones registered as subjects."""
        return [schema for schema in self._schemas.values() if schema.topic]


def _full_name(definition: Mapping[str, Any], namespace: str) -> str:
    name = str(definition.get("name", ""))
    if "." in name:
        return name
    space = definition.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _collect_named(node: Any, namespace: str, found: dict[str, dict[str, Any]]) -> None:
    """Index every named type a raw definition defines (at any depth)."""
    if isinstance(node, list):
        for item in node:
            _collect_named(item, namespace, found)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") in _NAMED_TYPES and "name" in node:
        full = _full_name(node, namespace)
        found[full] = node
        namespace = full.rpartition(".")[0]
    for item in node.get("fields", ()):
        _collect_named(item.get("type"), namespace, found)
    for key in ("items", "values"):
        if key in node:
            _collect_named(node[key], namespace, found)
    if isinstance(node.get("type"), dict | list):
        _collect_named(node["type"], namespace, found)


def _inline(node: Any, namespace: str, known: Mapping[str, dict[str, Any]], seen: set[str]) -> Any:
    """Copy of ``node`` with references to other files' named types inlined once."""
    if isinstance(node, str):
        full = node if "." in node or not namespace else f"{namespace}.{node}"
        for candidate in (full, node):
            if candidate in known and candidate not in seen:
                seen.add(candidate)
                definition = known[candidate]
                return _inline(definition, candidate.rpartition(".")[0], known, seen)
        return node
    if isinstance(node, list):
        return [_inline(item, namespace, known, seen) for item in node]
    if not isinstance(node, dict):
        return node
    copy = dict(node)
    if node.get("type") in _NAMED_TYPES and "name" in node:
        full = _full_name(node, namespace)
        seen.add(full)
        namespace = full.rpartition(".")[0]
        if "." not in str(node["name"]) and "namespace" not in node and namespace:
            copy["namespace"] = namespace  # keep the name resolvable once moved elsewhere
    if isinstance(node.get("type"), str | dict | list) and node.get("type") not in _NAMED_TYPES:
        copy["type"] = _inline(node["type"], namespace, known, seen)
    for key in ("items", "values"):
        if key in node:
            copy[key] = _inline(node[key], namespace, known, seen)
    if "fields" in node:
        copy["fields"] = [
            {**item, "type": _inline(item["type"], namespace, known, seen)}
            for item in node["fields"]
        ]
    return copy


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaLoadError(f"cannot read schema: {exc}", path=str(path)) from exc
    if not isinstance(raw, dict) or raw.get("type") not in _NAMED_TYPES:
        raise SchemaLoadError("top level must be a record, enum or fixed", path=str(path))
    return raw


def load_schemas(directory: str | Path = "schemas") -> SchemaSet:
    """Load and parse every ``.avsc`` and ``.json`` file under ``directory`` (recursively).

    Raises:
        SchemaLoadError: a file is unreadable or invalid, a named type it uses is
            defined nowhere, or two files define one name (the message names the file).
    """
    root = Path(directory)
    if not root.is_dir():
        raise SchemaLoadError(f"schema directory {str(root)!r} does not exist")
    raws = {path: _read(path) for path in sorted(root.rglob("*.avsc"))}
    known: dict[str, dict[str, Any]] = {}
    for raw in raws.values():
        _collect_named(raw, "", known)
    schemas: dict[str, ValueSchema] = {}
    for path, raw in raws.items():
        definition = _inline(raw, "", known, set())
        try:
            parsed = cast(dict[str, Any], parse_schema(definition))
        except Exception as exc:  # fastavro raises UnknownType, SchemaParseException, ...
            raise SchemaLoadError(f"cannot parse schema: {exc}", path=str(path)) from exc
        name = _full_name(raw, "")
        schemas[name] = AvroSchema(name=name, definition=definition, parsed=parsed, path=path)
    for path in sorted(root.rglob("*.json")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaLoadError(f"cannot read schema: {exc}", path=str(path)) from exc
        json_schema = JsonSchema.from_definition(text, path=path)
        if json_schema.name in schemas:
            raise SchemaLoadError(
                f"schema name {json_schema.name!r} is defined twice "
                f"(also in {schemas[json_schema.name].path})",
                path=str(path),
            )
        schemas[json_schema.name] = json_schema
    return SchemaSet(schemas, root)


def subject_name(strategy: SubjectNameStrategy, topic: str, record_name: str) -> str:
    """The registry subject of a value schema under a naming strategy."""
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return record_name
    return f"{topic}-{record_name}"


def _type_label(schema: Any) -> str:
    if isinstance(schema, list):
        return " | ".join(_type_label(branch) for branch in schema)
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        name = schema.get("name") or schema.get("type")
        return f"{name} ({logical})" if logical else str(name)
    return str(schema)


_OPTIONS = {"strict": False, "disable_tuple_notation": True}


def _valid(datum: Any, schema: Any, named: Mapping[str, Any]) -> bool:
    try:
        return bool(_validate(datum, schema, named, "", False, _OPTIONS))
    except (ValueError, TypeError, ArithmeticError):
        # fastavro's logical-type preparation raises for some values instead of
        # answering no (a Decimal with more places than the schema's scale).
        return False


def _locate(
    datum: Any, schema: Any, named: Mapping[str, Any], path: str
) -> tuple[str, str, str] | None:
    """Find the first place where ``datum`` breaks ``schema``: (path, expected, actual)."""
    if _valid(datum, schema, named):
        return None
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, dict) and schema.get("type") == "record":
        if not isinstance(datum, Mapping):
            return path or "<record>", _type_label(schema), type(datum).__name__
        for item in schema["fields"]:
            child = f"{path}.{item['name']}" if path else item["name"]
            value = datum.get(item["name"], _MISSING)
            if value is _MISSING:
                if "default" in item:
                    continue
                return child, _type_label(item["type"]), "missing"
            found = _locate(value, item["type"], named, child)
            if found:
                return found
    elif isinstance(schema, dict) and schema.get("type") == "array" and isinstance(datum, list):
        for index, item in enumerate(datum):
            found = _locate(item, schema["items"], named, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(schema, dict) and schema.get("type") == "map" and isinstance(datum, Mapping):
        for key, item in datum.items():
            found = _locate(item, schema["values"], named, f"{path}[{key!r}]")
            if found:
                return found
    if isinstance(schema, dict) and schema.get("type") == "enum" and isinstance(datum, str):
        return path or "<root>", f"one of {', '.join(schema['symbols'])}", repr(datum)
    return path or "<root>", _type_label(schema), type(datum).__name__


def validate_record(schema: AvroSchema, record: Any) -> None:
    """Check ``record`` against ``schema``.

    Raises:
        SchemaValidationError: naming the field path, the expected type and the
            type found (``missing`` for an absent required field).
    """
    if schema.check(record):
        return
    named = schema.named_types
    location = _locate(record, schema.parsed, named, "")
    field_path, expected, actual = location or ("<root>", schema.name, type(record).__name__)
    raise SchemaValidationError(
        schema=schema.name, field=field_path, expected=expected, actual=actual
    )
