"""One secured Kafka broker with a listener per security variant, for tests.

A single KRaft node (one container start for the whole session) serves:

=============  ================  ==================================================
listener       protocol          what it checks
=============  ================  ==================================================
``PLAINTEXT``  PLAINTEXT         the test kit's own admin connection (super user)
``SASLPLAIN``  SASL_PLAINTEXT    PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 users
``TLS``        SSL               server authentication (CA verified by the client)
``MTLS``       SSL               client certificates required (mTLS)
``SASLTLS``    SASL_SSL          SCRAM-SHA-256/512 over TLS
``BADHOST``    SSL               a broker certificate for another host name
=============  ================  ==================================================

The broker runs KRaft's ``StandardAuthorizer``. Super users: ``ANONYMOUS`` (the
PLAINTEXT and server-auth-only TLS listeners), the SASL users ``admin`` and ``alice``,
and the client certificate's CN. ``bob`` is an ordinary user with no ACL, for
authorization tests. SCRAM users are created through the admin API, which works on the
official ``apache/kafka`` image as well as the test kit's own.

Listener names avoid ``SSL://`` and ``SASL_`` on purpose: the image entrypoint would
otherwise demand JKS credential files; PEM files are configured directly instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.certs import TlsMaterial
from streamkit.testing.containers import KafkaContainer, KafkaListener
from streamkit.testing.images import TestKitError

__all__ = [
    "SASL_USERS",
    "SECRETS_DIR",
    "SecureEndpoint",
    "SecureKafka",
    "Variant",
    "pem_tls_env",
]

Variant = Literal["sasl_plain", "sasl_scram_256", "sasl_scram_512", "ssl", "mtls", "sasl_ssl"]

SECRETS_DIR = "/etc/kafka/secrets"
# Test-only credentials; every user but bob is a super user of the test broker.
SASL_USERS: dict[str, str] = {
    "admin": "admin-secret-4d1c",
    "alice": "alice-secret-9f27",
    "bob": "bob-secret-61aa",
}
_SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_STREAMKIT_SECURITY = "STREAMKIT_SECURITY__"
# variant -> (listener, security protocol, SASL mechanism)
_VARIANTS: dict[str, tuple[str, str, str | None]] = {
    "sasl_plain": ("SASLPLAIN", "SASL_PLAINTEXT", "PLAIN"),
    "sasl_scram_256": ("SASLPLAIN", "SASL_PLAINTEXT", "SCRAM-SHA-256"),
    "sasl_scram_512": ("SASLPLAIN", "SASL_PLAINTEXT", "SCRAM-SHA-512"),
    "ssl": ("TLS", "SSL", None),
    "mtls": ("MTLS", "SSL", None),
    "sasl_ssl": ("SASLTLS", "SASL_SSL", "SCRAM-SHA-512"),
}


@dataclass(frozen=True)
class SecureEndpoint:
    """How to reach one listener of the secured broker, as ``STREAMKIT_*`` variables."""

    variant: str
    bootstrap_servers: str
    protocol: str
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsMaterial | None = field(default=None, repr=False)
    client_certificate: bool = False
    options: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Further ``security`` settings (e.g. the OAUTHBEARER client credentials)."""

    def env(self, **security: str | None) -> dict[str, str]:
        """The ``STREAMKIT_*`` variables for this listener; ``security`` overrides fields.

        ``env(sasl_password="wrong")`` sets ``STREAMKIT_SECURITY__SASL_PASSWORD=wrong``;
        a None value leaves the variable out.
        """
        values: dict[str, str | None] = {
            "protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_username": self.username,
            "sasl_password": self.password,
            **self.options,
        }
        if self.tls is not None:
            values["ssl_ca_location"] = str(self.tls.ca)
            if self.client_certificate:
                values["ssl_certificate_location"] = str(self.tls.client_cert)
                values["ssl_key_location"] = str(self.tls.client_key)
                values["ssl_key_password"] = self.tls.client_key_password
        values.update(security)
        env = {f"{_STREAMKIT_SECURITY}{k.upper()}": v for k, v in values.items() if v is not None}
        env["STREAMKIT_KAFKA__BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        return env

    def settings(self, **overrides: Any) -> StreamkitSettings:
        """Settings for this listener (``overrides`` as for :func:`load_settings`)."""
        env = self.env()
        security = {
            k.removeprefix(_STREAMKIT_SECURITY).lower(): v
            for k, v in env.items()
            if k.startswith(_STREAMKIT_SECURITY)
        }
        kafka = {"bootstrap_servers": self.bootstrap_servers, **overrides.pop("kafka", {})}
        return load_settings(
            kafka=kafka, security={**security, **overrides.pop("security", {})}, **overrides
        )


def pem_tls_env(tls: TlsMaterial) -> dict[str, str]:
    """``KAFKA_*`` settings of a broker's TLS listeners from PEM files mounted at
    :data:`SECRETS_DIR`."""
    return {
        "KAFKA_SSL_KEYSTORE_TYPE": "PEM",
        "KAFKA_SSL_KEYSTORE_LOCATION": f"{SECRETS_DIR}/{tls.broker_keystore.name}",
        "KAFKA_SSL_KEY_PASSWORD": tls.broker_key_password,
        "KAFKA_SSL_TRUSTSTORE_TYPE": "PEM",
        "KAFKA_SSL_TRUSTSTORE_LOCATION": f"{SECRETS_DIR}/{tls.ca.name}",
    }


def _jaas(module: str, options: dict[str, str] | None = None) -> str:
    rendered = " ".join(f'{k}="{v}"' for k, v in (options or {}).items())
    return f"{module} required {rendered};".replace("  ", " ")


class SecureKafka(KafkaContainer):
    """The secured broker: PLAINTEXT for the test kit plus one listener per variant.

    Args:
        tls: certificates from :func:`~streamkit.testing.certs.make_tls_material`.
        image: Kafka image (default: the test kit's).
    """

    def __init__(self, tls: TlsMaterial, image: str | None = None) -> None:
        self.tls = tls
        names = ("SASLPLAIN", "TLS", "MTLS", "SASLTLS", "BADHOST")
        protocols = ("SASL_PLAINTEXT", "SSL", "SSL", "SASL_SSL", "SSL")
        listeners = tuple(KafkaListener(n, p) for n, p in zip(names, protocols, strict=True))
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        env = {
            "KAFKA_AUTHORIZER_CLASS_NAME": (
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            ),
            "KAFKA_SUPER_USERS": ";".join(
                ["User:ANONYMOUS", "User:admin", "User:alice", f"User:{tls.client_common_name}"]
            ),
            # The client certificate's principal is its CN, not the whole DN.
            "KAFKA_SSL_PRINCIPAL_MAPPING_RULES": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
            "KAFKA_SASL_ENABLED_MECHANISMS": ",".join(("PLAIN", *_SCRAM)),
            "KAFKA_LISTENER_NAME_SASLPLAIN_PLAIN_SASL_JAAS_CONFIG": _jaas(
                plain, {f"user_{u}": p for u, p in SASL_USERS.items()}
            ),
            "KAFKA_LISTENER_NAME_SASLTLS_SASL_ENABLED_MECHANISMS": ",".join(_SCRAM),
            # The entrypoint insists on KAFKA_OPTS with SASL; JAAS is per listener here.
            "KAFKA_OPTS": "-Dstreamkit.jaas=per-listener",
            **pem_tls_env(tls),
            "KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH": "required",
            "KAFKA_LISTENER_NAME_BADHOST_SSL_KEYSTORE_LOCATION": (
                f"{SECRETS_DIR}/{tls.wrong_host_keystore.name}"
            ),
            "KAFKA_LOG4J_LOGGERS": "kafka.authorizer.logger=WARN",
        }
        for listener in ("SASLPLAIN", "SASLTLS"):
            for mechanism in _SCRAM:
                key = mechanism.replace("-", "___")
                env[f"KAFKA_LISTENER_NAME_{listener}_{key}_SASL_JAAS_CONFIG"] = _jaas(scram)
        super().__init__(image, listeners=listeners, env=env)
        self.with_volume_mapping(str(tls.directory), SECRETS_DIR, "ro")

    def start(self, timeout_s: float = 120.0) -> SecureKafka:
        """Start the broker, then create the SCRAM users (admin API) and wait for them."""
        super().start(timeout_s)
        self._create_scram_users(timeout_s)
        return self

    def _create_scram_users(self, timeout_s: float) -> None:
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        admin: Any = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        for mechanism in _SCRAM:
            # One request per mechanism: a request may not alter one user twice.
            info = ScramCredentialInfo(getattr(ScramMechanism, mechanism.replace("-", "_")), 4096)
            upserts = [
                UserScramCredentialUpsertion(user, info, password.encode())
                for user, password in SASL_USERS.items()
            ]
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = admin.describe_user_scram_credentials(list(SASL_USERS))
            try:
                if all(len(f.result(10).scram_credential_infos) == 2 for f in described.values()):
                    return
            except Exception:  # noqa: S110 (not propagated yet: ask again)
                pass
            time.sleep(0.2)
        raise TestKitError(f"SCRAM users were not visible within {timeout_s:.0f} s")

    def endpoint(self, variant: Variant, *, user: str = "alice") -> SecureEndpoint:
        """The endpoint of one variant, authenticating as ``user`` where SASL is used.

        An unknown ``user`` gets a made-up password (for failure tests).
        """
        listener, protocol, mechanism = _VARIANTS[variant]
        address = self.listener(listener).address
        if mechanism is None:
            return SecureEndpoint(
                variant, address, protocol, tls=self.tls, client_certificate=variant == "mtls"
            )
        return SecureEndpoint(
            variant,
            address,
            protocol,
            mechanism,
            username=user,
            password=SASL_USERS.get(user, "no-such-user-password"),
            tls=self.tls if protocol == "SASL_SSL" else None,
        )

    @property
    def wrong_host_address(self) -> str:
        """The TLS listener whose certificate names another host."""
        return self.listener("BADHOST").address
