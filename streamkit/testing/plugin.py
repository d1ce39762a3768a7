"""pytest plugin: Kafka and a schema registry for tests, real or broker-less.

Registered by the streamkit wheel (entry point ``pytest11``). Importing it changes
nothing: no environment variable is written, no container or server starts, and the
test kit's optional dependencies (``pip install 'streamkit[testing]'``) are imported only
when a fixture that needs them runs. A suite that asks for none of these fixtures runs
as if the plugin were not there.

Kafka mode, per session or per test:

``container`` (default)
    a real KRaft broker and schema registry in containers (or the cluster and registry
    named by ``STREAMKIT_KAFKA__BOOTSTRAP_SERVERS`` / ``STREAMKIT_SCHEMA_REGISTRY__URL``).
``mock``
    no Docker: librdkafka's in-process mock cluster (:class:`~streamkit.testing.mock.MockKafka`)
    and an in-memory ``mock://`` schema registry; starts in milliseconds. It has no TLS,
    SASL, ACLs, admin API, topic configs or broker faults: fixtures that need them fail.

Chosen by ``@pytest.mark.streamkit_kafka("mock")`` on a test (or module, via
``pytestmark``), else ``--streamkit-kafka=mock|container``, else ``STREAMKIT_TEST_KAFKA``.

Fixtures:

``kafka_broker``
    the running broker of the test's mode (:class:`KafkaEndpoint`); each mode's broker is
    started once per session.
``schema_registry``
    the registry of the test's mode (:class:`RegistryEndpoint`).
``streamkit_settings``
    :class:`~streamkit.settings.StreamkitSettings` pointing at both.
``kafka_admin``
    a ``confluent_kafka.admin.AdminClient`` for the broker (container mode only).
``kafka_cluster``
    session-scoped 3-node replicated KRaft cluster (:class:`KafkaCluster`: replication
    factor 3, ``min.insync.replicas=2``) with fault helpers (kill, stop, pause, heal).
``topic_factory``
    ``topic_factory(partitions=3, config=None) -> name`` creates a fresh topic (in mock
    mode without ``config``).
``redis_server``
    session-scoped ``redis-server`` child (see :mod:`streamkit.testing.redis`).
``postgres_server``
    session-scoped PostgreSQL child on 127.0.0.1 (see :mod:`streamkit.testing.postgres`);
    ``STREAMKIT_TEST_POSTGRES_URL`` selects an existing server.
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
    ``.token_grant_times(id)`` (when tokens were issued to a client).
``oauth_kafka``
    session-scoped broker validating those tokens (:class:`~streamkit.testing.oauth.OAuthKafka`):
    ``oauth_kafka.endpoint("sasl_ssl", client="consumer-service").env()`` gives the
    ``STREAMKIT_*`` variables (OIDC client credentials only). Always a container.
``oauth_registry``
    session-scoped Apicurio Registry that requires a token of ``oauth_provider``
    (:class:`RegistryEndpoint`); the default ``schema_registry`` stays unauthenticated.

A missing Docker engine or image, or a missing extra, fails the test with the reason;
it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from streamkit.settings import StreamkitSettings
    from streamkit.testing.cluster import KafkaCluster
    from streamkit.testing.containers import KafkaContainer, RegistryContainer
    from streamkit.testing.keycloak import KeycloakContainer
    from streamkit.testing.mock import MockKafka
    from streamkit.testing.oauth import OAuthKafka
    from streamkit.testing.postgres import PostgresEndpoint
    from streamkit.testing.prometheus import PrometheusServer
    from streamkit.testing.redis import RedisEndpoint
    from streamkit.testing.security import SecureEndpoint, SecureKafka

__all__ = [
    "KAFKA_MODE_ENV",
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
    "postgres_server",
    "prometheus_server",
    "redis_server",
    "schema_registry",
    "secure_kafka",
    "streamkit_settings",
    "topic_factory",
]

KAFKA_MODE_ENV = "STREAMKIT_TEST_KAFKA"
KafkaMode = Literal["container", "mock"]
_MODES: tuple[KafkaMode, ...] = ("container", "mock")
_MARKER = "streamkit_kafka"

_EXISTING_KAFKA = pytest.StashKey[str | None]()
_EXISTING_REGISTRY = pytest.StashKey[str | None]()
_SESSION_MODE = pytest.StashKey[KafkaMode]()

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("streamkit").addoption(
        "--streamkit-kafka",
        choices=_MODES,
        default=None,
        help=f"Kafka for streamkit's fixtures: real broker in a container (default) or "
        f"librdkafka's mock cluster (no Docker). Default from ${KAFKA_MODE_ENV}.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(mode): run this test's streamkit fixtures on 'mock' or 'container' Kafka",
    )
    # Read before any test scrubs STREAMKIT_* variables from the environment.
    config.stash[_EXISTING_KAFKA] = os.environ.get("STREAMKIT_KAFKA__BOOTSTRAP_SERVERS")
    config.stash[_EXISTING_REGISTRY] = os.environ.get("STREAMKIT_SCHEMA_REGISTRY__URL")
    mode = config.getoption("--streamkit-kafka") or os.environ.get(KAFKA_MODE_ENV) or "container"
    if mode not in _MODES:
        raise pytest.UsageError(f"{KAFKA_MODE_ENV}={mode!r}: expected 'mock' or 'container'")
    config.stash[_SESSION_MODE] = mode


def _mode_of(node: Any, config: pytest.Config) -> KafkaMode:
    marker = node.get_closest_marker(_MARKER)
    if marker is None:
        return config.stash[_SESSION_MODE]
    mode = marker.args[0] if marker.args else marker.kwargs.get("mode")
    if mode not in _MODES:
        raise pytest.UsageError(f"@pytest.mark.{_MARKER}({mode!r}): expected 'mock' or 'container'")
    return mode  # type: ignore[no-any-return]


def kafka_mode(request: pytest.FixtureRequest) -> KafkaMode:
    """The Kafka mode of the requesting test: its marker, else the session's."""
    return _mode_of(request.node, request.config)


