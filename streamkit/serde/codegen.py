"""Python source generated from a schema, for the per-record fast paths.

The compiled check (:mod:`streamkit.serde.validation`) and the compiled writer
(:mod:`streamkit.serde.avro_writer`) each walk a schema once and write one module of
small functions. :class:`Source` holds what they share: the functions written so far,
and the constants those functions use. Names, defaults, symbols and helpers are passed
in as constants, never spliced into the code, so the source is built from the schema's
structure only.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

__all__ = ["Source"]


class Source:
    """One module of generated functions that all take ``params``.

    Args:
        named: the schema's named types (fastavro's ``__named_schemas``).
        constants: helpers the generated code calls, by name.
        params: the parameter list of every function, e.g. ``"datum"``.
    """

    def __init__(self, named: Mapping[str, Any], constants: Mapping[str, Any], params: str) -> None:
        self._named = named
        self._functions: dict[str, str] = {}  # record name -> function name
        self._serial = itertools.count()
        self._params = params
        self.lines: list[str] = []
        self.constants: dict[str, Any] = dict(constants)

    def _name(self, prefix: str) -> str:
        return f"_{prefix}{next(self._serial)}"

    def _constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def _define(self, function: str, body: list[str]) -> None:
        self.lines += [f"def {function}({self._params}):", *(f"    {line}" for line in body), ""]

    def build(self, entry: str, body: list[str], filename: str) -> Any:
        """Define ``entry`` with ``body``, compile the module, and return ``entry``."""
        self._define(entry, body)
        namespace = dict(self.constants)
        exec(compile("\n".join(self.lines), filename, "exec"), namespace)  # noqa: S102
        return namespace[entry]
