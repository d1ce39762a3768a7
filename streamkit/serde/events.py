"""The event envelope and how it travels.

An event has an ``id`` (UUID), a ``timestamp`` (epoch milliseconds), a ``type`` and a
``payload``. On the wire the value is Avro in the Confluent format (magic byte 0, the
4-byte big-endian schema id, the Avro body), so any Confluent-compatible client reads
it. When the value schema is an *envelope* (a record with the fields ``id``,
``timestamp``, ``type`` and ``payload``) the whole envelope is the value; otherwise the
payload alone is. A JSON Schema value travels the same way with a UTF-8 JSON body (as
Confluent's ``JSONSerializer`` writes it); the decoder picks Avro or JSON by the writer
schema's type. Either way id, type and timestamp also travel as headers
(``event-id``, ``event-type``, ``event-time``), so that deduplication never has to
decode the value.

A payload may be a pydantic model (typed events): the encoder writes its
``model_dump()`` (JSON mode for JSON Schema values) and the compiled schema check stays
the one check; :class:`~streamkit.serde.payloads.PayloadModels` turns decoded payloads
back into models.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol

from fastavro import schemaless_reader, schemaless_writer
from pydantic import BaseModel
from typing_extensions import TypeVar

from streamkit.errors import (
    DeserializationError,
    RegistryError,
    SchemaValidationError,
    SerializationError,
    StreamkitError,
)
from streamkit.serde.schemas import AvroSchema, JsonSchema, ValueSchema, validate_record

__all__ = [
    "ENVELOPE_FIELDS",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TIME",
    "HEADER_EVENT_TYPE",
    "Consumed",
    "Event",
    "EventDecoder",
    "EventEncoder",
    "WriterSchemaSource",
    "envelope_headers",
    "frame",
    "header_items",
    "header_value",
    "int_header",
    "new_event_id",
    "unframe",
]

HEADER_EVENT_ID = "event-id"
HEADER_EVENT_TYPE = "event-type"
HEADER_EVENT_TIME = "event-time"
ENVELOPE_FIELDS = frozenset({"id", "timestamp", "type", "payload"})
MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

# Event ids need uniqueness, not secrecy: a private generator seeded from the OS (not
# the global one, which callers may seed) and re-seeded in forked children, so that
# no two processes share a stream. os.urandom per id is a system call each time.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))  # version and variant bits
_UUID4_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant

P = TypeVar("P", default=dict[str, Any])
"""The payload type of an :class:`Event`: a dict unless a model was asked for."""

Header = tuple[str, str | bytes | None]
Headers = list[Header]
RawHeaders = Headers | dict[str, str | bytes | None] | None


def new_event_id() -> str:
    """A random (version 4) UUID as text; the default event id.

    The layout of ``str(uuid.uuid4())`` with 122 random bits, without a system call
    or a ``UUID`` object: a fraction of the cost, and it is paid for every event sent.
    """
    h = (_IDS.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Event(Generic[P]):
    """One event, as produced or as consumed; generic over its payload type.

    ``Event[OrderPlaced]`` carries an ``OrderPlaced`` model as ``payload`` (typed
    events); a bare ``Event`` carries the record as a dict. Consumed events also carry
    where they came from (``topic``, ``partition``, ``offset``), their ``key``, raw
    ``headers`` and the writer ``schema_id``.
    """

    payload: P
    type: str
    id: str = field(default_factory=new_event_id)
    timestamp: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    key: bytes | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    headers: Headers = field(default_factory=list)
    schema_id: int | None = None

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent wire-format header."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(value: bytes | None) -> tuple[int, memoryview]:
    """Split a Confluent wire-format value into (schema id, Avro body).

    Raises:
        DeserializationError: the value is empty, too short or has no magic byte.
    """
    if value is None:
        raise DeserializationError("value is empty (tombstone): no Avro record to decode")
    if len(value) < _HEADER.size or value[0] != MAGIC_BYTE:
        head = bytes(value[:8]).hex()
        raise DeserializationError(
            f"value is not in the Confluent wire format (starts with 0x{head}, expected magic "
            "byte 0x00 and a 4-byte schema id); it was not written by an Avro serializer"
        )
    _, schema_id = _HEADER.unpack_from(value)
    return schema_id, memoryview(value)[_HEADER.size :]


def header_value(headers: RawHeaders, name: str) -> bytes | None:
    """The last value of header ``name`` (headers may repeat), or None."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    found = None
    for key, value in items:
        if key == name:
            found = value
    return found.encode() if isinstance(found, str) else found


def header_items(headers: RawHeaders) -> Headers:
    """``headers`` as a list of ``(name, value)`` pairs (a dict's items, or none)."""
    return list(headers.items() if isinstance(headers, dict) else headers or ())