# Fixtures that the mock cluster cannot back, and what it lacks for them.
_REAL_KAFKA_ONLY = {
    "kafka_admin": "an admin API",
    "kafka_cluster": "a replicated cluster with broker faults",
    "secure_kafka": "TLS, SASL or ACLs",
    "oauth_kafka": "OAUTHBEARER, TLS or ACLs",
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, before any fixture starts, a mock-mode test that needs a real broker."""
    names = set(getattr(item, "fixturenames", ())) & set(_REAL_KAFKA_ONLY)
    if names and _mode_of(item, item.config) == "mock":
        from streamkit.testing.mock import MOCK_LIMITS

        lacks = "; ".join(f"{name}: no {_REAL_KAFKA_ONLY[name]}" for name in sorted(names))
        pytest.fail(
            f"streamkit test kit: this test needs a real Kafka broker, the mock cluster has "
            f"none of it ({lacks}). The mock lacks {MOCK_LIMITS}. Hint: mark the test "
            f"@pytest.mark.{_MARKER}('container') or run with --streamkit-kafka=container",
            pytrace=False,
        )


def _test_kit(load: Callable[[], T]) -> T:
    """Run ``load`` (imports and starts of the test kit), failing the test with the reason."""
    from streamkit.errors import MissingExtraError
    from streamkit.testing.images import TestKitError

    try:
        return load()
    except (TestKitError, MissingExtraError) as exc:
        reason = str(exc)
    pytest.fail(f"streamkit test kit: {reason}", pytrace=False)  # outside: no chained traceback


class _Stoppable(Protocol):
    def stop(self) -> object: ...


S = TypeVar("S", bound=_Stoppable)


@contextmanager
def _running(start: Callable[[], S]) -> Iterator[S]:
    """Start a test-kit service (failing the test with the reason), then stop it."""
    service = _test_kit(start)
    try:
        yield service
    finally:
        service.stop()


def _containers() -> Any:
    from streamkit._extras import require

    require("testing", "testcontainers")
    from streamkit.testing import containers

    return containers


@dataclass(frozen=True)
class KafkaEndpoint:
    """A reachable Kafka cluster; ``container`` is None for an existing cluster or the mock."""

    bootstrap_servers: str
    container: KafkaContainer | None = None
    mock: MockKafka | None = None


@dataclass(frozen=True)
class RegistryEndpoint:
    """A reachable schema registry; ``container`` is None for an existing one or ``mock://``."""

    url: str
    container: RegistryContainer | None = None


# Session-wide backends, one per mode, started on first use ---------------------------


@pytest.fixture(scope="session")
def _streamkit_container_kafka(pytestconfig: pytest.Config) -> Iterator[KafkaEndpoint]:
    existing = pytestconfig.stash[_EXISTING_KAFKA]
    if existing:
        yield KafkaEndpoint(existing)
        return
    with _running(lambda: _containers().KafkaContainer().start()) as container:
        yield KafkaEndpoint(container.bootstrap_servers, container)


@pytest.fixture(scope="session")
def _streamkit_container_registry(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[RegistryEndpoint]:
    existing = pytestconfig.stash[_EXISTING_REGISTRY]
    if existing:
        yield RegistryEndpoint(existing)
        return
    kafka_bootstrap = None
    if "cp-schema-registry" in os.environ.get("STREAMKIT_TEST_REGISTRY_IMAGE", ""):
        # Confluent's registry keeps its schemas in a Kafka topic.
        kafka = request.getfixturevalue("_streamkit_container_kafka")
        kafka_bootstrap = kafka.bootstrap_servers
    with _running(
        lambda: _containers().RegistryContainer(kafka_bootstrap=kafka_bootstrap).start()
    ) as container:
        yield RegistryEndpoint(container.url, container)


@pytest.fixture(scope="session")
def _streamkit_mock_kafka() -> Iterator[KafkaEndpoint]:
    from streamkit.testing.mock import MockKafka

    with _running(lambda: MockKafka().start()) as mock:
        yield KafkaEndpoint(mock.bootstrap_servers, mock=mock)


@pytest.fixture(scope="session")
def _streamkit_mock_registry() -> Iterator[RegistryEndpoint]:
    from streamkit.serde.mock_registry import drop_scope

    url = f"mock://streamkit-test-{uuid.uuid4().hex[:8]}"
    yield RegistryEndpoint(url)
    drop_scope(url)


# The fixtures tests ask for ------------------------------------------------------------


@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest) -> KafkaEndpoint:
    """The running Kafka of the test's mode (started once per session and mode)."""
    endpoint: KafkaEndpoint = request.getfixturevalue(f"_streamkit_{kafka_mode(request)}_kafka")
    return endpoint


@pytest.fixture
def schema_registry(request: pytest.FixtureRequest) -> RegistryEndpoint:
    """The schema registry of the test's mode: Confluent REST API, or ``mock://``."""
    endpoint: RegistryEndpoint = request.getfixturevalue(
        f"_streamkit_{kafka_mode(request)}_registry"
    )
    return endpoint


@pytest.fixture
def streamkit_settings(
    kafka_broker: KafkaEndpoint, schema_registry: RegistryEndpoint
) -> StreamkitSettings:
    """Settings for the test broker and registry, with a fresh consumer group id."""
    from streamkit.settings import load_settings

    return load_settings(
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "client_id": "streamkit-test"},
        schema_registry={"url": schema_registry.url},
        consumer={"group_id": f"test-{uuid.uuid4().hex[:12]}"},
    )


