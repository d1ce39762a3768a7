"""Diagnosis of librdkafka errors: the one mapping onto streamkit's exception hierarchy.

librdkafka reports many failures with generic codes (``_TRANSPORT``, ``_INVALID_ARG``);
the code and the text together say what happened. :func:`translate_kafka_error` turns a
``KafkaError`` into the :mod:`streamkit.errors` class that names the cause, with a hint,
and keeps the original error on the exception.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

from streamkit.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    DeliveryError,
    KafkaClientError,
    TlsError,
)

__all__ = ["diagnose", "translate_kafka_error"]

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
        "failed to retrieve oidc token",
        AuthenticationError,
        "the OAuth token endpoint issued no token: check "
        f"{_SEC}SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, {_SEC}SASL_OAUTHBEARER_CLIENT_ID and "
        f"{_SEC}SASL_OAUTHBEARER_CLIENT_SECRET",
    ),
    (
        "invalid_token",
        AuthenticationError,
        "the broker refused the OAuth token: its audience, issuer or signature is not what "
        "the broker expects",
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
        "kafka_error": error,
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
