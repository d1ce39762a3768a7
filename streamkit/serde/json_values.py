"""JSON text for Avro values: one mapping for what the CLI reads and what it prints.

JSON has no decimal, timestamp, date, UUID or bytes type, so the ``streamkit`` command
writes and reads them like this, and ``streamkit consume`` output goes back into
``streamkit produce`` unchanged:

- ``decimal`` (bytes or fixed): printed as a string (``"41.99"``); read from a string
  or a JSON number.
- ``timestamp-millis``, ``timestamp-micros``: printed as ISO-8601 with its offset
  (``"2026-03-01T12:00:00.250000+00:00"``); read from ISO-8601 (without an offset: UTC)
  or from the epoch number in the field's unit (ms or µs). ``local-timestamp-*`` the
  same, without an offset.
- ``date``: ``"2026-03-01"``; read from an ISO date or days since the epoch.
- ``time-millis``, ``time-micros``: ``"12:30:00.250000"``; read from an ISO time or
  the number in the field's unit.
- ``uuid``: a string both ways.
- ``bytes``, ``fixed``: base64 both ways.

Everything else is plain JSON. A JSON number meant for a decimal is read through its
shortest text (``12.5`` is ``Decimal("12.5")``); write strings for more than 15
significant digits. The Python API takes Python values instead (``decimal.Decimal``,
``datetime``...): see :func:`streamkit.serde.schemas.validate_record`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from streamkit.serde.events import ENVELOPE_FIELDS
from streamkit.serde.jsonschemas import JsonSchema
from streamkit.serde.schemas import AvroSchema
from streamkit.serde.schemas import _valid as conforms  # fastavro's own type rules

__all__ = ["from_json", "json_default", "payload_from_json"]


def json_default(value: Any) -> Any:
    """``json.dumps(..., default=json_default)``: the printed form of a decoded Avro value."""
    if isinstance(value, Decimal):
        return format(value, "f")  # never an exponent: "100", not "1E+2"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def from_json(schema: AvroSchema | JsonSchema, value: Any) -> Any:
    """The record to send for ``value`` parsed from JSON text, following ``schema``.

    Values the mapping cannot read are left as they are, so that validation names the
    field that is wrong.
    """
    if isinstance(schema, JsonSchema):
        return value
    return _read(schema.parsed, value, schema.named_types)


def payload_from_json(schema: AvroSchema | JsonSchema, value: Any) -> Any:
    """:func:`from_json` for an event's payload: the ``payload`` field of an envelope
    schema, else the whole value."""
    if isinstance(schema, AvroSchema) and schema.field_names >= ENVELOPE_FIELDS:
        fields = {field["name"]: field["type"] for field in schema.parsed["fields"]}
        return _read(fields["payload"], value, schema.named_types)
    return from_json(schema, value)


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int | str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    return value


def _timestamp(*, local: bool) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, str):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if local:
            return parsed.replace(tzinfo=None)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    return read


def _iso(kind: type[date] | type[time]) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return kind.fromisoformat(value)
        except ValueError:
            return value

    return read


def _base64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value


_LOGICAL: dict[str, Callable[[Any], Any]] = {
    "decimal": _decimal,
    # Epoch numbers pass as they are: the Avro long already is epoch ms or µs.
    "timestamp-millis": _timestamp(local=False),
    "timestamp-micros": _timestamp(local=False),
    "local-timestamp-millis": _timestamp(local=True),
    "local-timestamp-micros": _timestamp(local=True),
    "date": _iso(date),
    "time-millis": _iso(time),
    "time-micros": _iso(time),
}


def _read(schema: Any, value: Any, named: Mapping[str, Any]) -> Any:
    if isinstance(schema, str):
        if schema in named:
            return _read(named[schema], value, named)
        return _base64(value) if schema == "bytes" else value
    if isinstance(schema, list):
        return _read_union(schema, value, named)
    reader = _LOGICAL.get(str(schema.get("logicalType")))
    if reader is not None:
        return reader(value)
    kind = schema["type"]
    if kind in ("record", "error") and isinstance(value, Mapping):
        fields = {field["name"]: field["type"] for field in schema["fields"]}
        return {
            key: _read(fields[key], item, named) if key in fields else item
            for key, item in value.items()
        }
    if kind == "array" and isinstance(value, list):
        return [_read(schema["items"], item, named) for item in value]
    if kind == "map" and isinstance(value, Mapping):
        return {key: _read(schema["values"], item, named) for key, item in value.items()}
    if kind in ("bytes", "fixed"):
        return _base64(value)
    if isinstance(kind, str | list | dict) and kind not in ("record", "error", "enum"):
        return _read(kind, value, named)  # {"type": "long"} and the like
    return value


def _read_union(branches: list[Any], value: Any, named: Mapping[str, Any]) -> Any:
    # A branch that takes the value as it is wins ("abc" stays a string in
    # ["string", "bytes"]); otherwise the first branch the value converts into.
    if any(conforms(value, branch, named) for branch in branches):
        return value
    for branch in branches:
        if branch == "null":
            continue
        converted = _read(branch, value, named)
        if converted is not value and conforms(converted, branch, named):
            return converted
    return value
