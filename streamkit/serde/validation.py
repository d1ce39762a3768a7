"""Avro record checks compiled from a parsed schema, for the per-record fast path.

fastavro's generic validator walks the schema description for every record, which
costs as much as encoding it. :func:`compile_check` walks the schema once and
generates Python source for it: one function per record, array, map and logical
type, in which every primitive test is inlined (``isinstance(v, str)``, an int range
test), so a record costs one call per nested record or collection rather than one per
field. It accepts exactly what ``fastavro.validation.validate`` accepts (same type
rules, same logical-type preparation, missing fields read as their default or
``None``), except text in a ``uuid`` field that is not a UUID (fastavro writes it, then
cannot read it back); the property test in ``tests/unit/serde/test_validation.py`` holds
it to that. It answers only yes or no: when the answer is no,
:func:`streamkit.serde.schemas.validate_record` searches the record for the field.
"""

from __future__ import annotations

import array
import numbers
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastavro.const import INT_MAX_VALUE, INT_MIN_VALUE, LONG_MAX_VALUE, LONG_MIN_VALUE
from fastavro.logical_writers import LOGICAL_WRITERS

from streamkit.serde.codegen import Source

__all__ = ["IDENTITY_FOR", "PREPARE", "RANGES", "Check", "compile_check"]

Check = Callable[[Any], bool]
_NO_VALUE = None  # fastavro reads an absent field without default as None (non-strict)
RANGES = {"int": (INT_MIN_VALUE, INT_MAX_VALUE), "long": (LONG_MIN_VALUE, LONG_MAX_VALUE)}
# Logical types whose preparation leaves a value of the underlying type's exact class
# unchanged (fastavro's prepare_* only convert datetime/date/time/UUID objects), so the
# generated code may skip the call for that class: the common case.
IDENTITY_FOR = {
    "long-timestamp-millis": int,
    "long-local-timestamp-millis": int,
    "long-timestamp-micros": int,
    "long-local-timestamp-micros": int,
    "int-date": int,
    "int-time-millis": int,
    "long-time-micros": int,
}


# The text str(uuid4()) makes: one regular-expression match (about 0.3 µs) where
# uuid.UUID would take several times that; other forms go to uuid.UUID.
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch


def _prepare_uuid(datum: Any, schema: Any) -> Any:
    """fastavro's uuid preparation, refusing text that a reader cannot parse as a UUID."""
    if isinstance(datum, str):
        if _CANONICAL_UUID(datum) is None:
            uuid.UUID(datum)  # fastavro writes any text, then its reader fails on it
        return datum
    return LOGICAL_WRITERS["string-uuid"](datum, schema)


# The preparation of each logical type, as fastavro's writer does it, but stricter where
# fastavro would write a value its own reader refuses (a uuid field holding other text).
PREPARE = {**LOGICAL_WRITERS, "string-uuid": _prepare_uuid}


def _integral(datum: Any, low: int, high: int) -> bool:
    # Only reached for values that are not exactly int (the inlined common case).
    return (
        isinstance(datum, numbers.Integral)
        and not isinstance(datum, bool)
        and low <= int(datum) <= high
    )


def _real(datum: Any) -> bool:
    return isinstance(datum, numbers.Real) and not isinstance(datum, bool)


