"""Services that authenticate by OAuth 2 tokens: a Kafka broker (SASL/OAUTHBEARER) and
the settings of a schema registry that requires tokens.

:class:`OAuthKafka` is one KRaft node besides the test kit's other brokers, so that only
sessions with OAuth tests wait for the identity provider:

=============  ================  ==================================================
listener       protocol          what it checks
=============  ================  ==================================================
``PLAINTEXT``  PLAINTEXT         the test kit's own admin connection (super user)
``OAUTH``      SASL_PLAINTEXT    OAUTHBEARER tokens
``OAUTHTLS``   SASL_SSL          OAUTHBEARER tokens over TLS
=============  ================  ==================================================

Tokens are validated by Kafka's own ``OAuthBearerValidatorCallbackHandler``: signature
against the identity provider's JWKS endpoint, expected issuer and audience
(:data:`~streamkit.testing.keycloak.BROKER_AUDIENCE`). The principal is the token's
``client_id`` claim (``User:producer-service``), which KRaft's ``StandardAuthorizer``
ACLs name; ``admin-service`` and ``ANONYMOUS`` (PLAINTEXT) are super users. With
``connections.max.reauth.ms`` set, the broker ends a session when its token expires unless
the client re-authenticates with a new one (KIP-368), so token renewal is really needed.

The broker reads the JWKS while it starts and exits if it cannot (Kafka 4.1.1: "Fatal error
during broker startup", 503 from a Keycloak still booting), so it is started after the
identity provider is ready, never beside it.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Self

from streamkit.testing.certs import TlsMaterial
from streamkit.testing.containers import START_TIMEOUT_S, KafkaContainer, KafkaListener
from streamkit.testing.keycloak import (
    BROKER_AUDIENCE,
    CLIENT_ID_CLAIM,
    REGISTRY_AUDIENCE,
    KeycloakContainer,
)
from streamkit.testing.security import SECRETS_DIR, SecureEndpoint, pem_tls_env

__all__ = ["SUPER_CLIENT", "OAuthKafka", "OAuthVariant", "oidc_registry_env"]

OAuthVariant = Literal["sasl_plaintext", "sasl_ssl"]

_VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_BROKER_VALIDATOR = "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"
_LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_LISTENERS: dict[str, tuple[str, str]] = {
    "sasl_plaintext": ("OAUTH", "SASL_PLAINTEXT"),
    "sasl_ssl": ("OAUTHTLS", "SASL_SSL"),
}
SUPER_CLIENT = "admin-service"
# Upper bound of a session between re-authentications; the token's expiry ends it sooner.
_MAX_REAUTH_MS = 600_000


class OAuthKafka(KafkaContainer):
    """The OAuth broker, validating tokens of ``provider``.

    Args:
        provider: the running identity provider (its URLs are fixed at start).
        tls: certificates for the SASL_SSL listener.
        image: Kafka image (default: the test kit's).
    """

    def __init__(
        self, provider: KeycloakContainer, tls: TlsMaterial, image: str | None = None
    ) -> None:
        self.provider = provider
        self.tls = tls
        listeners = tuple(KafkaListener(name, protocol) for name, protocol in _LISTENERS.values())
        env: dict[str, Any] = {
            "KAFKA_AUTHORIZER_CLASS_NAME": _AUTHORIZER,
            "KAFKA_SUPER_USERS": f"User:ANONYMOUS;User:{SUPER_CLIENT}",
            "KAFKA_SASL_ENABLED_MECHANISMS": "OAUTHBEARER",
            "KAFKA_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL": provider.jwks_url,
            "KAFKA_SASL_OAUTHBEARER_EXPECTED_ISSUER": provider.issuer,
            "KAFKA_SASL_OAUTHBEARER_EXPECTED_AUDIENCE": BROKER_AUDIENCE,
            "KAFKA_SASL_OAUTHBEARER_SUB_CLAIM_NAME": CLIENT_ID_CLAIM,
            # Kafka 4.1's default (DefaultJwtValidator built by its no-argument constructor,
            # as the callback handler does) delegates to ClientJwtValidator, which checks
            # neither signature nor audience: a token of any client, or a tampered one,
            # would pass. Naming the broker validator makes JWKS, issuer and audience count.
            "KAFKA_SASL_OAUTHBEARER_JWT_VALIDATOR_CLASS": _BROKER_VALIDATOR,
            "KAFKA_CONNECTIONS_MAX_REAUTH_MS": str(_MAX_REAUTH_MS),
            # Kafka 4 refuses every JWKS or token URL that this system property omits.
            "KAFKA_OPTS": (
                f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={provider.jwks_url},"
                f"{provider.token_endpoint_url}"
            ),
            "KAFKA_LOG4J_LOGGERS": "kafka.authorizer.logger=WARN",
            **pem_tls_env(tls),
        }
        for name, _ in _LISTENERS.values():
            prefix = f"KAFKA_LISTENER_NAME_{name}_OAUTHBEARER"
            env[f"{prefix}_SASL_JAAS_CONFIG"] = f"{_LOGIN_MODULE} required ;"
            env[f"{prefix}_SASL_SERVER_CALLBACK_HANDLER_CLASS"] = _VALIDATOR
        super().__init__(image, listeners=listeners, env=env)
        self.with_volume_mapping(str(tls.directory), SECRETS_DIR, "ro")
        self.startup_s = 0.0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Start the broker and wait until it answers (``startup_s`` says how long)."""
        started = time.monotonic()
        super().start(timeout_s)
        self.startup_s = time.monotonic() - started
        return self

    def endpoint(
        self, variant: OAuthVariant = "sasl_ssl", *, client: str = "producer-service"
    ) -> SecureEndpoint:
        """How ``client`` (a realm client id) reaches the broker by ``variant``, with
        ``STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD=oidc`` and client credentials.

        A client id the realm does not know gets a made-up secret (for failure tests).
        """
        name, protocol = _LISTENERS[variant]
        try:
            secret = self.provider.client(client).secret
        except KeyError:
            secret = "no-such-client-secret"  # noqa: S105 (made up for failure tests)
        return SecureEndpoint(
            variant,
            self.listener(name).address,
            protocol,
            "OAUTHBEARER",
            tls=self.tls if protocol == "SASL_SSL" else None,
            options={
                "sasl_oauthbearer_method": "oidc",
                "sasl_oauthbearer_token_endpoint_url": self.provider.token_endpoint_url,
                "sasl_oauthbearer_client_id": client,
                "sasl_oauthbearer_client_secret": secret,
            },
        )


def oidc_registry_env(provider: KeycloakContainer) -> dict[str, str]:
    """Apicurio Registry settings that demand a token of ``provider`` on every request.

    Quarkus OIDC validates the bearer token (signature by the realm's keys, issuer, and
    the audience :data:`~streamkit.testing.keycloak.REGISTRY_AUDIENCE`); a request without
    one gets 401. Apicurio's role and owner checks stay off: any valid token may write.
    """
    return {
        "QUARKUS_OIDC_TENANT_ENABLED": "true",
        "QUARKUS_OIDC_AUTH_SERVER_URL": provider.issuer,
        "QUARKUS_OIDC_TOKEN_AUDIENCE": REGISTRY_AUDIENCE,
        "APICURIO_AUTH_ROLE_BASED_AUTHORIZATION": "false",
        "APICURIO_AUTH_ANONYMOUS_READ_ACCESS_ENABLED": "false",
    }
