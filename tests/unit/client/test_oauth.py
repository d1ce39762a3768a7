"""OAuth helpers without Kafka: the token probe against a loopback HTTP server, the
settings mapping of the OAUTHBEARER methods, and the MSK IAM signer run offline."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from confluent_kafka import KafkaError

from streamkit.client.config import client_config
from streamkit.client.connect import refine
from streamkit.client.diagnose import translate_kafka_error
from streamkit.client.oauth import explain_oauth_failure, fetch_token, token_claims
from streamkit.errors import AuthenticationError, BrokerUnavailableError, ConfigError
from streamkit.settings import SecuritySettings, load_settings
from streamkit.testing.network import free_port

SECRET = "cl1ent-s3cret-9d2a"
CLAIMS = {"iss": "http://idp/realms/r", "aud": ["kafka-broker"], "client_id": "svc", "exp": 1}


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class TokenEndpoint(ThreadingHTTPServer):
    """A token endpoint on 127.0.0.1 that answers every POST with ``status`` and ``body``."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b""
        self.requests: list[tuple[dict[str, str], dict[str, list[str]]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                endpoint.requests.append((dict(self.headers), form))
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(endpoint.body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"

    def answer(self, status: int, body: dict[str, Any] | bytes) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.fixture
def idp() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _security(url: str, **fields: Any) -> SecuritySettings:
    return SecuritySettings(
        protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_method="oidc",
        sasl_oauthbearer_token_endpoint_url=url,
        sasl_oauthbearer_client_id="svc",
        sasl_oauthbearer_client_secret=SECRET,
        **fields,
    )


def test_a_token_is_fetched_with_client_credentials_as_librdkafka_sends_them(
    idp: TokenEndpoint,
) -> None:
    token = _jwt(CLAIMS)
    idp.answer(200, {"access_token": token, "expires_in": 60, "token_type": "Bearer"})
    fetched = fetch_token(_security(idp.url, sasl_oauthbearer_scope="kafka"))
    assert (fetched.client_id, fetched.expires_in_s, fetched.claims) == ("svc", 60.0, CLAIMS)
    headers, form = idp.requests[0]
    assert form == {"grant_type": ["client_credentials"], "scope": ["kafka"]}
    assert (
        headers["Authorization"] == "Basic " + base64.b64encode(f"svc:{SECRET}".encode()).decode()
    )
    # What may be shown of it never includes the token.
    assert token not in repr(fetched)
    assert "aud=['kafka-broker']" in fetched.describe()


ERRORS = {
    "credentials refused (basic auth)": (
        401,
        {"error": "unauthorized_client", "error_description": "Invalid client credentials"},
        "refused the client credentials of 'svc' (HTTP 401, unauthorized_client",
    ),
    "credentials refused (invalid_client)": (
        400,
        {"error": "invalid_client"},
        "refused the client credentials of 'svc' (HTTP 400, invalid_client)",
    ),
    "scope refused": (
        400,
        {"error": "invalid_scope", "error_description": "Invalid scopes: kafka"},
        "gave no token to 'svc' (HTTP 400, invalid_scope: Invalid scopes: kafka)",
    ),
    "not an OAuth answer": (500, b"<html>down</html>", "gave no token to 'svc' (HTTP 500, <html>"),
    "no access_token": (200, {"token_type": "Bearer"}, "answered without an access_token"),
    "not JSON": (200, b"plain text", "answered without an access_token"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_token_endpoint_failures_name_the_endpoint_and_the_cause(
    case: str, idp: TokenEndpoint
) -> None:
    status, body, words = ERRORS[case]
    idp.answer(status, body)
    with pytest.raises(AuthenticationError) as failure:
        fetch_token(_security(idp.url))
    assert words in str(failure.value)
    assert idp.url in str(failure.value)
    assert SECRET not in str(failure.value)


def test_an_unreachable_token_endpoint_is_named_as_such() -> None:
    url = f"http://127.0.0.1:{free_port()}/token"
    with pytest.raises(AuthenticationError, match="cannot be reached") as failure:
        fetch_token(_security(url))
    assert failure.value.retriable
    assert "SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL" in str(failure.value)


@pytest.mark.parametrize(
    ("token", "claims"),
    [(_jwt(CLAIMS), CLAIMS), ("opaque-token", {}), ("a.!!!.c", {}), (_jwt({}) + "x", {})],
)
def test_token_claims_decode_jwt_payloads_only(token: str, claims: dict[str, Any]) -> None:
    assert token_claims(token) == claims


def _librdkafka_failure(text: str) -> Any:
    return translate_kafka_error(KafkaError(KafkaError._TRANSPORT, text), operation="connect")


def test_a_broker_rejection_names_the_refused_client_and_its_claims(idp: TokenEndpoint) -> None:
    idp.answer(200, {"access_token": _jwt({**CLAIMS, "aud": ["another-api"]}), "expires_in": 60})
    failure = _librdkafka_failure('SASL authentication error: {"status":"invalid_token"}')
    explained = refine(failure, _security(idp.url), "127.0.0.1:9093")
    assert type(explained) is AuthenticationError
    assert "the broker refused the OAuth token of 'svc'" in str(explained)
    assert "aud=['another-api']" in str(explained)


def test_a_token_endpoint_failure_seen_by_librdkafka_gets_the_probe_cause(
    idp: TokenEndpoint,
) -> None:
    idp.answer(401, {"error": "invalid_client"})
    failure = _librdkafka_failure(f'Failed to retrieve OIDC token from "{idp.url}": (401)')
    explained = refine(failure, _security(idp.url), "127.0.0.1:9093")
    assert "refused the client credentials of 'svc'" in str(explained)


def test_other_failures_pass_unchanged(idp: TokenEndpoint) -> None:
    failure = _librdkafka_failure("Connect to ipv4#127.0.0.1:1 failed: Connection refused")
    assert type(failure) is BrokerUnavailableError
    assert explain_oauth_failure(failure, _security(idp.url)) is failure
    assert idp.requests == []  # no probe for failures that are not about OAuth


def test_oidc_extensions_are_mapped(env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "OAUTHBEARER",
        "SASL_OAUTHBEARER_METHOD": "oidc",
        "SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp/token",
        "SASL_OAUTHBEARER_CLIENT_ID": "svc",
        "SASL_OAUTHBEARER_CLIENT_SECRET": SECRET,
        "SASL_OAUTHBEARER_EXTENSIONS": "logicalCluster=lkc-1,identityPoolId=pool-2",
    }.items():
        env.setenv(f"STREAMKIT_SECURITY__{name}", value)
    conf = client_config(load_settings(), "producer")
    assert conf["sasl.oauthbearer.extensions"] == "logicalCluster=lkc-1,identityPoolId=pool-2"


@pytest.fixture
def msk_env(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """OAUTHBEARER with MSK IAM, and made-up AWS credentials (the signer works offline)."""
    env.setenv("STREAMKIT_SECURITY__PROTOCOL", "SASL_SSL")
    env.setenv("STREAMKIT_SECURITY__SASL_MECHANISM", "OAUTHBEARER")
    env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD", "aws_msk_iam")
    env.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    env.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        env.delenv(name, raising=False)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    return env


def test_msk_iam_needs_a_region(msk_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as failure:
        load_settings()
    assert failure.value.env_vars == ("STREAMKIT_SECURITY__SASL_OAUTHBEARER_AWS_REGION",)


def test_msk_iam_maps_to_a_token_callback_signing_for_the_region(
    msk_env: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("aws_msk_iam_sasl_signer", reason="the signer needs streamkit[msk-iam]")
    msk_env.setenv("STREAMKIT_SECURITY__SASL_OAUTHBEARER_AWS_REGION", "eu-west-1")
    conf = client_config(load_settings(), "consumer")
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert "sasl.oauthbearer.method" not in conf  # librdkafka calls the callback
    token, expiry = conf["oauth_cb"]("")
    # The token is a SigV4-presigned kafka-cluster:Connect URL of the region's MSK endpoint.
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = {k: unquote(v[0]) for k, v in parse_qs(parts.query).items()}
    assert parts.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Credential"].startswith("AKIAIOSFODNN7EXAMPLE/")
    assert "/eu-west-1/kafka-cluster/" in query["X-Amz-Credential"]
    assert 0 < expiry - time.time() <= 900
