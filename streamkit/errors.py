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
    └── DedupStoreError                     the deduplication store failed

Upstream errors are translated into this hierarchy in one place,
:func:`translate_kafka_error`.
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
    "RegistryError",
    "SchemaCompatibilityError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaValidationError",
    "SerializationError",
    "StreamkitError",
    "TlsError",
    "diagnose",
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


_AUTHENTICATION_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
)
_TLS_CODES = frozenset({KafkaError._SSL})
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

_SEC = "STREAMKIT_SECURITY__"
_HINTS: dict[type[KafkaClientError], str] = {
    AuthenticationError: (
        "check STREAMKIT_SECURITY__* (protocol, mechanism, username/password, CA and "
        "client certificates) against the listener you connect to"
    ),
    AuthorizationError: "grant the principal an ACL for this resource and operation",
    TlsError: (
        f"check {_SEC}PROTOCOL, SSL_CA_LOCATION and the client certificate against the "
        "listener you connect to"
    ),
    BrokerUnavailableError: (
        "check STREAMKIT_KAFKA__BOOTSTRAP_SERVERS and that the broker is running and "
        "reachable with the configured security protocol"
    ),
    DeliveryError: "the record was not acknowledged; it may be retried",
}


# librdkafka reports most security failures with generic codes (_TRANSPORT,
# _INVALID_ARG); the text says what happened. First match wins.
_CAUSES: tuple[tuple[str, type[KafkaClientError], str], ...] = (
    (
        "invalid credentials",
        AuthenticationError,
        f"wrong password or unknown user: check {_SEC}SASL_USERNAME and {_SEC}SASL_PASSWORD "
        f"(SCRAM users must exist for {_SEC}SASL_MECHANISM)",
    ),
    (
        "invalid username or password",
        AuthenticationError,
        f"wrong password or unknown user: check {_SEC}SASL_USERNAME and {_SEC}SASL_PASSWORD",
    ),
    (
        "unsupported sasl mechanism",
        AuthenticationError,
        f"the listener does not enable {_SEC}SASL_MECHANISM; ask for the mechanisms it offers",
    ),
    (
        "certificate verify failed",
        TlsError,
        "the broker certificate is not trusted: it is not signed by the CA in "
        f"{_SEC}SSL_CA_LOCATION, or it does not name the host in the bootstrap address "
        f"({_SEC}SSL_ENDPOINT_IDENTIFICATION=false turns the host check off)",
    ),
    (
        "certificate required",
        TlsError,
        f"the listener requires a client certificate: set {_SEC}SSL_CERTIFICATE_LOCATION "
        f"and {_SEC}SSL_KEY_LOCATION",
    ),
    (
        "certificate expired",
        TlsError,
        "the broker refused the client certificate as expired: renew "
        f"{_SEC}SSL_CERTIFICATE_LOCATION",
    ),
    (
        "alert certificate unknown",
        TlsError,
        f"the broker refused the client certificate ({_SEC}SSL_CERTIFICATE_LOCATION): it is "
        "expired, not yet valid, or not signed by a CA the broker trusts",
    ),
    (
        "alert bad certificate",
        TlsError,
        f"the broker refused the client certificate ({_SEC}SSL_CERTIFICATE_LOCATION)",
    ),
    (
        "alert unknown ca",
        TlsError,
        "the broker does not trust the CA that signed the client certificate",
    ),
    (
        "ssl.key.location failed",
        TlsError,
        f"the client key cannot be read: wrong {_SEC}SSL_KEY_PASSWORD, or "
        f"{_SEC}SSL_KEY_LOCATION is not a PEM private key",
    ),
    (
        "ssl.certificate.location failed",
        TlsError,
        f"{_SEC}SSL_CERTIFICATE_LOCATION is not a PEM certificate",
    ),
    (
        "incorrect security.protocol",
        TlsError,
        "the broker closed the connection at the first request: the listener probably "
        f"expects TLS or SASL; set {_SEC}PROTOCOL to what the listener speaks",
    ),
    (
        "connecting to a plaintext broker listener",
        TlsError,
        f"TLS spoken to a plaintext listener: set {_SEC}PROTOCOL=PLAINTEXT or SASL_PLAINTEXT, "
        "or use the broker's TLS port",
    ),
    (
        "wrong version number",
        TlsError,
        f"TLS spoken to a plaintext listener: set {_SEC}PROTOCOL=PLAINTEXT or SASL_PLAINTEXT, "
        "or use the broker's TLS port",
    ),
    (
        "packet length too long",
        TlsError,
        f"TLS spoken to a plaintext listener: set {_SEC}PROTOCOL=PLAINTEXT or SASL_PLAINTEXT",
    ),
)

