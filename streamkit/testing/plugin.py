"""pytest plugin: real Kafka and a schema registry for integration tests.

Installed with streamkit (entry point ``pytest11``), so any suite can ask for:

``kafka_broker``
    session-scoped running broker (:class:`KafkaEndpoint`). When
    ``STREAMKIT_KAFKA__BOOTSTRAP_SERVERS`` is set at session start, that cluster is used
    instead of a container.
``schema_registry``
    session-scoped registry (:class:`RegistryEndpoint`); ``STREAMKIT_SCHEMA_REGISTRY__URL``
    likewise selects an existing one.
``streamkit_settings``
    :class:`~streamkit.settings.StreamkitSettings` pointing at both.
``kafka_admin``
    a ``confluent_kafka.admin.AdminClient`` for the broker.
``kafka_cluster``
    session-scoped 3-node replicated KRaft cluster (:class:`KafkaCluster`: replication
    factor 3, ``min.insync.replicas=2``) with fault helpers (kill, stop, pause, heal).
``topic_factory``
    ``topic_factory(partitions=3, config=None) -> name`` creates a fresh topic.
``redis_server``
    session-scoped ``redis-server`` child (see :mod:`streamkit.testing.redis`).
``prometheus_server``
    session-scoped Prometheus child scraping what a test names with ``.scrape(...)``
    every second (see :mod:`streamkit.testing.prometheus`).
``secure_kafka``
    session-scoped secured broker (:class:`~streamkit.testing.security.SecureKafka`):
    one container with a listener per security variant, KRaft ``StandardAuthorizer``,
    certificates generated for the session. Always a container (an existing cluster
    named by the environment is not used for it).
``kafka_sasl_plain``, ``kafka_sasl_scram``, ``kafka_ssl``, ``kafka_mtls``, ``kafka_sasl_ssl``
    :class:`~streamkit.testing.security.SecureEndpoint` of each variant on that broker
    (SASL_PLAINTEXT + PLAIN, SASL_PLAINTEXT + SCRAM-SHA-512, SSL with server auth, SSL
    with a client certificate, SASL_SSL + SCRAM-SHA-512); ``endpoint.env()`` gives the
    ``STREAMKIT_*`` variables, ``endpoint.settings()`` the settings.

``oauth_provider``
    session-scoped Keycloak (:class:`~streamkit.testing.keycloak.KeycloakContainer`): a realm
    with confidential clients ``producer-service``, ``consumer-service``, ``admin-service``
    and ``stranger-service`` (tokens for another audience), client-credentials grant,
    access tokens valid 60 s; ``.token_endpoint_url``, ``.client(id).secret``,
    ``.token_grants(id)`` (tokens issued so far).
``oauth_kafka``
    session-scoped broker validating those tokens (:class:`~streamkit.testing.oauth.OAuthKafka`):
    ``oauth_kafka.endpoint("sasl_ssl", client="consumer-service").env()`` gives the
    ``STREAMKIT_*`` variables (OIDC client credentials only).
``oauth_registry``
    session-scoped Apicurio Registry that requires a token of ``oauth_provider``
    (:class:`RegistryEndpoint`); the default ``schema_registry`` stays unauthenticated.

A missing Docker engine or image fails the test with the reason; it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.cluster import KafkaCluster
from streamkit.testing.containers import KafkaContainer, RegistryContainer
from streamkit.testing.images import TestKitError
from streamkit.testing.keycloak import KeycloakContainer
from streamkit.testing.oauth import OAuthKafka, oidc_registry_env
from streamkit.testing.prometheus import prometheus_server
from streamkit.testing.redis import redis_server
from streamkit.testing.security import SecureEndpoint, SecureKafka

__all__ = [
    "KafkaEndpoint",
    "RegistryEndpoint",
    "TopicFactory",
    "kafka_admin",
    "kafka_broker",
    "kafka_cluster",
    "kafka_mtls",
    "kafka_sasl_plain",
    "kafka_sasl_scram",
    "kafka_sasl_ssl",
    "kafka_ssl",
    "oauth_kafka",
    "oauth_provider",
    "oauth_registry",
    "prometheus_server",
    "redis_server",
    "schema_registry",
    "secure_kafka",
    "streamkit_settings",
    "topic_factory",
]

_EXISTING_KAFKA = pytest.StashKey[str | None]()
_EXISTING_REGISTRY = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    # Read before any test scrubs STREAMKIT_* variables from the environment.
    config.stash[_EXISTING_KAFKA] = os.environ.get("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS")
    config.stash[_EXISTING_REGISTRY] = os.environ.get("STREAMKIT_SCHEMA_REGISTRY__URL")


@dataclass(frozen=True)
class KafkaEndpoint:
    """A reachable Kafka cluster; ``container`` is None for an existing cluster."""

    bootstrap_servers: str
    container: KafkaContainer | None = None


@dataclass(frozen=True)
class RegistryEndpoint:
    """A reachable schema registry; ``container`` is None for an existing one."""

    url: str
    container: RegistryContainer | None = None


def _start(container_factory: Callable[[], Any]) -> Any:
    try:
        return container_factory().start()
    except TestKitError as exc:
        pytest.fail(f"streamkit test kit: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(pytestconfig: pytest.Config) -> Iterator[KafkaEndpoint]:
    """A single-node KRaft broker on 127.0.0.1 (or the cluster named by the environment)."""
    existing = pytestconfig.stash[_EXISTING_KAFKA]
    if existing:
        yield KafkaEndpoint(existing)
        return
    container: KafkaContainer = _start(KafkaContainer)
    try:
        yield KafkaEndpoint(container.bootstrap_servers, container)
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three replicated KRaft nodes on 127.0.0.1, for fault-injection tests."""
    cluster: KafkaCluster = _start(KafkaCluster)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def schema_registry(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[RegistryEndpoint]:
    """A schema registry with the Confluent REST API on 127.0.0.1."""
    existing = pytestconfig.stash[_EXISTING_REGISTRY]
    if existing:
        yield RegistryEndpoint(existing)
        return
    kafka_bootstrap = None
    if "cp-schema-registry" in os.environ.get("STREAMKIT_TEST_REGISTRY_IMAGE", ""):
        # Confluent's registry keeps its schemas in a Kafka topic.
        kafka_bootstrap = request.getfixturevalue("kafka_broker").bootstrap_servers
    container: RegistryContainer = _start(
        lambda: RegistryContainer(kafka_bootstrap=kafka_bootstrap)
    )
    try:
        yield RegistryEndpoint(container.url, container)
    finally:
        container.stop()


@pytest.fixture
def streamkit_settings(
    kafka_broker: KafkaEndpoint, schema_registry: RegistryEndpoint
) -> StreamkitSettings:
    """Settings for the test broker and registry, with a fresh consumer group id."""
    return load_settings(
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "client_id": "streamkit-test"},
        schema_registry={"url": schema_registry.url},
        consumer={"group_id": f"test-{uuid.uuid4().hex[:12]}"},
    )


