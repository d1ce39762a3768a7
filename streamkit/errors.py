"""The one exception hierarchy of streamkit.

Every error streamkit raises derives from :class:`StreamkitError`. Messages say what
went wrong, why, and how to fix it; they never contain secrets (passwords, keys,
tokens), because exceptions end up in logs.

::

    StreamkitError
    ├── ConfigError (ValueError)           bad settings, every wrong field named
    ├── SchemaError
    │   ├── SchemaLoadError                 unreadable .avsc, unresolved named type
    │   ├── SchemaValidationError (ValueError)
    │   │                                   a record does not match its schema
    │   └── SchemaCompatibilityError        the registry refused a schema change
    ├── SerializationError                  a value could not be encoded
    ├── DeserializationError                bytes on the topic could not be decoded
    ├── RegistryError                       the schema registry failed or is unreachable
    ├── KafkaClientError                    librdkafka reported an error
    │   ├── DeliveryError                   a produced record was not acknowledged
    │   ├── BrokerUnavailableError          no broker could be reached in time
    │   ├── AuthenticationError             SASL / TLS handshake refused
    │   └── AuthorizationError              an ACL denies the operation
    └── DedupStoreError                     the deduplication store failed

Upstream errors are translated into this hierarchy in one place,
:func:`translate_kafka_error`.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BrokerUnavailableError",
    "ConfigError",
    "ConfigProblem",
    "DedupStoreError",
    "DeliveryError",
    "DeserializationError",
    "KafkaClientError",
    "RegistryError",
    "SchemaCompatibilityError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaValidationError",
    "SerializationError",
    "StreamkitError",
    "translate_kafka_error",
]


class StreamkitError(Exception):
    """Root of every error streamkit raises."""


@dataclass(frozen=True)
class ConfigProblem:
    """One wrong setting: the environment variable, what is wrong, and how to fix it."""

    env_var: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.env_var}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(StreamkitError, ValueError):
    """Settings are invalid; ``problems`` names every wrong field."""

    def __init__(self, problems: list[ConfigProblem] | tuple[ConfigProblem, ...]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid streamkit settings ({count} {noun}):\n{lines}")

    @property
    def env_vars(self) -> tuple[str, ...]:
        """The environment variables that hold wrong values."""
        return tuple(problem.env_var for problem in self.problems)


class SchemaError(StreamkitError):
    """Base class for schema problems."""


class SchemaLoadError(SchemaError):
    """A schema file could not be read, parsed, or its named types resolved."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class SchemaValidationError(SchemaError, ValueError):
    """A record does not match its schema; nothing was sent.

    Attributes:
        field: dotted path of the offending field (``payload.items[2].sku``).
        expected: the Avro type the schema expects there.
        actual: the Python type name of the value found.
    """

    def __init__(
        self, *, schema: str, field: str, expected: str, actual: str, reason: str = ""
    ) -> None:
        self.schema = schema
        self.field = field
        self.expected = expected
        self.actual = actual
        detail = reason or f"expected {expected}, got {actual}"
        super().__init__(f"record does not match schema {schema!r} at field {field!r}: {detail}")


class SchemaCompatibilityError(SchemaError):
    """The registry refused a schema because it breaks the subject's compatibility."""

    def __init__(self, *, subject: str, compatibility: str, reasons: list[str]) -> None:
        self.subject = subject
        self.compatibility = compatibility
        self.reasons = tuple(reasons)
        why = "; ".join(self.reasons) or "no reason given by the registry"
        super().__init__(f"schema for subject {subject!r} is not {compatibility} compatible: {why}")


class SerializationError(StreamkitError):
    """A value could not be encoded for the wire."""


class DeserializationError(StreamkitError):
    """Bytes read from a topic could not be decoded.

    Attributes:
        topic, partition, offset: where the bad message sits (when known).
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(message)


class RegistryError(StreamkitError):
    """The schema registry failed, refused a request, or could not be reached."""

    def __init__(
        self, message: str, *, http_status: int | None = None, error_code: int | None = None
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        super().__init__(message)


class KafkaClientError(StreamkitError):
    """librdkafka reported an error.

    Attributes:
        code: the librdkafka error code name (``_MSG_TIMED_OUT``, ``TOPIC_AUTHORIZATION_FAILED``).
        retriable: whether retrying the same operation may succeed.
        fatal: whether the client instance is unusable and must be recreated.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        retriable: bool = False,
        fatal: bool = False,
        topic: str | None = None,
        partition: int | None = None,
    ) -> None:
        self.code = code
        self.retriable = retriable
        self.fatal = fatal
        self.topic = topic
        self.partition = partition
        super().__init__(message)


class DeliveryError(KafkaClientError):
    """A produced record was not acknowledged by the cluster."""


class BrokerUnavailableError(KafkaClientError):
    """No broker could be reached within the allowed time."""


class AuthenticationError(KafkaClientError):
    """The broker refused the client's credentials or TLS handshake."""


class AuthorizationError(KafkaClientError):
    """An ACL denies the requested operation on a resource."""


class DedupStoreError(StreamkitError):
    """The deduplication store could not be read or written."""


_AUTHENTICATION_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)
_AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
_UNAVAILABLE_CODES = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
)

_HINTS: dict[type[KafkaClientError], str] = {
    AuthenticationError: (
        "check STREAMKIT_SECURITY__* (protocol, mechanism, username/password, CA and "
        "client certificates) against the listener you connect to"
    ),
    AuthorizationError: "grant the principal an ACL for this resource and operation",
    BrokerUnavailableError: (
        "check STREAMKIT_KAFKA__BOOTSTRAP_SERVERS and that the broker is running and "
        "reachable with the configured security protocol"
    ),
    DeliveryError: "the record was not acknowledged; it may be retried",
}


def _classify(code: int) -> type[KafkaClientError]:
    if code in _AUTHENTICATION_CODES:
        return AuthenticationError
    if code in _AUTHORIZATION_CODES:
        return AuthorizationError
    if code in _UNAVAILABLE_CODES:
        return BrokerUnavailableError
    return KafkaClientError


def translate_kafka_error(
    error: KafkaError,
    *,
    operation: str,
    topic: str | None = None,
    partition: int | None = None,
    delivery: bool = False,
) -> KafkaClientError:
    """Map a librdkafka ``KafkaError`` onto the streamkit hierarchy.

    Args:
        error: the error librdkafka reported.
        operation: what streamkit was doing (``"produce"``, ``"commit"``), for the message.
        topic, partition: the resource concerned, when known.
        delivery: the error came from a delivery report; non-auth errors become
            :class:`DeliveryError`.
    """
    cls = _classify(error.code())
    if delivery and cls in (KafkaClientError, BrokerUnavailableError):
        cls = DeliveryError
    where = f" on topic {topic!r}" if topic else ""
    if partition is not None and topic:
        where += f" partition {partition}"
    hint = _HINTS.get(cls, "")
    message = f"{operation} failed{where}: {error.name()}: {error.str()}"
    if hint:
        message += f" (hint: {hint})"
    return cls(
        message,
        code=error.name(),
        retriable=error.retriable(),
        fatal=error.fatal(),
        topic=topic,
        partition=partition,
    )