class _Generator(Source):
    """Turns a parsed schema into the source of one module of check functions."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        helpers = {
            "Mapping": Mapping,
            "Sequence_or_array": (Sequence, array.array),
            "_integral": _integral,
            "_real": _real,
        }
        super().__init__(named, helpers, "datum")

    def test(self, schema: Any, var: str) -> str:
        """A boolean expression testing the local name ``var`` against ``schema``."""
        if isinstance(schema, list):
            return "(" + " or ".join(self.test(branch, var) for branch in schema) + ")"
        if isinstance(schema, str):
            return self._primitive(schema, var) or self._named_type(schema, var)
        logical = schema.get("logicalType")
        if logical:
            key = f"{schema['type']}-{logical}"
            if key in LOGICAL_WRITERS:
                return self._logical(schema, key, var)
        kind = schema["type"]
        if kind in ("record", "error", "request"):
            return f"{self._record(schema)}({var})"
        if kind == "enum":
            symbols = self._constant(frozenset(schema["symbols"]))
            return f"(isinstance({var}, str) and {var} in {symbols})"
        if kind == "fixed":  # bytearray too: what a fixed decimal's preparation returns
            size = int(schema["size"])
            return f"(isinstance({var}, (bytes, bytearray)) and len({var}) == {size})"
        if kind == "array":
            return f"{self._array(schema['items'])}({var})"
        if kind == "map":
            return f"{self._map(schema['values'])}({var})"
        return self.test(kind, var)  # {"type": "long", "logicalType": ...} and the like

    @staticmethod
    def _primitive(name: str, var: str) -> str | None:
        if name in RANGES:
            low, high = RANGES[name]
            return (
                f"({low} <= {var} <= {high} if type({var}) is int"
                f" else _integral({var}, {low}, {high}))"
            )
        return {
            "null": f"{var} is None",
            "boolean": f"isinstance({var}, bool)",
            "string": f"isinstance({var}, str)",
            "bytes": f"isinstance({var}, (bytes, bytearray))",
            "float": f"(type({var}) is float or type({var}) is int or _real({var}))",
            "double": f"(type({var}) is float or type({var}) is int or _real({var}))",
        }.get(name)

    def _named_type(self, name: str, var: str) -> str:
        # Inlined at each use; only records become functions (cached by name, so a
        # recursive record calls itself).
        return self.test(self._named[name], var)

    def _record(self, schema: dict[str, Any]) -> str:
        function = self._functions.get(schema["name"])
        if function is not None:
            return function
        function = self._functions[schema["name"]] = self._name("record")
        body = [
            "if type(datum) is not dict and not isinstance(datum, Mapping):",
            "    return False",
            f"if '-type' in datum and datum['-type'] != {self._constant(schema['name'])}:",
            "    return False",
            "get = datum.get",
        ]
        for field in schema["fields"]:
            name = self._constant(field["name"])
            default = self._constant(field.get("default", _NO_VALUE))
            body += [
                f"v = get({name}, {default})",
                f"if not {self.test(field['type'], 'v')}:",
                "    return False",
            ]
        self._define(function, [*body, "return True"])
        return function

    def _array(self, items: Any) -> str:
        function = self._name("array")
        self._define(
            function,
            [
                "if type(datum) is not list and (",
                "    not isinstance(datum, Sequence_or_array) or isinstance(datum, str)",
                "):",
                "    return False",
                "for v in datum:",
                f"    if not {self.test(items, 'v')}:",
                "        return False",
                "return True",
            ],
        )
        return function

    def _map(self, values: Any) -> str:
        function = self._name("map")
        self._define(
            function,
            [
                "if type(datum) is not dict and not isinstance(datum, Mapping):",
                "    return False",
                "for k, v in datum.items():",
                f"    if not isinstance(k, str) or not {self.test(values, 'v')}:",
                "        return False",
                "return True",
            ],
        )
        return function

    def _logical(self, schema: dict[str, Any], key: str, var: str) -> str:
        function = self._name("logical")
        prepare = self._constant(PREPARE[key])
        definition = self._constant(schema)
        underlying = {k: v for k, v in schema.items() if k != "logicalType"}
        self._define(
            function,
            [
                "try:",
                f"    v = {prepare}(datum, {definition})",
                "except Exception:  # a value the logical type cannot even convert",
                "    return False",
                f"return {self.test(underlying, 'v')}",
            ],
        )
        exact = IDENTITY_FOR.get(key)
        if exact is None:
            return f"{function}({var})"
        # The common case inline: a value of the underlying class, which prepare keeps.
        return (
            f"({self.test(underlying, var)} if type({var}) is {exact.__name__}"
            f" else {function}({var}))"
        )


def compile_check(parsed: Any, named: Mapping[str, Any]) -> Check:
    """Compile a fastavro-parsed schema into ``check(datum) -> bool``.

    Args:
        parsed: the schema as returned by ``fastavro.parse_schema``, or a part of it.
        named: its named types (``parsed["__named_schemas"]``).
    """
    generator = _Generator(named)
    root = generator.test(parsed, "datum")
    check: Check = generator.build("check", [f"return {root}"], "<streamkit.serde.validation>")
    return check