@pytest.fixture(scope="session")
def kafka_admin(kafka_broker: KafkaEndpoint) -> Any:
    """An AdminClient connected to the test broker."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})


class TopicFactory:
    """Creates uniquely named topics and waits until they exist."""

    def __init__(self, admin: Any) -> None:
        self._admin = admin

    def __call__(
        self,
        partitions: int = 3,
        *,
        prefix: str = "test",
        replication_factor: int = 1,
        config: dict[str, str] | None = None,
    ) -> str:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        new = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=config or {},
        )
        for future in self._admin.create_topics([new], operation_timeout=30).values():
            future.result(timeout=60)
        return name


@pytest.fixture
def topic_factory(kafka_admin: Any) -> TopicFactory:
    """``topic_factory(partitions=3)`` creates a fresh topic and returns its name."""
    return TopicFactory(kafka_admin)


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One secured broker for the session: a listener per security variant."""
    from streamkit.testing.certs import make_tls_material

    tls = make_tls_material(tmp_path_factory.mktemp("streamkit-tls"))
    container: SecureKafka = _start(lambda: SecureKafka(tls))
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_sasl_plain(secure_kafka: SecureKafka) -> SecureEndpoint:
    """SASL_PLAINTEXT with the PLAIN mechanism (user ``alice``)."""
    return secure_kafka.endpoint("sasl_plain")


@pytest.fixture(scope="session")
def kafka_sasl_scram(secure_kafka: SecureKafka) -> SecureEndpoint:
    """SASL_PLAINTEXT with SCRAM-SHA-512 (``secure_kafka.endpoint("sasl_scram_256")``
    for SHA-256)."""
    return secure_kafka.endpoint("sasl_scram_512")


@pytest.fixture(scope="session")
def kafka_ssl(secure_kafka: SecureKafka) -> SecureEndpoint:
    """SSL with server authentication (the client trusts the session CA)."""
    return secure_kafka.endpoint("ssl")


@pytest.fixture(scope="session")
def kafka_mtls(secure_kafka: SecureKafka) -> SecureEndpoint:
    """SSL with a client certificate (its key encrypted with a password)."""
    return secure_kafka.endpoint("mtls")


@pytest.fixture(scope="session")
def kafka_sasl_ssl(secure_kafka: SecureKafka) -> SecureEndpoint:
    """SASL_SSL with SCRAM-SHA-512 (user ``alice``)."""
    return secure_kafka.endpoint("sasl_ssl")


# Renewal tests need short-lived tokens; librdkafka renews at 80 % of the lifetime.
OAUTH_TOKEN_LIFESPAN_S = 60


@pytest.fixture(scope="session")
def oauth_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakContainer]:
    """Keycloak on 127.0.0.1 with the test realm (client-credentials clients)."""
    realm_dir = tmp_path_factory.mktemp("streamkit-realm")
    container: KeycloakContainer = _start(
        lambda: KeycloakContainer(realm_dir, token_lifespan_s=OAUTH_TOKEN_LIFESPAN_S)
    )
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="session")
def oauth_kafka(
    oauth_provider: KeycloakContainer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OAuthKafka]:
    """A broker with OAUTHBEARER listeners (SASL_PLAINTEXT, SASL_SSL) validating the
    provider's tokens; ACLs name ``User:<client id>``."""
    from streamkit.testing.certs import make_tls_material

    tls = make_tls_material(tmp_path_factory.mktemp("streamkit-oauth-tls"))
    container: OAuthKafka = _start(lambda: OAuthKafka(oauth_provider, tls))
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="session")
def oauth_registry(oauth_provider: KeycloakContainer) -> Iterator[RegistryEndpoint]:
    """A schema registry that refuses requests without a token of ``oauth_provider``."""
    container: RegistryContainer = _start(
        lambda: RegistryContainer(env=oidc_registry_env(oauth_provider))
    )
    try:
        yield RegistryEndpoint(container.url, container)
    finally:
        container.stop()
