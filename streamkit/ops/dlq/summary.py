"""``inspect``: what a dead-letter topic holds, with a few samples shown in full."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamkit.client.config import MASK, is_secret_key
from streamkit.consume.history import FailedAttempt
from streamkit.errors import DeserializationError, RegistryError
from streamkit.ops.dlq.letters import UNKNOWN, DeadLetter
from streamkit.ops.dlq.reader import DeadLetterReader
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["DeadLetterReport", "DeadLetterSample", "inspect_dead_letters"]

# Header and payload field names that may hold a secret, beyond the client-config markers.
_SECRET_NAMES = re.compile(r"authori[sz]ation|cookie|api[-_]?key|credential|session|private")


def _secret_name(name: str) -> bool:
    return is_secret_key(name) or _SECRET_NAMES.search(name.lower()) is not None


def _shown(value: str | bytes | None) -> str | None:
    """Header or key bytes as text (UTF-8), else as hex."""
    if value is None or isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "0x" + value.hex()


def _masked_payload(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _secret_name(k) else _masked_payload(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked_payload(item) for item in value]
    return value


def _jsonable(value: Any) -> Any:
    """Decoded Avro/JSON values made JSON-ready (bytes, datetimes, decimals, UUIDs)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return _shown(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class DeadLetterSample:
    """One dead letter shown in full: headers (secrets masked) and the decoded payload."""

    partition: int
    offset: int
    key: str | None
    failed_at: datetime
    reason: str
    error_type: str
    error: str
    source: str
    source_offset: int | None
    attempts: int | None
    headers: list[tuple[str, str | None]]
    history: list[FailedAttempt]
    payload: Any
    """The decoded payload (secret-looking fields masked), or None."""
    decode_error: str | None
    """Why the payload could not be decoded, or None."""


def _iso(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


@dataclass(frozen=True)
class DeadLetterReport:
    """What a dead-letter topic holds (see :meth:`as_dict` for the JSON shape)."""

    topic: str
    count: int
    by_reason: dict[str, int]
    by_error_type: dict[str, int]
    by_source_partition: dict[str, int]
    oldest: datetime | None
    newest: datetime | None
    samples: list[DeadLetterSample] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``streamkit dlq inspect --json``; documented in
        ``docs/concepts/retries-and-dead-letters.md``)."""
        data = asdict(self)
        data["oldest"] = self.oldest.isoformat() if self.oldest else None
        data["newest"] = self.newest.isoformat() if self.newest else None
        for sample in data["samples"]:
            sample["failed_at"] = sample["failed_at"].isoformat()
            sample["headers"] = [list(pair) for pair in sample["headers"]]
        return _jsonable(data)  # type: ignore[no-any-return]


class _Samples:
    """Decodes the payload of a few dead letters through the registry, when one is set."""

    def __init__(self, settings: StreamkitSettings) -> None:
        self._settings = settings
        self._decoder: Any = None
        self._registry: Any = None

    def payload(self, letter: DeadLetter) -> tuple[Any, str | None]:
        if self._settings.schema_registry.url is None:
            return None, "no schema registry configured (STREAMKIT_SCHEMA_REGISTRY__URL)"
        if self._decoder is None:
            from streamkit.serde.events import EventDecoder
            from streamkit.serde.registry import SchemaRegistry

            self._registry = SchemaRegistry(self._settings)
            self._decoder = EventDecoder(self._registry)
        try:
            event = self._decoder.decode(
                letter.value,
                topic=letter.source_topic or "",
                partition=letter.source_partition,
                offset=letter.source_offset,
                key=letter.key,
                headers=letter.headers,
            )
        except (DeserializationError, RegistryError) as exc:
            return None, str(exc)
        return _masked_payload(event.payload), None

    def sample(self, letter: DeadLetter) -> DeadLetterSample:
        payload, decode_error = self.payload(letter)
        return DeadLetterSample(
            partition=letter.partition,
            offset=letter.offset,
            key=_shown(letter.key),
            failed_at=_iso(letter.failed_at),
            reason=letter.reason,
            error_type=letter.error_type,
            error=letter.error,
            source=letter.source,
            source_offset=letter.source_offset,
            attempts=letter.attempts,
            headers=[(k, MASK if _secret_name(k) else _shown(v)) for k, v in letter.headers],
            history=list(letter.history),
            payload=payload,
            decode_error=decode_error,
        )

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


def _counted(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def inspect_dead_letters(
    topic: str, settings: StreamkitSettings | None = None, *, samples: int = 3
) -> DeadLetterReport:
    """Read every message of the dead-letter topic ``topic`` and summarise them.

    Nothing is committed. ``samples`` newest dead letters are shown in full.

    Raises:
        KafkaClientError: the topic does not exist, or the cluster cannot be read.
    """
    settings = settings or load_settings()
    reader = DeadLetterReader(settings, topic, f"streamkit-dlq-inspect.{topic}")
    by_reason: Counter[str] = Counter()
    by_error_type: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    oldest: int | None = None
    newest: int | None = None
    last: list[DeadLetter] = []
    try:
        for message in reader.read({p: low for p, (low, _) in reader.bounds.items()}):
            letter = DeadLetter.of(message)
            by_reason[letter.reason] += 1
            by_error_type[letter.error_type or UNKNOWN] += 1
            by_source[letter.source] += 1
            oldest = letter.failed_at if oldest is None else min(oldest, letter.failed_at)
            newest = letter.failed_at if newest is None else max(newest, letter.failed_at)
            if samples > 0:
                last.append(letter)
                if len(last) > 4 * samples:  # keep memory bounded; sorted below
                    last = sorted(last, key=lambda x: x.failed_at)[-samples:]
    finally:
        reader.close()
    decoder = _Samples(settings)
    try:
        chosen = sorted(last, key=lambda x: x.failed_at)[-samples:] if samples > 0 else []
        shown = [decoder.sample(letter) for letter in chosen]
    finally:
        decoder.close()
    return DeadLetterReport(
        topic=topic,
        count=sum(by_reason.values()),
        by_reason=_counted(by_reason),
        by_error_type=_counted(by_error_type),
        by_source_partition=_counted(by_source),
        oldest=None if oldest is None else _iso(oldest),
        newest=None if newest is None else _iso(newest),
        samples=shown,
    )