# The ACL operation each streamkit operation needs on the resource an error names.
_ACL_OPERATIONS: dict[str, str] = {
    "produce": "WRITE",
    "dead-letter": "WRITE",
    "consume": "READ",
    "commit": "READ",
    "create topic": "CREATE",
    "increase partitions": "ALTER",
    "alter configs": "ALTER_CONFIGS",
    "describe configs": "DESCRIBE_CONFIGS",
    "list group offsets": "DESCRIBE",
    "list offsets": "DESCRIBE",
}
_RESOURCE_OF_CODE: dict[int, str] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "TOPIC",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "GROUP",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "CLUSTER",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TRANSACTIONAL_ID",
}


def diagnose(text: str) -> tuple[type[KafkaClientError], str] | None:
    """The error class and hint for a librdkafka error text, when it names a known cause."""
    lowered = text.lower()
    for marker, cls, hint in _CAUSES:
        if marker in lowered:
            return cls, hint
    return None


def _classify(code: int) -> type[KafkaClientError]:
    if code in _TLS_CODES:
        return TlsError
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
    group: str | None = None,
) -> KafkaClientError:
    """Map a librdkafka ``KafkaError`` onto the streamkit hierarchy.

    Args:
        error: the error librdkafka reported.
        operation: what streamkit was doing (``"produce"``, ``"commit"``), for the message.
        topic, partition: the resource concerned, when known.
        delivery: the error came from a delivery report; non-auth errors become
            :class:`DeliveryError`.
        group: the consumer group concerned, when known (named by group ACL errors).
    """
    code = error.code()
    cls = _classify(code)
    hint = _HINTS.get(cls, "")
    cause = diagnose(error.str()) if cls is not AuthorizationError else None
    if cause is not None:
        cls, hint = cause
    if delivery and cls in (KafkaClientError, BrokerUnavailableError):
        cls, hint = DeliveryError, _HINTS[DeliveryError]
    where = f" on topic {topic!r}" if topic else ""
    if partition is not None and topic:
        where += f" partition {partition}"
    common: dict[str, Any] = {
        "code": error.name(),
        "retriable": error.retriable(),
        "fatal": error.fatal(),
        "topic": topic,
        "partition": partition,
    }
    if cls is AuthorizationError:
        return _authorization_error(error, operation, where, topic, group, common)
    message = f"{operation} failed{where}: {error.name()}: {error.str()}"
    if hint:
        message += f" (hint: {hint})"
    return cls(message, **common)


def _authorization_error(
    error: KafkaError,
    operation: str,
    where: str,
    topic: str | None,
    group: str | None,
    common: dict[str, Any],
) -> AuthorizationError:
    resource_type = _RESOURCE_OF_CODE.get(error.code(), "")
    resource_name = {
        "TOPIC": topic or "",
        "GROUP": group or "",
        "CLUSTER": "kafka-cluster",
    }.get(resource_type, "")
    acl_operation = _ACL_OPERATIONS.get(operation, "")
    if resource_type == "CLUSTER":
        # Idempotent producers need IDEMPOTENT_WRITE (or WRITE on some topic).
        acl_operation = "IDEMPOTENT_WRITE" if operation == "produce" else acl_operation
    elif resource_type == "GROUP":
        acl_operation = "READ"
    elif resource_type == "TRANSACTIONAL_ID":
        acl_operation = "WRITE"
    denied = f"{acl_operation or 'this operation'} on {resource_type or 'the resource'}"
    if resource_name:
        denied += f" {resource_name!r}"
    if acl_operation == "IDEMPOTENT_WRITE":
        denied += " (an idempotent producer needs it, or WRITE on the topics it writes to)"
    message = (
        f"{operation} failed{where}: {error.name()}: not authorized: the principal lacks "
        f"{denied} (hint: grant it with an ACL, e.g. StreamkitAdmin.ensure_acls, or "
        "ask the cluster operator)"
    )
    return AuthorizationError(
        message,
        resource_type=resource_type,
        resource_name=resource_name,
        acl_operation=acl_operation,
        **common,
    )
