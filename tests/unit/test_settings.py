from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamkit.errors import ConfigError
from streamkit.settings import StreamkitSettings, load_settings

SECRET = "s3cr3t-Pa55word-xyz"


def _get(settings: StreamkitSettings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


SASL_BASE = {
    "STREAMKIT_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
    "STREAMKIT_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
    "STREAMKIT_SECURITY__SASL_USERNAME": "alice",
    "STREAMKIT_SECURITY__SASL_PASSWORD": SECRET,
}


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        (
            "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS",
            "b1:9092, b2:9093",
            "kafka.bootstrap_list",
            ["b1:9092", "b2:9093"],
        ),
        ("STREAMKIT_KAFKA__CLIENT_ID", "orders", "kafka.client_id", "orders"),
        (
            "STREAMKIT_SECURITY__SASL_MECHANISM",
            "SCRAM-SHA-256",
            "security.sasl_mechanism",
            "SCRAM-SHA-256",
        ),
        ("STREAMKIT_SECURITY__SASL_USERNAME", "bob", "security.sasl_username", "bob"),
        ("STREAMKIT_SECURITY__SASL_PASSWORD", "pw2", "security.sasl_password", "pw2"),
        (
            "STREAMKIT_SCHEMA_REGISTRY__URL",
            "https://registry:8081",
            "schema_registry.url",
            "https://registry:8081",
        ),
        (
            "STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO",
            "u:p",
            "schema_registry.basic_auth_user_info",
            "u:p",
        ),
        ("STREAMKIT_CONSUMER__GROUP_ID", "billing", "consumer.group_id", "billing"),
        ("STREAMKIT_CONSUMER__AUTO_OFFSET_RESET", "latest", "consumer.auto_offset_reset", "latest"),
        (
            "STREAMKIT_DEDUP__URL",
            "redis://127.0.0.1:6379/0",
            "dedup.url",
            "redis://127.0.0.1:6379/0",
        ),
        ("STREAMKIT_METRICS__PORT", "9464", "metrics.port", 9464),
        (
            "STREAMKIT_PRODUCER__EXTRA",
            '{"linger.ms": 20, "queue.buffering.max.kbytes": 2048}',
            "producer.extra",
            {"linger.ms": 20, "queue.buffering.max.kbytes": 2048},
        ),
        (
            "STREAMKIT_CONSUMER__EXTRA",
            '{"fetch.min.bytes": 1024}',
            "consumer.extra",
            {"fetch.min.bytes": 1024},
        ),
        (
            "STREAMKIT_KAFKA__EXTRA",
            '{"socket.keepalive.enable": true}',
            "kafka.extra",
            {"socket.keepalive.enable": True},
        ),
    ],
)
def test_each_variable_is_parsed(
    env: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: Any
) -> None:
    for name, base_value in SASL_BASE.items():
        env.setenv(name, base_value)
    env.setenv(variable, value)
    assert _get(load_settings(), attribute) == expected


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        (
            "STREAMKIT_SECURITY__SSL_ENDPOINT_IDENTIFICATION",
            "false",
            "security.ssl_endpoint_identification",
            False,
        ),
        ("STREAMKIT_SECURITY__SSL_KEY_PASSWORD", "kp", "security.ssl_key_password", "kp"),
        ("STREAMKIT_SECURITY__PROTOCOL", "SSL", "security.protocol", "SSL"),
    ],
)
def test_tls_variables_are_parsed(
    env: pytest.MonkeyPatch,
    pem_file: Path,
    variable: str,
    value: str,
    attribute: str,
    expected: Any,
) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SSL")
    for name in ("SSL_CA_LOCATION", "SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION"):
        env.setenv(f"STREAMKIT_SECURITY__{name}", str(pem_file))
    env.setenv(variable, value)
    settings = load_settings()
    assert _get(settings, attribute) == expected
    assert settings.security.ssl_ca_location == pem_file
    assert settings.schema_registry.ssl_ca_location is None


