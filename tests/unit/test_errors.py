from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from streamkit import errors
from streamkit.client import diagnose
from streamkit.client.diagnose import translate_kafka_error
from streamkit.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    ConfigError,
    ConfigProblem,
    DeliveryError,
    KafkaClientError,
    StreamkitError,
    TlsError,
)

MAPPED = [
    (KafkaError._AUTHENTICATION, AuthenticationError),
    (KafkaError.SASL_AUTHENTICATION_FAILED, AuthenticationError),
    (KafkaError._SSL, TlsError),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, AuthorizationError),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, AuthorizationError),
    (KafkaError.CLUSTER_AUTHORIZATION_FAILED, AuthorizationError),
    (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, AuthorizationError),
    (KafkaError._ALL_BROKERS_DOWN, BrokerUnavailableError),
    (KafkaError._TRANSPORT, BrokerUnavailableError),
    (KafkaError._TIMED_OUT, BrokerUnavailableError),
    (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaClientError),
]


@pytest.mark.parametrize(("code", "expected"), MAPPED)
def test_every_mapped_code_translates(code: int, expected: type[Exception]) -> None:
    error = translate_kafka_error(
        KafkaError(code, "boom"), operation="produce", topic="orders", partition=2
    )
    assert type(error) is expected
    assert error.code == KafkaError(code).name()
    assert "orders" in str(error)
    assert "partition 2" in str(error)
    assert error.topic == "orders"
    assert error.kafka_error is not None
    assert error.kafka_error.code() == code


def test_mapping_table_is_fully_covered() -> None:
    covered = {code for code, _ in MAPPED}
    table = (
        diagnose._AUTHENTICATION_CODES
        | diagnose._TLS_CODES
        | diagnose._AUTHORIZATION_CODES
        | diagnose._UNAVAILABLE_CODES
    )
    assert table <= covered


@pytest.mark.parametrize("code", [KafkaError._MSG_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN])
def test_delivery_errors_become_delivery_error(code: int) -> None:
    error = translate_kafka_error(KafkaError(code), operation="produce", delivery=True)
    assert isinstance(error, DeliveryError)
    assert "hint:" in str(error)


def test_auth_failure_in_delivery_stays_auth_error() -> None:
    error = translate_kafka_error(
        KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), operation="produce", delivery=True
    )
    assert isinstance(error, AuthorizationError)


def test_config_error_is_value_error_and_lists_problems() -> None:
    error = ConfigError(
        [
            ConfigProblem("STREAMKIT_A", "is wrong", "fix it"),
            ConfigProblem("STREAMKIT_B", "is empty"),
        ]
    )
    assert isinstance(error, ValueError)
    assert isinstance(error, StreamkitError)
    assert error.env_vars == ("STREAMKIT_A", "STREAMKIT_B")
    assert "2 problems" in str(error)
    assert "(hint: fix it)" in str(error)


def test_every_public_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, StreamkitError), name
