"""Cause detection of the start-up connection check, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cryptography", reason="the test certificates need streamkit[testing]")

from confluent_kafka import KafkaError

from streamkit.client.connect import ConnectionWatch, check_connection, refine
from streamkit.client.diagnose import diagnose, translate_kafka_error
from streamkit.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    KafkaClientError,
    TlsError,
)
from streamkit.settings import SecuritySettings, load_settings
from streamkit.testing.certs import TlsMaterial, make_tls_material

# librdkafka texts seen against the test kit's secured broker -> expected error type
TEXTS = [
    (
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-256",
        AuthenticationError,
    ),
    (
        "SASL authentication error: Authentication failed: Invalid username or password",
        AuthenticationError,
    ),
    (
        'Failed to retrieve OIDC token from "http://127.0.0.1:40817/realms/streamkit/protocol/'
        'openid-connect/token": {"error":"unauthorized_client","error_description":"Invalid '
        'client or Invalid client credentials"} (401)',
        AuthenticationError,
    ),
    (
        'Failed to retrieve OIDC token from "http://127.0.0.1:1/token": Failed to connect to '
        "127.0.0.1:1 after 0 ms: Could not connect to server (-1)",
        AuthenticationError,
    ),
    (
        'sasl_ssl://127.0.0.1:41641/bootstrap: SASL authentication error: {"status":'
        '"invalid_token"} (after 305ms in state AUTH_REQ)',
        AuthenticationError,
    ),
    ("SSL handshake failed: error:0A000086:SSL routines::certificate verify failed", TlsError),
    ("Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required", TlsError),
    ("Receive failed: error:0A000416:SSL routines::ssl/tls alert certificate unknown", TlsError),
    (
        "Failed to create admin client: ssl.key.location failed: "
        "error:0A080009:SSL routines::PEM lib",
        TlsError,
    ),
    (
        "SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a "
        "PLAINTEXT broker listener?",
        TlsError,
    ),
]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize(("text", "expected"), TEXTS)
def test_librdkafka_texts_map_to_a_cause(text: str, expected: type[KafkaClientError]) -> None:
    cause = diagnose(text)
    assert cause is not None
    assert cause[0] is expected
    error = translate_kafka_error(KafkaError(KafkaError._TRANSPORT, text), operation="connect")
    assert type(error) is expected
    assert "hint:" in str(error)


def test_unknown_transport_text_stays_unavailable() -> None:
    error = translate_kafka_error(
        KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#127.0.0.1:1 failed: Connection refused"),
        operation="connect",
    )
    assert type(error) is BrokerUnavailableError


@pytest.mark.parametrize(
    ("state", "protocol", "expected"),
    [
        ("APIVERSION_QUERY", "PLAINTEXT", TlsError),
        ("UP", "PLAINTEXT", AuthenticationError),
        ("UP", "SSL", None),  # TLS clients get their own handshake messages
    ],
)
def test_repeated_early_closes_name_the_protocol_mismatch(
    state: str, protocol: str, expected: type[KafkaClientError] | None
) -> None:
    watch = ConnectionWatch(protocol)
    line = (
        "[thrd:b/bootstrap]: b: Disconnected: connection closed by peer "
        f"(after 3ms in state {state})"
    )
    for _ in range(2):
        watch.log(3, "%s [%s] %s", "FAIL", "rk", line)
    assert watch.cause is None  # one or two drops may be a restart
    watch.log(3, "%s [%s] %s", "FAIL", "rk", line)
    assert (type(watch.cause) if watch.cause else None) is expected


def test_error_callback_wins_over_log_lines() -> None:
    watch = ConnectionWatch("SASL_SSL")
    watch.log(3, "SSL handshake failed: certificate verify failed")
    watch.on_error(KafkaError(KafkaError._AUTHENTICATION, "invalid credentials"))
    assert type(watch.cause) is AuthenticationError


def test_expired_client_certificate_is_named(tls: TlsMaterial) -> None:
    security = SecuritySettings(
        protocol="SSL",
        ssl_ca_location=tls.ca,
        ssl_certificate_location=tls.expired_client_cert,
        ssl_key_location=tls.expired_client_key,
    )
    failure = translate_kafka_error(
        KafkaError(KafkaError._TRANSPORT, "Receive failed: ssl/tls alert certificate unknown"),
        operation="connect",
    )
    refined = refine(failure, security, "127.0.0.1:1")
    assert isinstance(refined, TlsError)
    assert f"client certificate {str(tls.expired_client_cert)!r} expired on" in str(refined)


def test_valid_client_certificate_keeps_the_generic_cause(tls: TlsMaterial) -> None:
    security = SecuritySettings(
        protocol="SSL",
        ssl_ca_location=tls.ca,
        ssl_certificate_location=tls.client_cert,
        ssl_key_location=tls.client_key,
    )
    failure = translate_kafka_error(
        KafkaError(KafkaError._TRANSPORT, "alert certificate unknown"), operation="connect"
    )
    assert refine(failure, security, "127.0.0.1:1") is failure


def test_unreadable_key_fails_before_any_connection(tls: TlsMaterial, tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:1"},
        security={
            "protocol": "SSL",
            "ssl_ca_location": str(tls.ca),
            "ssl_certificate_location": str(tls.client_cert),
            "ssl_key_location": str(tls.client_key),
            "ssl_key_password": "not-the-password",
        },
    )
    with pytest.raises(TlsError, match="STREAMKIT_SECURITY__SSL_KEY_PASSWORD") as error:
        check_connection(settings, timeout_s=5)
    assert "not-the-password" not in str(error.value)


def test_zero_bound_switches_the_check_off() -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:1", "startup_check_timeout_s": 0}
    )
    assert check_connection(settings) is None


def test_unreachable_broker_fails_within_the_bound() -> None:
    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"})
    with pytest.raises(BrokerUnavailableError, match=r"within 0\.5 s"):
        check_connection(settings, timeout_s=0.5)


@pytest.mark.parametrize(
    ("code", "operation", "kwargs", "resource", "acl"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "produce", {"topic": "t"}, ("TOPIC", "t"), "WRITE"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "consume", {"topic": "t"}, ("TOPIC", "t"), "READ"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "consume", {"group": "g"}, ("GROUP", "g"), "READ"),
        (
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            "produce",
            {},
            ("CLUSTER", "kafka-cluster"),
            "IDEMPOTENT_WRITE",
        ),
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            "create topic",
            {"topic": "t"},
            ("TOPIC", "t"),
            "CREATE",
        ),
    ],
)
def test_authorization_errors_name_resource_and_operation(
    code: int, operation: str, kwargs: dict[str, str], resource: tuple[str, str], acl: str
) -> None:
    error = translate_kafka_error(KafkaError(code), operation=operation, **kwargs)
    assert isinstance(error, AuthorizationError)
    assert (error.resource_type, error.resource_name) == resource
    assert error.acl_operation == acl
    assert f"{acl} on {resource[0]} {resource[1]!r}" in str(error)