def int_header(headers: RawHeaders, name: str) -> int | None:
    """The last value of header ``name`` as an integer, or None (absent or not a number)."""
    value = header_value(headers, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class EventEncoder:
    """Validates and encodes events for one value schema (parsed once, id cached)."""

    __slots__ = (
        "_check",
        "_dump_mode",
        "_prefix",
        "_write",
        "envelope",
        "schema",
        "schema_id",
        "short_name",
    )

    def __init__(self, schema: ValueSchema, schema_id: int) -> None:
        self.schema = schema
        self.schema_id = schema_id
        self.short_name = schema.name.rpartition(".")[2]  # the default event type
        # JSON records are checked by their compiled validator in _json_body.
        self._check = schema.check if isinstance(schema, AvroSchema) else None
        self._write = schema.writer if isinstance(schema, AvroSchema) else None
        self.envelope = schema.field_names >= ENVELOPE_FIELDS
        self._prefix = frame(schema_id, b"")
        # Avro takes Python values (datetime, Decimal, UUID) for its logical types; JSON
        # takes what pydantic's JSON mode makes of them (ISO text, numbers as text).
        self._dump_mode = "json" if isinstance(schema, JsonSchema) else "python"

    def __repr__(self) -> str:
        return f"EventEncoder(schema={self.schema.name!r}, schema_id={self.schema_id})"

    def record(self, event: Event[Any]) -> Any:
        """The record (Avro or JSON) written for ``event``."""
        return self.record_of(event.payload, event.type, event.id, event.timestamp)

    def record_of(self, payload: Any, event_type: str, event_id: str, timestamp: int) -> Any:
        """The record written for an event with these fields (no Event needed).

        A pydantic model payload becomes its ``model_dump()``: it was validated when it
        was built, and the schema check of :meth:`encode_record` is the one check here.
        """
        if type(payload) is not dict and isinstance(payload, BaseModel):  # dicts: one test
            # The model's compiled serializer itself (model_dump's defaults): model_dump
            # is a Python wrapper around it, paid for every event.
            payload = type(payload).__pydantic_serializer__.to_python(payload, mode=self._dump_mode)
        if not self.envelope:
            return payload
        return {"id": event_id, "timestamp": timestamp, "type": event_type, "payload": payload}

    def encode(self, event: Event[Any]) -> bytes:
        """Validate ``event`` and return its framed value (Avro or JSON body).

        Raises:
            SchemaValidationError: the record breaks the schema (field path named).
            SerializationError: a record that validated could not be encoded (fastavro, or
                JSON for values such as NaN or datetime).
        """
        return self.encode_record(self.record(event))

    def encode_record(self, record: Any) -> bytes:
        """Validate a ``record`` (see :meth:`record_of`) and return its framed value.

        Raises:
            SchemaValidationError: the record breaks the schema (field path named).
            SerializationError: a record that validated could not be encoded.
        """
        write = self._write
        if write is not None:
            # One pass that checks and writes the common records (serde.avro_writer);
            # anything it does not take goes the general way below, which names the
            # field of an invalid record.
            out = bytearray(self._prefix)
            try:
                if write(record, out):
                    return bytes(out)
            except Exception:  # noqa: S110 - the general path reports what is wrong
                pass
        schema = self.schema
        if isinstance(schema, JsonSchema):
            return self._prefix + _json_body(schema, record)
        if self._check is None or not self._check(record):
            validate_record(schema, record)  # raises, naming the field
        buffer = io.BytesIO()
        buffer.write(self._prefix)
        try:
            schemaless_writer(buffer, schema.parsed, record)
        except (ValueError, TypeError, OverflowError) as exc:
            raise SerializationError(f"cannot encode {schema.name}: {exc}") from exc
        return buffer.getvalue()

    @staticmethod
    def headers(event: Event[Any]) -> Headers:
        """The envelope headers of ``event``, followed by its own."""
        return envelope_headers(event.id, event.type, event.timestamp, event.headers)


def envelope_headers(
    event_id: str, event_type: str, timestamp: int, extra: Headers | None = None
) -> Headers:
    """The ``event-id``/``event-type``/``event-time`` headers, then ``extra``."""
    headers: Headers = [
        (HEADER_EVENT_ID, event_id.encode()),
        (HEADER_EVENT_TYPE, event_type.encode()),
        (HEADER_EVENT_TIME, str(timestamp).encode()),
    ]
    if extra:
        headers.extend(extra)
    return headers


def _json_body(schema: JsonSchema, record: Any) -> bytes:
    schema.validate(record)
    try:
        # allow_nan=False: NaN/Infinity are not JSON, and other readers reject them.
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"cannot encode {schema.name} as JSON: {exc}") from exc
    return text.encode("utf-8")


def _read_body(writer: ValueSchema, body: memoryview, reader: AvroSchema | None) -> Any:
    if isinstance(writer, JsonSchema):
        record = json.loads(bytes(body))
        # Like Confluent's JSONDeserializer: a value must match the schema it names.
        writer.validate(record)
        return record
    return schemaless_reader(io.BytesIO(body), writer.parsed, reader.parsed if reader else None)


