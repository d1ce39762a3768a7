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
    │   │   └── TlsError                    TLS failed: untrusted or expired certificate,
    │   │                                   host name mismatch, TLS/plaintext mismatch
    │   └── AuthorizationError              an ACL denies the operation
    ├── DedupStoreError                     the deduplication store failed
    ├── OutboxError                         the transactional outbox could not be
    │                                       written, or its relay cannot reach the database
    └── MissingExtraError (ImportError)     an optional dependency is not installed

librdkafka errors are translated into this hierarchy in one place,
:func:`streamkit.client.diagnose.translate_kafka_error`; the translated error keeps the
original ``KafkaError`` (:attr:`KafkaClientError.kafka_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    "MissingExtraError",
    "OutboxError",
    "RegistryError",
    "SchemaCompatibilityError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaValidationError",
    "SerializationError",
    "StreamkitError",
    "TlsError",
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
        # The path is shown as is: repr() would double the backslashes of escaped map keys.
        super().__init__(f"record does not match schema {schema!r} at field {field}: {detail}")


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
    """The schema registry failed, refused a request, or could not be reached.

    Attributes:
        transient: the registry was unreachable or failed on its side (HTTP 5xx, 408,
            429); the same request may succeed later. False for a definite answer.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        error_code: int | None = None,
        transient: bool = False,
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.transient = transient or (
            http_status is not None and (http_status >= 500 or http_status in (408, 429))
        )
        super().__init__(message)


class KafkaClientError(StreamkitError):
    """librdkafka reported an error.

    Attributes:
        code: the librdkafka error code name (``_MSG_TIMED_OUT``, ``TOPIC_AUTHORIZATION_FAILED``).
        retriable: whether retrying the same operation may succeed.
        fatal: whether the client instance is unusable and must be recreated.
        kafka_error: the librdkafka ``KafkaError`` this was translated from (None when
            streamkit raised it itself), so callers can ask it, e.g.
            ``txn_requires_abort()``.
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
        kafka_error: KafkaError | None = None,
    ) -> None:
        self.kafka_error = kafka_error
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


class TlsError(AuthenticationError):
    """The TLS connection failed: certificate not trusted, expired or for another host,
    a client certificate missing or refused, an unreadable key, or TLS spoken to a
    plaintext listener (and the reverse)."""


class AuthorizationError(KafkaClientError):
    """An ACL denies the requested operation on a resource.

    Attributes:
        resource_type: ``TOPIC``, ``GROUP``, ``CLUSTER`` or ``TRANSACTIONAL_ID``.
        resource_name: the topic, group or transactional id (``kafka-cluster`` for the cluster).
        acl_operation: the ACL operation the client needed (``WRITE``, ``READ``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        resource_type: str = "",
        resource_name: str = "",
        acl_operation: str = "",
        **kwargs: Any,
    ) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.acl_operation = acl_operation
        super().__init__(message, **kwargs)


class DedupStoreError(StreamkitError):
    """The deduplication store could not be read or written."""


class OutboxError(StreamkitError):
    """An outbox row could not be written, or the relay could not read or mark rows."""


class MissingExtraError(StreamkitError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` line."""

    def __init__(self, *, extra: str, module: str) -> None:
        self.extra = extra
        self.install = f"pip install 'streamkit[{extra}]'"
        super().__init__(
            f"this needs the {module!r} package of the streamkit[{extra}] extra, which is "
            f"not installed (hint: {self.install})",
            name=module,
        )
