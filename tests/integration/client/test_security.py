"""TLS, mTLS and SASL against the real secured broker: round trips, fast failures, no leaks.

Every client here is configured from ``STREAMKIT_*`` variables or settings built from
them; the broker is the test kit's ``secure_kafka`` (one container, a listener per
variant).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.client.connect import check_connection
from streamkit.consume.consumer import EventConsumer
from streamkit.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    KafkaClientError,
    TlsError,
)
from streamkit.ops.admin import StreamkitAdmin
from streamkit.ops.readiness import check_connectivity
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.plugin import RegistryEndpoint
from streamkit.testing.security import SASL_USERS, SecureKafka, Variant
from tests.factories import ORDER_SCHEMA, order

VARIANTS: list[Variant] = [
    "sasl_plain",
    "sasl_scram_256",
    "sasl_scram_512",
    "ssl",
    "mtls",
    "sasl_ssl",
]
# Measured here: 0.2-1.1 s; the bound leaves room for a loaded machine.
FAILURE_BOUND_S = 10.0
WRONG_PASSWORD = "wrong-password-7f3e"


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_through_each_listener_configured_from_environment(
    variant: Variant,
    secure_kafka: SecureKafka,
    schema_registry: RegistryEndpoint,
    secure_topic: str,
    schemas: SchemaSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = secure_kafka.endpoint(variant)
    _set_env(
        monkeypatch,
        {
            **endpoint.env(),
            "STREAMKIT_SCHEMA_REGISTRY__URL": schema_registry.url,
            "STREAMKIT_CONSUMER__GROUP_ID": f"secure-{variant}-{uuid.uuid4().hex[:8]}",
        },
    )
    settings = load_settings()
    assert settings.security.protocol == endpoint.protocol
    assert settings.security.sasl_mechanism == endpoint.mechanism

    with EventProducer(settings, schemas=schemas) as producer:
        sent = producer.send(secure_topic, order(1), schema=ORDER_SCHEMA).result(timeout=60)
    received: list[Event] = []
    with EventConsumer([secure_topic], received.append, settings=settings) as consumer:
        consumer.run(max_messages=1, idle_timeout_s=60, handle_signals=False)
    assert [event.id for event in received] == [sent.event_id]
    assert received[0].payload["order_id"] == "order-1"


def _case_settings(case: str, kafka: SecureKafka, registry_url: str) -> StreamkitSettings:
    """Settings that must fail for ``case``, built on a working variant."""
    tls = kafka.tls
    registry = {"url": registry_url}
    scram = kafka.endpoint("sasl_scram_256")
    ssl = kafka.endpoint("ssl")
    cases: dict[str, Callable[[], StreamkitSettings]] = {
        "wrong password": lambda: scram.settings(
            security={"sasl_password": WRONG_PASSWORD}, schema_registry=registry
        ),
        "unknown user": lambda: kafka.endpoint("sasl_scram_512", user="mallory").settings(
            schema_registry=registry
        ),
        "wrong CA": lambda: ssl.settings(
            security={"ssl_ca_location": str(tls.wrong_ca)}, schema_registry=registry
        ),
        "hostname mismatch": lambda: ssl.settings(
            kafka={"bootstrap_servers": kafka.wrong_host_address}, schema_registry=registry
        ),
        "expired client certificate": lambda: kafka.endpoint("mtls").settings(
            security={
                "ssl_certificate_location": str(tls.expired_client_cert),
                "ssl_key_location": str(tls.expired_client_key),
                "ssl_key_password": None,
            },
            schema_registry=registry,
        ),
        "no client certificate": lambda: ssl.settings(
            kafka={"bootstrap_servers": kafka.listener("MTLS").address}, schema_registry=registry
        ),
        "wrong key password": lambda: kafka.endpoint("mtls").settings(
            security={"ssl_key_password": WRONG_PASSWORD}, schema_registry=registry
        ),
        "plaintext client, TLS listener": lambda: load_settings(
            kafka={"bootstrap_servers": ssl.bootstrap_servers}, schema_registry=registry
        ),
        "TLS client, plaintext listener": lambda: ssl.settings(
            kafka={"bootstrap_servers": kafka.bootstrap_servers}, schema_registry=registry
        ),
        "plaintext client, SASL listener": lambda: load_settings(
            kafka={"bootstrap_servers": scram.bootstrap_servers}, schema_registry=registry
        ),
        "no broker listening": lambda: load_settings(
            kafka={"bootstrap_servers": "127.0.0.1:1", "startup_check_timeout_s": 3},
            schema_registry=registry,
        ),
    }
    return cases[case]()


# case -> (error type, words the message must contain)
FAILURES: dict[str, tuple[type[KafkaClientError], str]] = {
    "wrong password": (AuthenticationError, "STREAMKIT_SECURITY__SASL_PASSWORD"),
    "unknown user": (AuthenticationError, "unknown user"),
    "wrong CA": (TlsError, "untrusted broker certificate"),
    "hostname mismatch": (TlsError, "host name mismatch"),
    "expired client certificate": (TlsError, "expired on"),
    "no client certificate": (TlsError, "requires a client certificate"),
    "wrong key password": (TlsError, "STREAMKIT_SECURITY__SSL_KEY_PASSWORD"),
    "plaintext client, TLS listener": (TlsError, "probably expects TLS"),
    "TLS client, plaintext listener": (TlsError, "TLS spoken to a plaintext listener"),
    "plaintext client, SASL listener": (AuthenticationError, "probably expects SASL"),
    # refused at once ("nothing listens there") or, if no refusal is seen, "within 3 s"
    "no broker listening": (BrokerUnavailableError, "127.0.0.1:1"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure_is_a_clear_streamkit_error_within_its_bound(
    case: str,
    secure_kafka: SecureKafka,
    schema_registry: RegistryEndpoint,
    schemas: SchemaSet,
    record_property: Callable[[str, Any], None],
) -> None:
    expected, words = FAILURES[case]
    settings = _case_settings(case, secure_kafka, schema_registry.url)
    started = time.monotonic()
    with pytest.raises(expected) as failure:
        EventProducer(settings, schemas=schemas)
    elapsed = time.monotonic() - started
    record_property("time_to_error_s", round(elapsed, 3))
    print(f"\ntime-to-error {case}: {elapsed:.3f} s: {type(failure.value).__name__}")
    assert type(failure.value) is expected, failure.value
    assert words in str(failure.value)
    assert elapsed < FAILURE_BOUND_S


def test_endpoint_identification_toggle_accepts_a_certificate_for_another_host(
    secure_kafka: SecureKafka,
) -> None:
    wrong_host = {"bootstrap_servers": secure_kafka.wrong_host_address}
    ssl = secure_kafka.endpoint("ssl")
    with pytest.raises(TlsError, match="host name mismatch"):
        check_connection(ssl.settings(kafka=wrong_host), timeout_s=FAILURE_BOUND_S)
    relaxed = ssl.settings(kafka=wrong_host, security={"ssl_endpoint_identification": False})
    assert check_connection(relaxed, timeout_s=FAILURE_BOUND_S).brokers


CLIENTS: dict[str, Callable[[StreamkitSettings], object]] = {
    "consumer": lambda settings: EventConsumer(["any"], print, settings=settings),
    "admin": StreamkitAdmin,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_consumers_and_admin_clients_fail_as_fast(
    client: str, secure_kafka: SecureKafka, schema_registry: RegistryEndpoint
) -> None:
    settings = _case_settings("wrong password", secure_kafka, schema_registry.url)
    settings = settings.model_copy(
        update={"consumer": settings.consumer.model_copy(update={"group_id": "never-joins"})}
    )
    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        CLIENTS[client](settings)
    assert time.monotonic() - started < FAILURE_BOUND_S


def _key_material(kafka: SecureKafka) -> list[str]:
    """Every secret a leak would show: passwords and the base64 lines of the private keys."""
    tls = kafka.tls
    lines = [
        line
        for path in (tls.client_key, tls.broker_keystore, tls.expired_client_key)
        for line in path.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    key_lines = [line for line in lines if len(line) >= 40]
    return [
        *SASL_USERS.values(),
        WRONG_PASSWORD,
        tls.client_key_password,
        tls.broker_key_password,
        *key_lines,
    ]


def test_no_password_or_key_bytes_in_debug_logs_errors_reprs_or_config_show(
    secure_kafka: SecureKafka,
    schema_registry: RegistryEndpoint,
    secure_topic: str,
    schemas: SchemaSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    debug = {"extra": {"debug": "security,broker,protocol"}}
    registry = {"url": schema_registry.url}
    texts: list[str] = []

    failing = secure_kafka.endpoint("sasl_ssl").settings(
        kafka=debug, security={"sasl_password": WRONG_PASSWORD}, schema_registry=registry
    )
    with pytest.raises(AuthenticationError) as failure:
        EventProducer(failing, schemas=schemas)
    texts += [str(failure.value), repr(failure.value), repr(failing), str(failing)]

    for variant in ("sasl_plain", "sasl_ssl", "mtls"):
        settings = secure_kafka.endpoint(variant).settings(kafka=debug, schema_registry=registry)
        with EventProducer(settings, schemas=schemas) as producer:
            producer.send(secure_topic, order(2), schema=ORDER_SCHEMA).result(timeout=60)
            texts += [repr(producer), repr(settings), str(settings)]

    env = {
        **secure_kafka.endpoint("sasl_ssl").env(),
        "STREAMKIT_SECURITY__SSL_CERTIFICATE_LOCATION": str(secure_kafka.tls.client_cert),
        "STREAMKIT_SECURITY__SSL_KEY_LOCATION": str(secure_kafka.tls.client_key),
        "STREAMKIT_SECURITY__SSL_KEY_PASSWORD": secure_kafka.tls.client_key_password,
        "STREAMKIT_SCHEMA_REGISTRY__URL": schema_registry.url,
        "STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": f"registry:{WRONG_PASSWORD}",
        "STREAMKIT_KAFKA__EXTRA": f'{{"sasl.password": "{WRONG_PASSWORD}"}}',
    }
    runner = CliRunner()
    for args in (["config", "show"], ["config", "show", "--json"]):
        shown = runner.invoke(app, args, env=env)
        assert shown.exit_code == 0, shown.output
        texts.append(shown.output)

    logged = caplog.text
    # The debug output really was captured: SASL and TLS handshakes of every client.
    assert "SASL" in logged
    assert "SSL" in logged or "TLS" in logged
    assert len(caplog.records) > 100
    for secret in _key_material(secure_kafka):
        assert secret not in logged
        for text in texts:
            assert secret not in text


def test_readiness_check_reports_each_step(
    secure_kafka: SecureKafka, schema_registry: RegistryEndpoint, secure_topic: str
) -> None:
    registry = {"url": schema_registry.url}
    good = secure_kafka.endpoint("sasl_ssl").settings(schema_registry=registry)
    report = check_connectivity(good, topics=[secure_topic])
    assert report.ok, report.as_dict()
    assert [item.name for item in report.items] == [
        "broker reachable",
        "authenticated",
        "topic metadata visible",
        "schema registry reachable",
    ]

    bad = _case_settings("wrong password", secure_kafka, schema_registry.url)
    report = check_connectivity(bad, timeout_s=FAILURE_BOUND_S)
    assert not report.ok
    assert report.item("broker reachable").ok
    assert not report.item("authenticated").ok
    assert "AuthenticationError" in report.item("authenticated").detail
    assert report.item("topic metadata visible").skipped
    assert report.item("schema registry reachable").ok


def test_check_command_exit_code_and_json(
    secure_kafka: SecureKafka, schema_registry: RegistryEndpoint, secure_topic: str
) -> None:
    import json

    env = {
        **secure_kafka.endpoint("mtls").env(),
        "STREAMKIT_SCHEMA_REGISTRY__URL": schema_registry.url,
    }
    runner = CliRunner()
    passed = runner.invoke(app, ["check", "--json", "--topic", secure_topic], env=env)
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.output)["ok"] is True

    env["STREAMKIT_SECURITY__SSL_CA_LOCATION"] = str(secure_kafka.tls.wrong_ca)
    failed = runner.invoke(app, ["check", "--json"], env=env)
    assert failed.exit_code == 1
    authenticated = json.loads(failed.output)["items"][1]
    assert authenticated["ok"] is False
    assert "TlsError" in authenticated["detail"]
