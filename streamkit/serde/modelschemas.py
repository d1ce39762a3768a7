"""Pydantic models and event schemas, both ways, and whether they agree.

The mapping between models and Avro is ``dataclasses-avroschema``'s, never a
hand-written converter: a model derives from its
``dataclasses_avroschema.pydantic.AvroBaseModel`` (a pydantic ``BaseModel``), which
maps ``datetime`` to ``timestamp-millis``, ``date`` to ``date``, ``UUID`` to ``uuid``,
``Decimal`` fields with ``max_digits``/``decimal_places`` to ``decimal``, ``str`` enums
to Avro enums, nested models to named records and ``X | None = None`` to a union with
a null default. Its ``ModelGenerator`` writes pydantic models from ``.avsc`` files
(schema-first). JSON Schema comes from pydantic's own ``model_json_schema``.

A model names the topic its events go to in its ``Meta`` class (``topic = "orders"``);
the generated schema carries it as ``"streamkit.topic"``, and code generated from such a
schema gets the ``Meta.topic`` back.

:func:`model_mismatches` compares a model with the schema of the same name, field by
field, and names each field that is missing on one side or whose type or default
differs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import fastavro
from dataclasses_avroschema import ModelGenerator, ModelType
from dataclasses_avroschema.pydantic import AvroBaseModel
from pydantic import BaseModel

from streamkit.errors import SchemaLoadError
from streamkit.serde.schemas import TOPIC_ATTRIBUTE, AvroSchema, JsonSchema, ValueSchema

__all__ = [
    "SchemaFormat",
    "SchemaMismatch",
    "avro_schema_of",
    "codegen",
    "event_models",
    "generate",
    "iter_model_checks",
    "json_schema_of",
    "model_mismatches",
    "model_schema_name",
    "model_topic",
    "write_schemas",
]

SchemaFormat = Literal["avro", "json"]
_SUFFIX = {"avro": ".avsc", "json": ".json"}


@dataclass(frozen=True)
class SchemaMismatch:
    """One place where a model and its schema disagree."""

    schema: str
    model: str
    field: str
    in_schema: str
    in_model: str

    def __str__(self) -> str:
        return (
            f"model {self.model} and schema {self.schema!r} disagree at field {self.field!r}: "
            f"schema has {self.in_schema}, model has {self.in_model}"
        )


def model_topic(model: type[BaseModel]) -> str | None:
    """The topic a model declares with ``Meta.topic`` (None when it declares none)."""
    topic = getattr(getattr(model, "Meta", None), "topic", None)
    return topic if isinstance(topic, str) else None


def _avro_model(model: type[BaseModel]) -> type[AvroBaseModel]:
    if not issubclass(model, AvroBaseModel):
        raise SchemaLoadError(
            f"{model.__qualname__} is a plain pydantic model: derive it from "
            "dataclasses_avroschema.pydantic.AvroBaseModel to map it to Avro "
            "(or use JSON Schema)"
        )
    return model


def avro_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The Avro schema of ``model`` (with ``streamkit.topic`` from ``Meta.topic``)."""
    try:
        schema: dict[str, Any] = _avro_model(model).avro_schema_to_python()
    except (TypeError, ValueError, AttributeError) as exc:
        raise SchemaLoadError(f"cannot map {model.__qualname__} to Avro: {exc}") from exc
    topic = model_topic(model)
    if topic:
        schema[TOPIC_ATTRIBUTE] = topic
    return schema


def json_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model`` (pydantic's, draft 2020-12 keywords that draft-07
    validators read, with ``streamkit.topic`` from ``Meta.topic``)."""
    schema = model.model_json_schema()
    topic = model_topic(model)
    if topic:
        schema[TOPIC_ATTRIBUTE] = topic
    return schema


def model_schema_name(model: type[BaseModel], schema_format: SchemaFormat = "avro") -> str:
    """The full name of ``model``'s schema (Avro ``namespace.Name``, JSON ``title``)."""
    if schema_format == "json":
        return str(json_schema_of(model).get("title", model.__name__))
    schema = avro_schema_of(model)
    namespace = schema.get("namespace")
    return f"{namespace}.{schema['name']}" if namespace else str(schema["name"])