class Consumed(Protocol):
    """The parts of a consumed ``confluent_kafka.Message`` that decoding reads."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RawHeaders: ...


class WriterSchemaSource(Protocol):
    """Anything that resolves a schema id to its writer schema (the registry)."""

    def schema_by_id(self, schema_id: int) -> ValueSchema:
        """The writer schema registered under ``schema_id``."""
        ...


def _header_list(headers: RawHeaders) -> Headers:
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers or ())


def _epoch_ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _without_envelope_logical_types(schema: AvroSchema) -> Any:
    """``schema.parsed``, minus the logical types of a top-level envelope id and timestamp."""
    parsed = schema.parsed
    if not (isinstance(parsed, dict) and schema.field_names >= ENVELOPE_FIELDS):
        return parsed
    fields = []
    for field_ in parsed["fields"]:
        kind = field_["type"]
        if field_["name"] in ("id", "timestamp") and isinstance(kind, dict):
            field_ = {**field_, "type": {k: v for k, v in kind.items() if k != "logicalType"}}
        fields.append(field_)
    return {**parsed, "fields": fields}


class EventDecoder:
    """Decodes Confluent wire-format Avro values into :class:`Event` objects.

    Args:
        schemas: resolves writer schema ids (fetched once each, then cached).
        reader_schemas: optional Avro reader schema per topic, for schema evolution
            (JSON values are read as written and checked against their writer schema).
    """

    def __init__(
        self, schemas: WriterSchemaSource, reader_schemas: Mapping[str, AvroSchema] | None = None
    ) -> None:
        self._schemas = schemas
        self._readers = dict(reader_schemas or {})
        self._plain: dict[
            int, Any
        ] = {}  # writer schema id -> parsed form read without logical types

    def _plain_envelope(self, schema_id: int, writer: AvroSchema) -> Any:
        """The writer schema to read with when no reader schema applies.

        An envelope's ``id`` and ``timestamp`` become a ``str`` and epoch milliseconds
        in the :class:`Event` anyway, so they are read as the plain string and long
        they are on the wire: fastavro would build a ``UUID`` and a ``datetime`` only
        for them to be turned back (the ``datetime`` round trip could even lose a
        millisecond to float rounding). Payload fields keep their logical types.
        """
        plain = self._plain.get(schema_id)
        if plain is None:
            plain = self._plain[schema_id] = _without_envelope_logical_types(writer)
        return plain

    def decode(
        self,
        value: bytes | None,
        *,
        topic: str,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        headers: RawHeaders = None,
    ) -> Event[Any]:
        """Decode one message value.

        Raises:
            DeserializationError: not wire format, unknown schema id, or a body that
                does not match its writer schema; topic/partition/offset are attached.
            RegistryError: the writer schema is not cached and the registry cannot be
                reached now (``transient``); the message itself may be fine.
        """
        writer: ValueSchema | None = None
        try:
            schema_id, body = unframe(value)
            writer = self._schemas.schema_by_id(schema_id)
            reader = self._readers.get(topic)
            if reader is None and isinstance(writer, AvroSchema):
                plain = self._plain_envelope(schema_id, writer)
                record = schemaless_reader(io.BytesIO(body), plain, None)
            else:
                record = _read_body(writer, body, reader)
        except DeserializationError as exc:
            raise DeserializationError(
                str(exc), topic=topic, partition=partition, offset=offset
            ) from exc
        except SchemaValidationError as exc:
            raise DeserializationError(
                f"JSON body does not match its writer schema: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        except RegistryError as exc:
            if exc.transient:
                raise  # the message is fine: the registry is down, try again later
            raise DeserializationError(
                f"cannot resolve writer schema: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        except StreamkitError as exc:
            raise DeserializationError(
                f"cannot resolve writer schema: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            kind = "JSON" if isinstance(writer, JsonSchema) else "Avro"
            raise DeserializationError(
                f"{kind} body does not match writer schema: {type(exc).__name__}: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        return self._event(record, writer, schema_id, topic, partition, offset, key, headers)

    def decode_message(self, message: Consumed) -> Event:
        """:meth:`decode` a consumed ``confluent_kafka.Message`` (value, place, key, headers)."""
        return self.decode(
            message.value(),
            topic=message.topic() or "",
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            headers=message.headers(),
        )

    @staticmethod
    def _event(
        record: Any,
        writer: ValueSchema,
        schema_id: int,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        headers: RawHeaders,
    ) -> Event[Any]:
        envelope = isinstance(record, dict) and record.keys() >= ENVELOPE_FIELDS
        if envelope:
            event_id, event_type = str(record["id"]), str(record["type"])
            timestamp, payload = _epoch_ms(record["timestamp"]), record["payload"]
        else:  # the headers only matter when the value has no envelope
            header_id = header_value(headers, HEADER_EVENT_ID)
            header_type = header_value(headers, HEADER_EVENT_TYPE)
            header_time = header_value(headers, HEADER_EVENT_TIME)
            event_id = header_id.decode() if header_id else f"{topic}-{partition}-{offset}"
            event_type = header_type.decode() if header_type else writer.name
            timestamp = int(header_time) if header_time else 0
            payload = record
        return Event(
            payload=payload,
            type=event_type,
            id=event_id,
            timestamp=timestamp,
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
            headers=_header_list(headers),
            schema_id=schema_id,
        )
