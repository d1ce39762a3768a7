"""OAuth 2 for SASL/OAUTHBEARER: a token probe that names causes, and token callbacks.

With ``STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD=oidc`` librdkafka itself fetches and
renews tokens (client-credentials grant). When that fails it only logs a line; this module
turns such a failure into an :class:`~streamkit.errors.AuthenticationError` that says
whether the token endpoint failed (unreachable, or it refused the client credentials) or
the broker refused the token it issued (and what the token claims, so that the audience or
issuer that does not match can be seen). It never puts a token or a secret into a message.

``aws_msk_iam`` uses :func:`msk_iam_oauth_cb`: Amazon MSK's IAM tokens (a SigV4-presigned
URL) made by ``aws-msk-iam-sasl-signer-python`` from the default AWS credential chain.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamkit.errors import AuthenticationError, ConfigError, ConfigProblem, KafkaClientError
from streamkit.settings import SecuritySettings, env_var_name

__all__ = [
    "OAuthToken",
    "explain_oauth_failure",
    "fetch_token",
    "msk_iam_oauth_cb",
    "token_claims",
]

TOKEN_ENDPOINT_MARKER = "failed to retrieve oidc token"  # noqa: S105 (log text)
BROKER_REJECTION_MARKER = "invalid_token"
_TIMEOUT_S = 5.0
_SHOWN_CLAIMS = ("iss", "aud", "azp", "client_id", "sub", "scope")


def _env(field: str) -> str:
    return env_var_name("security", f"sasl_oauthbearer_{field}")


@dataclass(frozen=True)
class OAuthToken:
    """A token fetched from the token endpoint, with what may be shown of it.

    ``claims`` are the token's decoded (unverified) payload; the token itself is kept out
    of ``repr`` and must never be logged.
    """

    client_id: str
    endpoint: str
    expires_in_s: float
    claims: dict[str, Any]
    value: str = ""

    def __repr__(self) -> str:
        return (
            f"OAuthToken(client_id={self.client_id!r}, endpoint={self.endpoint!r}, "
            f"expires_in_s={self.expires_in_s:g}, claims={self.describe()!r})"
        )

    def describe(self) -> str:
        """The claims that decide acceptance (issuer, audience, subject), for messages."""
        shown = {k: self.claims[k] for k in _SHOWN_CLAIMS if k in self.claims}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "no readable claims"


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, decoded without verifying it ({} if it is not a JWT)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _endpoint_error(body: bytes) -> str:
    """``error: description`` of an OAuth error response (RFC 6749 5.2), else its start."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip() or "empty response"
    if not isinstance(answer, dict):
        return "unexpected response"
    error = str(answer.get("error", "error"))
    description = answer.get("error_description")
    return f"{error}: {description}" if description else error


def fetch_token(security: SecuritySettings, *, timeout_s: float = _TIMEOUT_S) -> OAuthToken:
    """Fetch a token with the client-credentials grant of ``security`` (method ``oidc``).

    Raises:
        AuthenticationError: the token endpoint is unreachable, refused the client
            credentials, or answered something that is not a token; the message says which.
    """
    endpoint = str(security.sasl_oauthbearer_token_endpoint_url)
    client_id = str(security.sasl_oauthbearer_client_id)
    secret = security.sasl_oauthbearer_client_secret
    form = {"grant_type": "client_credentials"}
    if security.sasl_oauthbearer_scope:
        form["scope"] = security.sasl_oauthbearer_scope
    # Client authentication exactly as librdkafka sends it (HTTP basic, id:secret), so
    # that this probe meets what librdkafka meets.
    credentials = f"{client_id}:{secret.get_secret_value() if secret else ''}"
    request = urllib.request.Request(  # noqa: S310 (the configured endpoint, http or https)
        endpoint,
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        reason = _endpoint_error(exc.read())
        # RFC 6749 5.2: a client that fails to authenticate gets 401 (with HTTP basic) or
        # invalid_client; Keycloak answers 401 unauthorized_client to basic auth.
        refused = exc.code == 401 or reason.startswith("invalid_client")
        cause = (
            f"the OAuth token endpoint {endpoint} refused the client credentials of "
            f"{client_id!r} (HTTP {exc.code}, {reason}): the client id is unknown or its "
            f"secret is wrong (hint: check {_env('client_id')} and {_env('client_secret')})"
            if refused
            else f"the OAuth token endpoint {endpoint} gave no token to {client_id!r} "
            f"(HTTP {exc.code}, {reason}) (hint: check {_env('scope')} and the client's "
            "grants at the identity provider)"
        )
        raise AuthenticationError(cause, code="_AUTHENTICATION") from None
    except OSError as exc:  # URLError included: refused, unresolvable, timed out, TLS
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise AuthenticationError(
            f"the OAuth token endpoint {endpoint} cannot be reached ({why}) (hint: check "
            f"{_env('token_endpoint_url')} and that the identity provider runs)",
            code="_AUTHENTICATION",
            retriable=True,
        ) from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token or not isinstance(answer, dict):
        raise AuthenticationError(
            f"the OAuth token endpoint {endpoint} answered without an access_token",
            code="_AUTHENTICATION",
        )
    return OAuthToken(
        client_id=client_id,
        endpoint=endpoint,
        expires_in_s=float(answer.get("expires_in") or 0),
        claims=token_claims(token),
        value=token,
    )


def explain_oauth_failure(
    failure: KafkaClientError, security: SecuritySettings
) -> KafkaClientError:
    """Name the side that failed for an OAUTHBEARER (``oidc``) connection failure.

    A token endpoint failure becomes the precise cause :func:`fetch_token` finds; a
    broker rejection says which client's token was refused and what it claims. Other
    failures pass unchanged.
    """
    text = str(failure).lower()
    if TOKEN_ENDPOINT_MARKER not in text and BROKER_REJECTION_MARKER not in text:
        return failure
    try:
        token = fetch_token(security)
    except AuthenticationError as cause:
        return AuthenticationError(
            f"connect failed: {cause}", code=failure.code, kafka_error=failure.kafka_error
        )
    if BROKER_REJECTION_MARKER not in text:
        return failure
    return AuthenticationError(
        f"connect failed: the broker refused the OAuth token of {token.client_id!r} "
        f"(invalid_token) although the token endpoint issued one ({token.describe()}): the "
        "token's audience or issuer is not what the broker expects, or the broker cannot "
        "verify its signature (hint: compare them with the broker's "
        "sasl.oauthbearer.expected.audience, expected.issuer and jwks.endpoint.url, or "
        f"set {_env('scope')} to a scope that yields the broker's audience)",
        code=failure.code,
        kafka_error=failure.kafka_error,
    )


OAuthCallback = Callable[[str], tuple[str, float]]


def msk_iam_oauth_cb(region: str) -> OAuthCallback:
    """An ``oauth_cb`` that signs Amazon MSK IAM tokens for ``region``.

    Credentials come from the default AWS chain (environment, profile, web identity,
    instance role). Needs the ``msk-iam`` extra (``aws-msk-iam-sasl-signer-python``).
    """
    try:
        from aws_msk_iam_sasl_signer import (  # type: ignore[import-untyped]
            MSKAuthTokenProvider,
        )
    except ImportError:
        raise ConfigError(
            [
                ConfigProblem(
                    _env("method"),
                    "is aws_msk_iam but aws-msk-iam-sasl-signer-python is not installed",
                    "pip install 'streamkit[msk-iam]'",
                )
            ]
        ) from None

    def oauth_cb(_config: str) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return str(token), float(expiry_ms) / 1000.0

    return oauth_cb