@pytest.fixture(scope="session")
def _streamkit_admins() -> dict[str, Any]:
    return {}


@pytest.fixture
def kafka_admin(
    request: pytest.FixtureRequest, kafka_broker: KafkaEndpoint, _streamkit_admins: dict[str, Any]
) -> Any:
    """An AdminClient connected to the test broker (the mock cluster has no admin API)."""
    from confluent_kafka.admin import AdminClient

    bootstrap = kafka_broker.bootstrap_servers
    if bootstrap not in _streamkit_admins:
        _streamkit_admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return _streamkit_admins[bootstrap]


class TopicFactory:
    """Creates uniquely named topics and waits until they exist.

    Args:
        admin: an ``AdminClient`` of the cluster, or None with ``mock``.
        mock: the mock cluster to create topics in (it has no CreateTopics API).
    """

    def __init__(self, admin: Any, *, mock: MockKafka | None = None) -> None:
        self._admin = admin
        self._mock = mock

    def __call__(
        self,
        partitions: int = 3,
        *,
        prefix: str = "test",
        replication_factor: int = 1,
        config: dict[str, str] | None = None,
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if self._mock is not None:
            if config:
                pytest.fail(
                    f"streamkit test kit: topic configs ({', '.join(config)}) need a real "
                    "broker; the mock cluster ignores them. Hint: mark the test "
                    f"@pytest.mark.{_MARKER}('container')",
                    pytrace=False,
                )
            self._mock.create_topic(name, partitions, replication_factor)
            return name
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

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
def topic_factory(request: pytest.FixtureRequest, kafka_broker: KafkaEndpoint) -> TopicFactory:
    """``topic_factory(partitions=3)`` creates a fresh topic and returns its name."""
    if kafka_broker.mock is not None:
        return TopicFactory(None, mock=kafka_broker.mock)
    return TopicFactory(request.getfixturevalue("kafka_admin"))


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three replicated KRaft nodes on 127.0.0.1, for fault-injection tests."""

    def start() -> KafkaCluster:
        _containers()
        from streamkit.testing.cluster import KafkaCluster

        return KafkaCluster().start()

    with _running(start) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisEndpoint]:
    """A running ``redis-server`` child on 127.0.0.1 (see :mod:`streamkit.testing.redis`)."""
    from streamkit.testing.redis import serve_redis

    yield from serve_redis()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresEndpoint]:
    """A running PostgreSQL on 127.0.0.1 (see :mod:`streamkit.testing.postgres`)."""
    from streamkit.testing.postgres import serve_postgres

    yield from serve_postgres()


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """A running Prometheus child scraping what a test names with ``.scrape(...)``."""
    from streamkit.testing.prometheus import serve_prometheus

    yield from serve_prometheus()


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One secured broker for the session: a listener per security variant."""

    def start() -> SecureKafka:
        _containers()
        from streamkit.testing.certs import make_tls_material
        from streamkit.testing.security import SecureKafka

        tls = make_tls_material(tmp_path_factory.mktemp("streamkit-tls"))
        return SecureKafka(tls).start()

    with _running(start) as container:
        yield container


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

    def start() -> KeycloakContainer:
        _containers()
        from streamkit.testing.keycloak import KeycloakContainer

        realm_dir = tmp_path_factory.mktemp("streamkit-realm")
        return KeycloakContainer(realm_dir, token_lifespan_s=OAUTH_TOKEN_LIFESPAN_S).start()

    with _running(start) as container:
        yield container


@pytest.fixture(scope="session")
def oauth_kafka(
    oauth_provider: KeycloakContainer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OAuthKafka]:
    """A broker with OAUTHBEARER listeners (SASL_PLAINTEXT, SASL_SSL) validating the
    provider's tokens; ACLs name ``User:<client id>``."""

    def start() -> OAuthKafka:
        from streamkit.testing.certs import make_tls_material
        from streamkit.testing.oauth import OAuthKafka

        tls = make_tls_material(tmp_path_factory.mktemp("streamkit-oauth-tls"))
        return OAuthKafka(oauth_provider, tls).start()

    with _running(start) as container:
        yield container


@pytest.fixture(scope="session")
def oauth_registry(oauth_provider: KeycloakContainer) -> Iterator[RegistryEndpoint]:
    """A schema registry that refuses requests without a token of ``oauth_provider``."""

    def start() -> RegistryContainer:
        from streamkit.testing.oauth import oidc_registry_env

        env = oidc_registry_env(oauth_provider)
        registry: RegistryContainer = _containers().RegistryContainer(env=env).start()
        return registry

    with _running(start) as container:
        yield RegistryEndpoint(container.url, container)
