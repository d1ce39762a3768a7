"""Avro record checks compiled from a parsed schema, for the per-record fast path.

fastavro's generic validator walks the schema description for every record, which
costs as much as encoding it. :func:`compile_check` walks the schema once and returns
a tree of small closures that only test the datum. It accepts exactly what
``fastavro.validation.validate`` accepts (same type rules, same logical-type
preparation, missing fields read as their default or ``None``); the property test in
``tests/unit/test_validation.py`` holds it to that. It answers only yes or no: when the
answer is no, :func:`streamkit.schemas.validate_record` asks fastavro where and why.
"""

from __future__ import annotations

import array
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastavro.const import INT_MAX_VALUE, INT_MIN_VALUE, LONG_MAX_VALUE, LONG_MIN_VALUE
from fastavro.logical_writers import LOGICAL_WRITERS

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]
_NO_VALUE = None  # fastavro reads an absent field without default as None (non-strict)


def _check_null(datum: Any) -> bool:
    return datum is None


def _check_boolean(datum: Any) -> bool:
    return isinstance(datum, bool)


def _check_string(datum: Any) -> bool:
    return isinstance(datum, str)


def _check_bytes(datum: Any) -> bool:
    return isinstance(datum, bytes | bytearray)


def _integral(low: int, high: int) -> Check:
    def check(datum: Any) -> bool:
        if type(datum) is int:  # the common case, without the ABC lookup
            return low <= datum <= high
        return (
            isinstance(datum, numbers.Integral)
            and not isinstance(datum, bool)
            and low <= int(datum) <= high
        )

    return check


def _check_real(datum: Any) -> bool:
    kind = type(datum)
    if kind is float or kind is int:
        return True
    return isinstance(datum, numbers.Real) and not isinstance(datum, bool)


_PRIMITIVES: dict[str, Check] = {
    "null": _check_null,
    "boolean": _check_boolean,
    "string": _check_string,
    "bytes": _check_bytes,
    "int": _integral(INT_MIN_VALUE, INT_MAX_VALUE),
    "long": _integral(LONG_MIN_VALUE, LONG_MAX_VALUE),
    "float": _check_real,
    "double": _check_real,
}


class _Compiler:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._built: dict[str, Check] = {}

    def build(self, schema: Any) -> Check:
        if isinstance(schema, str):
            return self._reference(schema)
        if isinstance(schema, list):
            return self._union([self.build(branch) for branch in schema])
        check = self._complex(schema)
        logical = schema.get("logicalType")
        prepare = LOGICAL_WRITERS.get(logical) if logical else None
        return check if prepare is None else self._logical(check, prepare, schema)

    def _reference(self, name: str) -> Check:
        primitive = _PRIMITIVES.get(name)
        if primitive is not None:
            return primitive
        if name not in self._built:
            # Resolved late, so that recursive types (a linked list) compile.
            self._built[name] = lambda datum: self._built[name](datum)
            self._built[name] = self.build(self._named[name])
        built = self._built
        return lambda datum: built[name](datum)

    def _complex(self, schema: dict[str, Any]) -> Check:
        kind = schema["type"]
        if kind in ("record", "error", "request"):
            return self._record(schema)
        if kind == "enum":
            symbols = frozenset(schema["symbols"])
            return lambda datum: isinstance(datum, str) and datum in symbols
        if kind == "fixed":
            size = schema["size"]
            return lambda datum: isinstance(datum, bytes) and len(datum) == size
        if kind == "array":
            return self._array(self.build(schema["items"]))
        if kind == "map":
            return self._map(self.build(schema["values"]))
        return self.build(kind)  # {"type": "long", "logicalType": ...} and the like

    def _record(self, schema: dict[str, Any]) -> Check:
        name = schema["name"]
        fields = [
            (f["name"], f.get("default", _NO_VALUE), self.build(f["type"]))
            for f in schema["fields"]
        ]

        def check(datum: Any) -> bool:
            if not isinstance(datum, Mapping):
                return False
            if "-type" in datum and datum["-type"] != name:
                return False
            get = datum.get
            # A plain loop: all() over a generator costs a frame per record here.
            for field, default, field_check in fields:  # noqa: SIM110
                if not field_check(get(field, default)):
                    return False
            return True

        return check

    @staticmethod
    def _array(item: Check) -> Check:
        def check(datum: Any) -> bool:
            if type(datum) is not list and (
                not isinstance(datum, Sequence | array.array) or isinstance(datum, str)
            ):
                return False
            return all(item(value) for value in datum)

        return check

    @staticmethod
    def _map(value: Check) -> Check:
        def check(datum: Any) -> bool:
            return (
                isinstance(datum, Mapping)
                and all(isinstance(key, str) for key in datum)
                and all(value(item) for item in datum.values())
            )

        return check

    @staticmethod
    def _union(branches: list[Check]) -> Check:
        return lambda datum: any(branch(datum) for branch in branches)

    @staticmethod
    def _logical(check: Check, prepare: Callable[..., Any], schema: dict[str, Any]) -> Check:
        def logical(datum: Any) -> bool:
            try:
                prepared = prepare(datum, schema)
            except Exception:  # a value the logical type cannot even convert
                return False
            return check(prepared)

        return logical


def compile_check(parsed: Mapping[str, Any], named: Mapping[str, Any]) -> Check:
    """Compile a fastavro-parsed schema into ``check(datum) -> bool``.

    Args:
        parsed: the schema as returned by ``fastavro.parse_schema``.
        named: its named types (``parsed["__named_schemas"]``).
    """
    return _Compiler(named).build(parsed)
