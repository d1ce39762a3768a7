"""Settings → client mapping of the security cases not covered in test_clientconfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from streamkit.client.config import MASK, client_config, masked
from streamkit.errors import ConfigError
from streamkit.settings import load_settings

SECRET = "s3cr3t-Registry-Token-xyz"
REGISTRY = "STREAMKIT_SCHEMA_REGISTRY__"


def test_crl_and_key_password_are_mapped(env: pytest.MonkeyPatch, pem_file: Path) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SSL")
    env.setenv("STREAMKIT_SECURITY__SSL_CRL_LOCATION", str(pem_file))
    conf = client_config(load_settings(), "consumer")
    assert conf["ssl.crl.location"] == str(pem_file)
    assert "ssl.key.password" not in conf


def test_unsecured_oauthbearer_config_is_mapped_and_masked(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_SSL")
    env.setenv("STREAMKIT_SECURITY__SASL_MECHANISM", "OAUTHBEARER")
    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_CONFIG", f"principal=svc secret={SECRET}")
    conf = client_config(load_settings(), "producer")
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert conf["sasl.oauthbearer.config"] == f"principal=svc secret={SECRET}"
    assert SECRET not in repr(masked(conf))


def _registry_conf(env: pytest.MonkeyPatch, **values: str) -> dict[str, object]:
    env.setenv(f"{REGISTRY}URL", "https://registry:8081")
    for name, value in values.items():
        env.setenv(f"{REGISTRY}{name.upper()}", value)
    conf = client_config(load_settings(), "schema_registry")
    SchemaRegistryClient(conf).close()  # the real client accepts the mapping
    return conf


def test_registry_static_bearer_token(env: pytest.MonkeyPatch) -> None:
    conf = _registry_conf(env, bearer_auth_token=SECRET, bearer_auth_logical_cluster="lsrc-1")
    assert conf["bearer.auth.credentials.source"] == "STATIC_TOKEN"
    assert conf["bearer.auth.token"] == SECRET
    assert conf["bearer.auth.logical.cluster"] == "lsrc-1"
    assert masked(conf)["bearer.auth.token"] == MASK


def test_registry_oauth_client_credentials(env: pytest.MonkeyPatch) -> None:
    conf = _registry_conf(
        env,
        oauth_client_id="svc",
        oauth_client_secret=SECRET,
        oauth_scope="registry",
        oauth_token_endpoint_url="https://idp.example/oauth2/token",
    )
    assert conf["bearer.auth.credentials.source"] == "OAUTHBEARER"
    assert conf["bearer.auth.client.id"] == "svc"
    assert conf["bearer.auth.client.secret"] == SECRET
    assert conf["bearer.auth.issuer.endpoint.url"] == "https://idp.example/oauth2/token"
    assert (
        conf["bearer.auth.logical.cluster"] == ""
    )  # required by the client, unused outside Confluent Cloud
    assert SECRET not in repr(masked(conf))


def test_registry_client_certificate_with_key_password(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from streamkit.testing.certs import make_tls_material

    tls = make_tls_material(tmp_path / "tls")
    conf = _registry_conf(
        env,
        ssl_ca_location=str(tls.ca),
        ssl_certificate_location=str(tls.client_cert),
        ssl_key_location=str(tls.client_key),
        ssl_key_password=tls.client_key_password,
    )
    assert conf["ssl.key.password"] == tls.client_key_password
    assert masked(conf)["ssl.key.password"] == MASK


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"basic_auth_user_info": "u:p", "bearer_auth_token": SECRET}, "BEARER_AUTH_TOKEN"),
        ({"oauth_client_id": "svc"}, "OAUTH_CLIENT_SECRET"),
        ({"ssl_key_password": SECRET}, "SSL_KEY_PASSWORD"),
    ],
)
def test_registry_auth_problems_name_the_variable(
    env: pytest.MonkeyPatch, values: dict[str, str], variable: str
) -> None:
    env.setenv(f"{REGISTRY}URL", "https://registry:8081")
    for name, value in values.items():
        env.setenv(f"{REGISTRY}{name.upper()}", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert f"{REGISTRY}{variable}" in error.value.env_vars
    assert SECRET not in str(error.value)