def test_defaults_are_safe(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.security.ssl_endpoint_identification is True
    assert settings.producer.enable_idempotence is True
    assert settings.producer.acks == "all"
    assert settings.consumer.isolation_level == "read_committed"


def test_registry_ca_location_is_parsed(env: pytest.MonkeyPatch, pem_file: Path) -> None:
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__SSL_CA_LOCATION", str(pem_file))
    assert load_settings().schema_registry.ssl_ca_location == pem_file


def test_dotenv_file_is_read_and_environment_wins(env: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(
        "STREAMKIT_KAFKA__CLIENT_ID=from-dotenv\nSTREAMKIT_CONSUMER__GROUP_ID=g-dotenv\n"
    )
    env.setenv("STREAMKIT_CONSUMER__GROUP_ID", "g-env")
    settings = load_settings()
    assert settings.kafka.client_id == "from-dotenv"
    assert settings.consumer.group_id == "g-env"


INVALID = [
    ({"STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": " , "}, "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS"),
    ({"STREAMKIT_KAFKA__BOOTSTRAP_SERVERS": "no-port"}, "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS"),
    ({"STREAMKIT_SECURITY__PROTOCOL": "SASL_SSL"}, "STREAMKIT_SECURITY__SASL_MECHANISM"),
    (
        {
            "STREAMKIT_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
            "STREAMKIT_SECURITY__SASL_MECHANISM": "PLAIN",
            "STREAMKIT_SECURITY__SASL_PASSWORD": SECRET,
        },
        "STREAMKIT_SECURITY__SASL_USERNAME",
    ),
    (
        {
            "STREAMKIT_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
            "STREAMKIT_SECURITY__SASL_MECHANISM": "SCRAM-SHA-256",
            "STREAMKIT_SECURITY__SASL_USERNAME": "alice",
        },
        "STREAMKIT_SECURITY__SASL_PASSWORD",
    ),
    (
        {
            "STREAMKIT_SECURITY__PROTOCOL": "SASL_SSL",
            "STREAMKIT_SECURITY__SASL_MECHANISM": "OAUTHBEARER",
            "STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD": "oidc",
        },
        "STREAMKIT_SECURITY__SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
    ),
    (
        {
            "STREAMKIT_SECURITY__PROTOCOL": "PLAINTEXT",
            "STREAMKIT_SECURITY__SASL_MECHANISM": "PLAIN",
        },
        "STREAMKIT_SECURITY__SASL_MECHANISM",
    ),
    (
        {
            "STREAMKIT_SECURITY__PROTOCOL": "SSL",
            "STREAMKIT_SECURITY__SSL_CA_LOCATION": "/no/ca.pem",
        },
        "STREAMKIT_SECURITY__SSL_CA_LOCATION",
    ),
    ({"STREAMKIT_SECURITY__PROTOCOL": "TLS"}, "STREAMKIT_SECURITY__PROTOCOL"),
    ({"STREAMKIT_SECURITY__SASL_MECHANISM": "GSSAPI"}, "STREAMKIT_SECURITY__SASL_MECHANISM"),
    ({"STREAMKIT_SCHEMA_REGISTRY__URL": "registry:8081"}, "STREAMKIT_SCHEMA_REGISTRY__URL"),
    (
        {"STREAMKIT_SCHEMA_REGISTRY__URL": "http://u:p@registry:8081"},
        "STREAMKIT_SCHEMA_REGISTRY__URL",
    ),
    (
        {"STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": "no-colon"},
        "STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO",
    ),
    (
        {"STREAMKIT_SCHEMA_REGISTRY__SSL_CA_LOCATION": "/no/ca.pem"},
        "STREAMKIT_SCHEMA_REGISTRY__SSL_CA_LOCATION",
    ),
    (
        {"STREAMKIT_CONSUMER__AUTO_OFFSET_RESET": "beginning"},
        "STREAMKIT_CONSUMER__AUTO_OFFSET_RESET",
    ),
    ({"STREAMKIT_CONSUMER__EXTRA": '{"enable.auto.commit": true}'}, "STREAMKIT_CONSUMER__EXTRA"),
    ({"STREAMKIT_PRODUCER__ACKS": "1"}, "STREAMKIT_PRODUCER__ACKS"),
    ({"STREAMKIT_PRODUCER__EXTRA": '{"linger.ms": '}, "STREAMKIT_PRODUCER__*"),
    ({"STREAMKIT_DEDUP__URL": "mysql://db/x"}, "STREAMKIT_DEDUP__URL"),
    ({"STREAMKIT_METRICS__PORT": "70000"}, "STREAMKIT_METRICS__PORT"),
]


@pytest.mark.parametrize(("variables", "named"), INVALID)
def test_invalid_settings_name_the_field(
    env: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in caught.value.env_vars
    assert named in str(caught.value)


def test_ssl_key_without_certificate_is_rejected(env: pytest.MonkeyPatch, pem_file: Path) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SSL")
    env.setenv("STREAMKIT_SECURITY__SSL_KEY_LOCATION", str(pem_file))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.env_vars == ("STREAMKIT_SECURITY__SSL_CERTIFICATE_LOCATION",)
    assert "hint:" in str(caught.value)


def test_every_wrong_field_is_named_at_once(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS", "")
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_SSL")
    env.setenv("STREAMKIT_SECURITY__SSL_CA_LOCATION", "/missing.pem")
    env.setenv("STREAMKIT_CONSUMER__AUTO_OFFSET_RESET", "sometime")
    env.setenv("STREAMKIT_METRICS__PORT", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert set(caught.value.env_vars) == {
        "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS",
        "STREAMKIT_SECURITY__SASL_MECHANISM",
        "STREAMKIT_SECURITY__SSL_CA_LOCATION",
        "STREAMKIT_CONSUMER__AUTO_OFFSET_RESET",
        "STREAMKIT_METRICS__PORT",
    }


def test_secrets_never_appear_in_repr_or_errors(env: pytest.MonkeyPatch) -> None:
    for name, value in SASL_BASE.items():
        env.setenv(name, value)
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO", f"reg:{SECRET}")
    settings = load_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings.security)

    env.setenv("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS", "")  # now make loading fail
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO", SECRET)  # no colon: invalid
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or SECRET not in str(caught.value.__context__)


def test_consume_pipeline_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMKIT_CONSUMER__CONCURRENCY", "64")
    monkeypatch.setenv("STREAMKIT_CONSUMER__ORDERING", "partition")
    monkeypatch.setenv("STREAMKIT_CONSUMER__DRAIN_TIMEOUT_MS", "5000")
    consumer = load_settings().consumer
    assert (consumer.concurrency, consumer.ordering, consumer.drain_timeout_ms) == (
        64,
        "partition",
        5000,
    )
    assert consumer.in_flight_limit == 640, "default: 10 x concurrency"
    monkeypatch.setenv("STREAMKIT_CONSUMER__MAX_IN_FLIGHT", "100")
    assert load_settings().consumer.in_flight_limit == 100
    for name in ("CONCURRENCY", "ORDERING", "DRAIN_TIMEOUT_MS", "MAX_IN_FLIGHT"):
        monkeypatch.delenv(f"STREAMKIT_CONSUMER__{name}")
    defaults = load_settings().consumer
    assert (defaults.concurrency, defaults.ordering, defaults.max_in_flight) == (1, "key", None)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"STREAMKIT_CONSUMER__CONCURRENCY": "0"}, "STREAMKIT_CONSUMER__CONCURRENCY"),
        ({"STREAMKIT_CONSUMER__ORDERING": "random"}, "STREAMKIT_CONSUMER__ORDERING"),
        (
            {"STREAMKIT_CONSUMER__CONCURRENCY": "8", "STREAMKIT_CONSUMER__MAX_IN_FLIGHT": "4"},
            "STREAMKIT_CONSUMER__MAX_IN_FLIGHT",
        ),
    ],
)
def test_bad_pipeline_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in info.value.env_vars


def test_constructor_overrides_are_validated_like_the_environment() -> None:
    consumer = load_settings().consumer
    assert consumer.with_overrides(concurrency=None) is consumer
    assert consumer.with_overrides(concurrency=4, ordering="none").concurrency == 4
    with pytest.raises(ConfigError) as info:
        consumer.with_overrides(concurrency=-1)
    assert info.value.env_vars == ("STREAMKIT_CONSUMER__CONCURRENCY",)