def event_models(
    module: str | ModuleType, schema_format: SchemaFormat = "avro"
) -> list[type[BaseModel]]:
    """The models a module defines that are not nested in another of them: the events.

    For Avro, the ``AvroBaseModel`` subclasses; for JSON, every pydantic model.

    Raises:
        SchemaLoadError: the module cannot be imported, or defines no model.
    """
    if isinstance(module, str):
        try:
            module = importlib.import_module(module)
        except ImportError as exc:
            raise SchemaLoadError(f"cannot import {module!r}: {exc}") from exc
    base = AvroBaseModel if schema_format == "avro" else BaseModel
    defined = [
        value
        for _, value in inspect.getmembers(module, inspect.isclass)
        if issubclass(value, base) and value is not base and value.__module__ == module.__name__
    ]
    if not defined:
        raise SchemaLoadError(f"module {module.__name__} defines no {base.__name__} models")
    nested: set[str] = set()
    for model in defined:
        nested.update(_nested_names(model, schema_format))
    return [model for model in defined if model.__name__ not in nested]


def _nested_names(model: type[BaseModel], schema_format: SchemaFormat) -> set[str]:
    """Short names of the models ``model`` contains."""
    if schema_format == "json":
        return set(json_schema_of(model).get("$defs", {}))
    names: set[str] = set()

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, False)
        elif isinstance(node, dict):
            if node.get("type") == "record" and not top:
                names.add(str(node["name"]).rpartition(".")[2])
            for item in node.get("fields", ()):
                walk(item["type"], False)
            for key in ("items", "values", "type"):
                if isinstance(node.get(key), dict | list):
                    walk(node[key], False)

    walk(avro_schema_of(model), True)
    return names


def _file_name(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.rpartition(".")[2]).lower()


def generate(
    module: str | ModuleType, schema_format: SchemaFormat = "avro"
) -> dict[str, dict[str, Any]]:
    """The schemas of a module's event models, by file name (``order_placed.avsc``).

    Nested models are defined inline at first use, so each file stands alone.
    """
    of = avro_schema_of if schema_format == "avro" else json_schema_of
    return {
        _file_name(model.__name__) + _SUFFIX[schema_format]: of(model)
        for model in event_models(module, schema_format)
    }


def write_schemas(schemas: Mapping[str, dict[str, Any]], directory: Path) -> list[Path]:
    """Write ``{file name: schema}`` into ``directory`` (created); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas.items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


# Schema-first ------------------------------------------------------------------------


def _dependency_order(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The raw schemas ordered so that each named type is defined before it is used."""
    ordered: list[dict[str, Any]] = []
    named: dict[str, Any] = {}
    pending = list(raws)
    while pending:
        left = []
        for raw in pending:
            trial = dict(named)
            try:
                fastavro.parse_schema(raw, named_schemas=trial)
            except fastavro.schema.UnknownType:
                left.append(raw)
                continue
            named = trial
            ordered.append(raw)
        if len(left) == len(pending):
            names = ", ".join(str(raw.get("name")) for raw in left)
            raise SchemaLoadError(f"schemas {names} use named types defined nowhere")
        pending = left
    return ordered


def codegen(directory: str | Path) -> str:
    """Python source of ``AvroBaseModel`` models for every ``.avsc`` file under ``directory``.

    Raises:
        SchemaLoadError: a file is unreadable or uses a named type defined nowhere.
    """
    root = Path(directory)
    paths = sorted(root.rglob("*.avsc"))
    if not paths:
        raise SchemaLoadError(f"no .avsc files under {str(root)!r}")
    raws = []
    for path in paths:
        try:
            raws.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise SchemaLoadError(f"cannot read schema: {exc}", path=str(path)) from exc
    ordered = _dependency_order(raws)
    source: str = ModelGenerator().render_module(
        schemas=ordered, model_type=ModelType.AVRODANTIC.value
    )
    topics = {
        str(raw["name"]).rpartition(".")[2]: raw[TOPIC_ATTRIBUTE]
        for raw in ordered
        if isinstance(raw.get(TOPIC_ATTRIBUTE), str)
    }
    header = f'"""Event models generated by `streamkit schemas codegen {root}`; do not edit."""\n\n'
    return header + _with_topics(source, topics)


