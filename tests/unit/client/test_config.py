from __future__ import annotations

from pathlib import Path

import pytest

from streamkit.client.config import MASK, client_config, masked
from streamkit.settings import load_settings

SECRET = "s3cr3t-Pa55word-xyz"


def test_producer_config_is_idempotent_with_acks_all(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    env.setenv("STREAMKIT_PRODUCER__EXTRA", '{"linger.ms": 50, "message.max.bytes": 2000000}')
    conf = client_config(load_settings(), "producer")
    assert conf["bootstrap.servers"] == "b1:9092,b2:9092"
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["linger.ms"] == 50  # extra wins over the typed setting
    assert conf["message.max.bytes"] == 2000000
    assert conf["security.protocol"] == "plaintext"
    assert "group.id" not in conf
    assert "transactional.id" not in conf  # unset properties are omitted


def test_consumer_config_never_auto_commits(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_CONSUMER__GROUP_ID", "billing")
    conf = client_config(load_settings(), "consumer")
    assert conf["group.id"] == "billing"
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["isolation.level"] == "read_committed"
    assert "acks" not in conf


def test_admin_config_has_only_common_properties(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_KAFKA__EXTRA", '{"socket.keepalive.enable": true}')
    conf = client_config(load_settings(), "admin")
    assert conf == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "streamkit",
        "security.protocol": "plaintext",
        "socket.keepalive.enable": True,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_mapping(env: pytest.MonkeyPatch, pem_file: Path, mechanism: str) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_SSL")
    env.setenv("STREAMKIT_SECURITY__SASL_MECHANISM", mechanism)
    env.setenv("STREAMKIT_SECURITY__SASL_USERNAME", "alice")
    env.setenv("STREAMKIT_SECURITY__SASL_PASSWORD", SECRET)
    env.setenv("STREAMKIT_SECURITY__SSL_CA_LOCATION", str(pem_file))
    env.setenv("STREAMKIT_SECURITY__SSL_ENDPOINT_IDENTIFICATION", "false")
    conf = client_config(load_settings(), "consumer")
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == mechanism
    assert conf["sasl.username"] == "alice"
    assert conf["sasl.password"] == SECRET
    assert conf["ssl.ca.location"] == str(pem_file)
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_mtls_mapping(env: pytest.MonkeyPatch, pem_file: Path) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SSL")
    for name in ("SSL_CA_LOCATION", "SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION"):
        env.setenv(f"STREAMKIT_SECURITY__{name}", str(pem_file))
    env.setenv("STREAMKIT_SECURITY__SSL_KEY_PASSWORD", SECRET)
    conf = client_config(load_settings(), "producer")
    assert conf["ssl.certificate.location"] == str(pem_file)
    assert conf["ssl.key.location"] == str(pem_file)
    assert conf["ssl.key.password"] == SECRET
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert "sasl.mechanism" not in conf


def test_oauthbearer_callback_and_oidc(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("STREAMKIT_SECURITY__SASL_MECHANISM", "OAUTHBEARER")

    def token(_config: str) -> tuple[str, float]:
        return "tok", 0.0

    conf = client_config(load_settings(), "admin", oauth_cb=token)
    assert conf["oauth_cb"] is token
    assert "sasl.username" not in conf

    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD", "oidc")
    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp/token")
    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_CLIENT_ID", "svc")
    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_CLIENT_SECRET", SECRET)
    conf = client_config(load_settings(), "admin")
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.secret"] == SECRET


def test_schema_registry_mapping(env: pytest.MonkeyPatch, pem_file: Path) -> None:
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__URL", "https://registry:8081")
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO", f"reg:{SECRET}")
    env.setenv("STREAMKIT_SCHEMA_REGISTRY__SSL_CA_LOCATION", str(pem_file))
    conf = client_config(load_settings(), "schema_registry")
    assert conf == {
        "url": "https://registry:8081",
        "basic.auth.user.info": f"reg:{SECRET}",
        "ssl.ca.location": str(pem_file),
        "timeout": 10.0,
    }


def test_masked_hides_every_secret(env: pytest.MonkeyPatch) -> None:
    conf = {
        "sasl.password": SECRET,
        "ssl.key.password": SECRET,
        "basic.auth.user.info": SECRET,
        "sasl.oauthbearer.client.secret": SECRET,
        "ssl.key.pem": SECRET,
        "acks": "all",
    }
    shown = masked(conf)
    assert SECRET not in repr(shown)
    assert shown["acks"] == "all"
    assert shown["sasl.password"] == MASK