def _with_topics(source: str, topics: Mapping[str, str]) -> str:
    """``source`` with ``topic = "..."`` in the ``Meta`` of each class named in ``topics``."""
    lines = source.splitlines()
    inserts: list[tuple[int, list[str]]] = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or node.name not in topics:
            continue
        line = f"topic = {json.dumps(topics[node.name])}"
        meta = next(
            (n for n in node.body if isinstance(n, ast.ClassDef) and n.name == "Meta"), None
        )
        if meta is not None:
            inserts.append((meta.end_lineno or meta.lineno, [f"        {line}"]))
        else:
            inserts.append(
                (node.end_lineno or node.lineno, ["", "    class Meta:", f"        {line}"])
            )
    for after, new in sorted(inserts, reverse=True):
        lines[after:after] = new
    return "\n".join(lines) + "\n"


# Agreement between a model and its schema ----------------------------------------------


def model_mismatches(model: type[BaseModel], schema: ValueSchema) -> list[SchemaMismatch]:
    """Where ``model`` and ``schema`` disagree: fields missing on one side, types or
    defaults that differ (empty when they agree). Field order and docs do not count."""
    if isinstance(schema, JsonSchema):
        compare = _JsonComparison(schema.name, model.__qualname__)
        compare.node(schema.definition, json_schema_of(model), "")
        return compare.found
    mine = AvroSchema.from_definition(avro_schema_of(model))
    compare_avro = _AvroComparison(schema, mine, model.__qualname__)
    compare_avro.node(schema.parsed, mine.parsed, "")
    return compare_avro.found


def _short(name: str) -> str:
    return name.rpartition(".")[2]


class _AvroComparison:
    def __init__(self, theirs: AvroSchema, mine: AvroSchema, model: str) -> None:
        self.schema_name = theirs.name
        self.model = model
        self.named = (theirs.named_types, mine.named_types)
        self.found: list[SchemaMismatch] = []
        self._seen: set[tuple[str, str]] = set()

    def differ(self, field: str, in_schema: str, in_model: str) -> None:
        self.found.append(
            SchemaMismatch(self.schema_name, self.model, field or "<root>", in_schema, in_model)
        )

    def resolve(self, node: Any, side: int) -> Any:
        if isinstance(node, str) and node in self.named[side]:
            return self.named[side][node]
        return node

    def label(self, node: Any) -> str:
        if isinstance(node, list):
            return " | ".join(self.label(branch) for branch in node)
        if isinstance(node, str):
            return _short(node)
        logical = node.get("logicalType")
        if logical == "decimal":
            return f"decimal({node.get('precision')}, {node.get('scale', 0)})"
        if logical:
            return f"{node['type']} ({logical})"
        kind = node["type"]
        if kind in ("record", "enum", "fixed"):
            return f"{kind} {_short(node['name'])}"
        if kind == "array":
            return f"array of {self.label(node['items'])}"
        if kind == "map":
            return f"map of {self.label(node['values'])}"
        return self.label(kind)

    def node(self, theirs: Any, mine: Any, path: str) -> None:
        theirs, mine = self.resolve(theirs, 0), self.resolve(mine, 1)
        if isinstance(theirs, list) or isinstance(mine, list):
            self.union(theirs, mine, path)
            return
        if self.label(theirs) != self.label(mine):
            self.differ(path, self.label(theirs), self.label(mine))
            return
        if not isinstance(theirs, dict):
            return
        kind = theirs["type"]
        if kind == "record":
            self.record(theirs, mine, path)
        elif kind == "enum" and list(theirs["symbols"]) != list(mine["symbols"]):
            self.differ(path, f"symbols {theirs['symbols']}", f"symbols {mine['symbols']}")
        elif kind == "fixed" and theirs.get("size") != mine.get("size"):
            self.differ(path, f"size {theirs.get('size')}", f"size {mine.get('size')}")
        elif kind == "array":
            self.node(theirs["items"], mine["items"], f"{path}[]")
        elif kind == "map":
            self.node(theirs["values"], mine["values"], f"{path}{{}}")

    def union(self, theirs: Any, mine: Any, path: str) -> None:
        theirs_list = theirs if isinstance(theirs, list) else [theirs]
        mine_list = mine if isinstance(mine, list) else [mine]
        labels = (
            [self.label(self.resolve(b, 0)) for b in theirs_list],
            [self.label(self.resolve(b, 1)) for b in mine_list],
        )
        if labels[0] != labels[1]:
            self.differ(path, " | ".join(labels[0]), " | ".join(labels[1]))
            return
        for their_branch, my_branch in zip(theirs_list, mine_list, strict=True):
            self.node(their_branch, my_branch, path)

    def record(self, theirs: dict[str, Any], mine: dict[str, Any], path: str) -> None:
        pair = (theirs["name"], mine["name"])
        if pair in self._seen:  # a recursive record: compared once
            return
        self._seen.add(pair)
        my_fields = {f["name"]: f for f in mine["fields"]}
        their_names = set()
        for field in theirs["fields"]:
            name = field["name"]
            their_names.add(name)
            child = f"{path}.{name}" if path else name
            other = my_fields.get(name)
            if other is None:
                self.differ(child, self.label(self.resolve(field["type"], 0)), "no such field")
                continue
            self.node(field["type"], other["type"], child)
            if ("default" in field, field.get("default")) != (
                "default" in other,
                other.get("default"),
            ):
                self.differ(child, _default(field), _default(other))
        for name, field in my_fields.items():
            if name not in their_names:
                child = f"{path}.{name}" if path else name
                self.differ(child, "no such field", self.label(self.resolve(field["type"], 1)))


def _default(field: Mapping[str, Any]) -> str:
    return f"default {json.dumps(field['default'])}" if "default" in field else "no default"


class _JsonComparison:
    """Properties, required names and types of two JSON Schemas, ``$ref`` resolved."""

    def __init__(self, schema: str, model: str) -> None:
        self.schema_name = schema
        self.model = model
        self.found: list[SchemaMismatch] = []
        self._docs: tuple[Any, Any] = ({}, {})

    def node(self, theirs: Any, mine: Any, path: str) -> None:
        if not path:
            self._docs = (theirs, mine)
        theirs, mine = self.resolve(theirs, 0), self.resolve(mine, 1)
        if _json_label(theirs) != _json_label(mine):
            self.found.append(
                SchemaMismatch(
                    self.schema_name,
                    self.model,
                    path or "<root>",
                    _json_label(theirs),
                    _json_label(mine),
                )
            )
            return
        for key in ("items",):
            if isinstance(theirs.get(key), dict) and isinstance(mine.get(key), dict):
                self.node(theirs[key], mine[key], f"{path}[]")
        their_props, my_props = theirs.get("properties") or {}, mine.get("properties") or {}
        required = (set(theirs.get("required", ())), set(mine.get("required", ())))
        for name in sorted(set(their_props) | set(my_props)):
            child = f"{path}.{name}" if path else name
            if name not in my_props or name not in their_props:
                side = _json_label(self.resolve(their_props.get(name, {}), 0))
                mine_side = _json_label(self.resolve(my_props.get(name, {}), 1))
                self.found.append(
                    SchemaMismatch(
                        self.schema_name,
                        self.model,
                        child,
                        side if name in their_props else "no such property",
                        mine_side if name in my_props else "no such property",
                    )
                )
                continue
            if (name in required[0]) != (name in required[1]):
                self.found.append(
                    SchemaMismatch(
                        self.schema_name,
                        self.model,
                        child,
                        "required" if name in required[0] else "optional",
                        "required" if name in required[1] else "optional",
                    )
                )
            self.node(their_props[name], my_props[name], child)

    def resolve(self, node: Any, side: int) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 32:
            pointer = str(node["$ref"]).removeprefix("#/").split("/")
            target: Any = self._docs[side]
            for part in pointer:
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = target, seen + 1
        return node if isinstance(node, dict) else {}


def _json_label(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "anyOf" in node:
        return " | ".join(
            sorted(_json_label(branch) for branch in node["anyOf"] if isinstance(branch, dict))
        )
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(sorted(map(str, kind)))
    if kind == "object" and "additionalProperties" in node and "properties" not in node:
        return "object (map)"
    return str(kind) if kind else "any"


def iter_model_checks(
    models: Iterable[type[BaseModel]], schemas: Mapping[str, ValueSchema]
) -> Iterator[tuple[type[BaseModel], ValueSchema | None, list[SchemaMismatch]]]:
    """For each model: the schema of its name (Avro first, then JSON Schema; None when
    there is none) and the mismatches between them."""
    available = dict(schemas.items())
    for model in models:
        schema: ValueSchema | None = None
        if issubclass(model, AvroBaseModel):
            candidate = available.get(model_schema_name(model, "avro"))
            schema = candidate if isinstance(candidate, AvroSchema) else None
        if schema is None:
            candidate = available.get(model_schema_name(model, "json"))
            schema = candidate if isinstance(candidate, JsonSchema) else None
        yield model, schema, model_mismatches(model, schema) if schema is not None else []
