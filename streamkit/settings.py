"""Settings from the environment (prefix ``STREAMKIT_``, nested delimiter ``__``).

Every field maps to one environment variable: ``StreamkitSettings.security.sasl_username``
is ``STREAMKIT_SECURITY__SASL_USERNAME``. A ``.env`` file in the working directory is
read too (environment variables win). Secrets are :class:`pydantic.SecretStr`.

Load with :func:`load_settings`, which turns every validation failure into one
:class:`~streamkit.errors.ConfigError` naming each wrong variable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from streamkit.errors import ConfigError, ConfigProblem

__all__ = [
    "ConsumerSettings",
    "DedupSettings",
    "KafkaSettings",
    "MetricsSettings",
    "OutboxSettings",
    "ProducerSettings",
    "SchemaRegistrySettings",
    "SecuritySettings",
    "StreamkitSettings",
    "env_var_name",
    "load_settings",
]

ENV_PREFIX = "STREAMKIT_"
ENV_DELIMITER = "__"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
ExtraConfig = dict[str, str | int | float | bool]


def env_var_name(*path: str) -> str:
    """The environment variable of a settings field path: ``("kafka", "client_id")``."""
    return ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in path)


class _Problems:
    """Collects every problem of one model so that all are reported at once."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.items: list[ConfigProblem] = []

    def add(self, field: str, message: str, hint: str = "") -> None:
        self.items.append(ConfigProblem(env_var_name(self.section, field), message, hint))

    def check_readable(self, field: str, path: Path | None) -> None:
        if path is not None and not os.access(path, os.R_OK):
            self.add(
                field,
                f"file {str(path)!r} does not exist or is not readable",
                "give the path of a PEM file this process can read",
            )

    def raise_if_any(self) -> None:
        if self.items:
            raise PydanticCustomError(
                "streamkit_settings",
                "{summary}",
                {"summary": "; ".join(map(str, self.items)), "problems": self.items},
            )


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,  # a field's docstring is its description (docs)
    )


class KafkaSettings(_Section):
    """Where the cluster is and who this client is."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    client_id: str = Field(default="streamkit", description="Client id sent to brokers.")
    extra: ExtraConfig = Field(
        default_factory=dict,
        description="librdkafka properties (JSON object) applied to every client.",
    )
    startup_check_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Producers, consumers and admin clients connect once at start-up and fail "
            "within this many seconds, naming the cause (wrong password, untrusted "
            "certificate, unreachable broker), instead of retrying forever; 0 skips it."
        ),
    )

    @property
    def bootstrap_list(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [entry.strip() for entry in self.bootstrap_servers.split(",") if entry.strip()]

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("kafka")
        servers = self.bootstrap_list
        if not servers:
            problems.add(
                "bootstrap_servers",
                "is empty",
                "set a comma-separated list such as broker1:9092,broker2:9092",
            )
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                problems.add(
                    "bootstrap_servers",
                    f"entry {server!r} is not host:port",
                    "write each broker as host:port, e.g. 127.0.0.1:9092",
                )
        if not self.client_id.strip():
            problems.add("client_id", "is empty", "name the service, e.g. orders-service")
        problems.raise_if_any()
        return self


class SecuritySettings(_Section):
    """TLS and SASL settings shared by producers, consumers and admin clients."""

    protocol: SecurityProtocol = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``."""
    sasl_mechanism: SaslMechanism | None = None
    """``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ``OAUTHBEARER`` (required with ``SASL_*``).
    """
    sasl_username: str | None = None
    """SASL user (PLAIN/SCRAM)."""
    sasl_password: SecretStr | None = None
    """SASL password (secret)."""
    sasl_oauthbearer_method: Literal["default", "oidc", "aws_msk_iam"] = "default"
    """``oidc``: librdkafka fetches and renews tokens by client credentials; ``aws_msk_iam``:
    Amazon MSK IAM tokens signed from the AWS credential chain (extra ``msk-iam``);
    ``default``: an application token callback or unsecured JWTs."""
    sasl_oauthbearer_token_endpoint_url: str | None = None
    """OIDC token endpoint."""
    sasl_oauthbearer_client_id: str | None = None
    """OIDC client id."""
    sasl_oauthbearer_client_secret: SecretStr | None = None
    """OIDC client secret (secret)."""
    sasl_oauthbearer_scope: str | None = None
    """OIDC scope."""
    sasl_oauthbearer_extensions: str | None = None
    """SASL extensions sent with the token (method ``oidc``), ``key=value,...`` (Confluent
    Cloud: ``logicalCluster=lkc-...,identityPoolId=pool-...``)."""
    sasl_oauthbearer_aws_region: str | None = None
    """AWS region of the MSK cluster (method ``aws_msk_iam``)."""
    sasl_oauthbearer_config: SecretStr | None = Field(
        default=None, description="Unsecured JWT config (development only)."
    )
    ssl_ca_location: Path | None = None
    """CA bundle (PEM) that signs the brokers' certificates."""
    ssl_certificate_location: Path | None = None
    """Client certificate (PEM), for mTLS."""
    ssl_key_location: Path | None = None
    """Client private key (PEM), for mTLS."""
    ssl_key_password: SecretStr | None = None
    """Password of the client key (secret)."""
    ssl_crl_location: Path | None = None
    """Certificate revocation list (PEM)."""
    ssl_endpoint_identification: bool = Field(
        default=True, description="Verify that the broker certificate matches its host name."
    )

    @property
    def uses_sasl(self) -> bool:
        """Whether the protocol authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """Whether the protocol encrypts with TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("security")
        if self.uses_sasl:
            self._check_sasl(problems)
        elif self.sasl_mechanism is not None:
            problems.add(
                "sasl_mechanism",
                f"is set but protocol is {self.protocol}",
                "use protocol SASL_PLAINTEXT or SASL_SSL, or unset the mechanism",
            )
        tls_files = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
        if not self.uses_tls and any(getattr(self, name) for name in tls_files):
            problems.add(
                "protocol",
                f"is {self.protocol} but TLS files are configured",
                "use protocol SSL or SASL_SSL to connect with TLS",
            )
        if self.ssl_key_location and not self.ssl_certificate_location:
            problems.add(
                "ssl_certificate_location",
                "is required when ssl_key_location is set",
                "give the client certificate (PEM) that belongs to the key",
            )
        if self.ssl_certificate_location and not self.ssl_key_location:
            problems.add(
                "ssl_key_location",
                "is required when ssl_certificate_location is set",
                "give the private key (PEM) of the client certificate",
            )
        if self.ssl_key_password and not self.ssl_key_location:
            problems.add(
                "ssl_key_password",
                "is set but ssl_key_location is not",
                "set the key file the password unlocks",
            )
        for name in (*tls_files, "ssl_crl_location"):
            problems.check_readable(name, getattr(self, name))
        problems.raise_if_any()
        return self

    def _check_sasl(self, problems: _Problems) -> None:
        if self.sasl_mechanism is None:
            problems.add(
                "sasl_mechanism",
                f"is required when protocol is {self.protocol}",
                "one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
            )
            return
        if self.sasl_mechanism == "OAUTHBEARER":
            if (
                self.sasl_oauthbearer_method == "aws_msk_iam"
                and not self.sasl_oauthbearer_aws_region
            ):
                problems.add(
                    "sasl_oauthbearer_aws_region",
                    "is required with sasl_oauthbearer_method=aws_msk_iam",
                    "the region of the MSK cluster, e.g. eu-west-1",
                )
            if self.sasl_oauthbearer_method == "oidc":
                for name in (
                    "sasl_oauthbearer_token_endpoint_url",
                    "sasl_oauthbearer_client_id",
                    "sasl_oauthbearer_client_secret",
                ):
                    if not getattr(self, name):
                        problems.add(
                            name,
                            "is required with sasl_oauthbearer_method=oidc",
                            "take it from your identity provider's client registration",
                        )
            return
        if not self.sasl_username:
            problems.add(
                "sasl_username",
                f"is required for SASL mechanism {self.sasl_mechanism}",
                "set the SASL user name",
            )
        if self.sasl_password is None or not self.sasl_password.get_secret_value():
            problems.add(
                "sasl_password",
                f"is required for SASL mechanism {self.sasl_mechanism}",
                "set the SASL password",
            )


_REGISTRY_OAUTH_FIELDS = (
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
    "oauth_token_endpoint_url",
)


class SchemaRegistrySettings(_Section):
    """How to reach the schema registry (Confluent REST API).

    Authentication: at most one of HTTP basic auth (``basic_auth_user_info``), a static
    bearer token (``bearer_auth_token``) or OAuth client credentials (``oauth_client_id``,
    ``oauth_client_secret``, ``oauth_scope``, ``oauth_token_endpoint_url``: the token is
    fetched and renewed by the client). TLS: ``ssl_ca_location`` to trust the registry,
    ``ssl_certificate_location`` + ``ssl_key_location`` (+ ``ssl_key_password``) for a
    client certificate.
    """

    url: str | None = Field(default=None, description="Base URL, e.g. http://127.0.0.1:8081.")
    basic_auth_user_info: SecretStr | None = Field(
        default=None, description="user:password for HTTP basic auth."
    )
    ssl_ca_location: Path | None = None
    """CA bundle for an ``https://`` registry."""
    ssl_certificate_location: Path | None = None
    """Client certificate for the registry."""
    ssl_key_location: Path | None = None
    """Client key for the registry."""
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted ssl_key_location."
    )
    bearer_auth_token: SecretStr | None = Field(
        default=None, description="Static bearer token sent as Authorization: Bearer."
    )
    bearer_auth_logical_cluster: str | None = Field(
        default=None,
        description="Confluent Cloud logical cluster (lsrc-...); other registries ignore it.",
    )
    bearer_auth_identity_pool_id: str | None = Field(
        default=None, description="Confluent Cloud identity pool id(s), comma-separated."
    )
    oauth_client_id: str | None = Field(
        default=None, description="OAuth client-credentials client id."
    )
    oauth_client_secret: SecretStr | None = Field(
        default=None, description="OAuth client-credentials client secret."
    )
    oauth_scope: str | None = Field(default=None, description="OAuth scope to request.")
    oauth_token_endpoint_url: str | None = Field(
        default=None, description="OAuth token endpoint (https://.../oauth2/token)."
    )
    subject_name_strategy: Literal["topic", "record", "topic_record"] = "topic"
    """``topic`` (``<topic>-value``), ``record``, ``topic_record``."""
    compatibility: Literal[
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
        "NONE",
    ] = "BACKWARD"
    """Level set on subjects streamkit registers."""
    timeout_s: float = Field(default=10.0, gt=0)
    """HTTP timeout."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("schema_registry")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https", "mock") or not parts.netloc:
                problems.add(
                    "url",
                    "must be an http:// or https:// URL (or mock://<scope> in tests)",
                    "e.g. http://127.0.0.1:8081",
                )
            elif parts.username or parts.password:
                problems.add(
                    "url",
                    "must not embed credentials",
                    "use STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO",
                )
        user_info = self.basic_auth_user_info
        if user_info is not None and ":" not in user_info.get_secret_value():
            problems.add("basic_auth_user_info", "must have the form user:password")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            missing = (
                "ssl_key_location" if self.ssl_certificate_location else "ssl_certificate_location"
            )
            problems.add(missing, "client certificate and key must be set together")
        if self.ssl_key_password and not self.ssl_key_location:
            problems.add("ssl_key_password", "is set but ssl_key_location is not")
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            problems.check_readable(name, getattr(self, name))
        self._check_auth(problems)
        problems.raise_if_any()
        return self

    def _check_auth(self, problems: _Problems) -> None:
        oauth = [name for name in _REGISTRY_OAUTH_FIELDS if getattr(self, name)]
        methods = [
            name
            for name, used in (
                ("basic_auth_user_info", self.basic_auth_user_info is not None),
                ("bearer_auth_token", self.bearer_auth_token is not None),
                ("oauth_client_id", bool(oauth)),
            )
            if used
        ]
        if len(methods) > 1:
            problems.add(
                methods[1],
                f"conflicts with {env_var_name('schema_registry', methods[0])}",
                "choose one of basic auth, a bearer token or OAuth client credentials",
            )
        if oauth:
            for name in _REGISTRY_OAUTH_FIELDS:
                if not getattr(self, name):
                    problems.add(
                        name,
                        "is required for OAuth client credentials",
                        "take it from your identity provider's client registration",
                    )
        if self.oauth_token_endpoint_url:
            scheme = urlsplit(self.oauth_token_endpoint_url).scheme
            if scheme not in ("http", "https"):
                problems.add("oauth_token_endpoint_url", "must be an http:// or https:// URL")


class ProducerSettings(_Section):
    """Producer defaults: idempotent, acks from all in-sync replicas."""

    enable_idempotence: bool = True
    """Idempotent producer (needs ``acks=all``)."""
    acks: Literal["all", "-1", "0", "1"] = "all"
    """``all``, ``-1``, ``0``, ``1``."""
    linger_ms: int = Field(default=5, ge=0)
    """Batching delay."""
    batch_size: int = Field(default=1_000_000, gt=0)
    """Batch size in bytes."""
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    """``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``."""
    delivery_timeout_ms: int = Field(default=120_000, gt=0)
    """How long a record may take to be acknowledged."""
    transactional_id: str | None = None
    """Enables Kafka transactions."""
    extra: ExtraConfig = Field(
        default_factory=dict, description="librdkafka producer properties (JSON object)."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("producer")
        if self.enable_idempotence and self.acks != "all" and self.acks != "-1":
            problems.add(
                "acks",
                f"is {self.acks} but idempotence needs acks=all",
                "set acks=all or STREAMKIT_PRODUCER__ENABLE_IDEMPOTENCE=false",
            )
        if self.transactional_id is not None and not self.enable_idempotence:
            problems.add("enable_idempotence", "must be true for a transactional producer")
        problems.raise_if_any()
        return self


class ConsumerSettings(_Section):
    """Consumer-group settings; offsets are committed by streamkit, never automatically."""

    group_id: str | None = None
    """Consumer group (required to consume)."""
    auto_offset_reset: Literal["earliest", "latest", "error"] = "earliest"
    """``earliest``, ``latest``, ``error``."""
    partition_assignment_strategy: Literal[
        "cooperative-sticky", "range", "roundrobin", "range,roundrobin"
    ] = "cooperative-sticky"
    """Or ``range``, ``roundrobin``, ``range,roundrobin``."""
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    """Or ``read_uncommitted``."""
    session_timeout_ms: int = Field(default=45_000, gt=0)
    """Group session timeout."""
    max_poll_interval_ms: int = Field(default=300_000, gt=0)
    """Longest handler time before the member is evicted."""
    dead_letter_suffix: str = ".dlq"
    """Dead-letter topic = topic + suffix."""
    max_retries: int = Field(default=3, ge=0)
    """Handler retries before dead-lettering."""
    retry_backoff_ms: int = Field(default=200, ge=0)
    """First retry delay (doubles each retry)."""
    retry_backoff_max_ms: int = Field(default=10_000, ge=0)
    """Retry delay cap."""
    concurrency: int = Field(
        default=1,
        ge=1,
        le=10_000,
        description=(
            "Handler calls running at once. 1 runs the handler on the poll thread; more "
            "runs sync handlers on a thread pool and coroutine handlers as asyncio tasks."
        ),
    )
    ordering: Literal["key", "partition", "none"] = Field(
        default="key",
        description=(
            "What runs one at a time in offset order: events of one key (null keys: of "
            "one partition), of one partition, or nothing (any order)."
        ),
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most messages held between poll and commit; when reached, partitions are "
            "paused while polling goes on. Default: 10 x concurrency."
        ),
    )
    drain_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description=(
            "On revoke and shutdown, how long to wait for handlers in flight before the "
            "watermark is committed and the partitions are let go."
        ),
    )
    extra: ExtraConfig = Field(
        default_factory=dict, description="librdkafka consumer properties (JSON object)."
    )

    @property
    def in_flight_limit(self) -> int:
        """``max_in_flight``, or its default of 10 x ``concurrency``."""
        return self.max_in_flight or 10 * self.concurrency

    def with_overrides(self, **overrides: Any) -> ConsumerSettings:
        """A copy with the fields given (None values ignored), validated again.

        Raises:
            ConfigError: naming each wrong field by its environment variable.
        """
        chosen = {name: value for name, value in overrides.items() if value is not None}
        if not chosen:
            return self
        try:
            return ConsumerSettings.model_validate({**self.model_dump(), **chosen})
        except ValidationError as exc:
            raise ConfigError(_problems_of(exc, section="consumer")) from None

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("consumer")
        if self.group_id is not None and not self.group_id.strip():
            problems.add("group_id", "is empty", "name the consumer group")
        if self.max_in_flight is not None and self.max_in_flight < self.concurrency:
            problems.add(
                "max_in_flight",
                f"is {self.max_in_flight}, below concurrency {self.concurrency}",
                "hold at least as many messages as handlers may run at once",
            )
        for key in ("enable.auto.commit", "enable.auto.offset.store"):
            if self.extra.get(key) not in (None, False, "false"):
                problems.add(
                    "extra",
                    f"sets {key}, which would commit before handling",
                    "streamkit commits after the handler succeeds; remove it",
                )
        problems.raise_if_any()
        return self


class DedupSettings(_Section):
    """Which deduplication store idempotent consumers use."""

    url: str | None = Field(
        default=None,
        description=(
            "memory://?max_entries=N&ttl=S, sqlite:///path.db, redis://host:port/db or "
            "postgresql://user:password@host:port/db?table=streamkit_dedup."
        ),
    )
    claim_ttl_s: float = Field(default=60.0, gt=0)
    """A claim by a crashed consumer expires after this."""
    ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    """How long completed event ids are remembered."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("dedup")
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            if scheme not in ("memory", "sqlite", "redis", "rediss", "postgresql", "postgres"):
                problems.add(
                    "url",
                    f"has unknown scheme {scheme!r}",
                    "use memory://, sqlite:///path.db, redis://host:port/db or "
                    "postgresql://user:password@host:port/db",
                )
        problems.raise_if_any()
        return self


class OutboxSettings(_Section):
    """The transactional outbox and its relay (``streamkit outbox relay``)."""

    url: SecretStr | None = Field(
        default=None,
        description=(
            "postgresql://user:password@host:port/db?table=streamkit_outbox: the database "
            "the service writes outbox rows into (a secret: it carries the password)."
        ),
    )
    on_sent: Literal["mark", "delete"] = Field(
        default="mark",
        description="What the relay does with a published row: mark it sent, or delete it.",
    )
    batch_size: int = Field(default=500, gt=0, description="Most rows one relay batch takes.")
    poll_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest wait between two looks at the table (LISTEN/NOTIFY wakes sooner).",
    )
    sent_retention_s: float = Field(
        default=24 * 3600.0, gt=0, description="How long rows marked sent are kept."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = _Problems("outbox")
        if self.url is not None:
            scheme = urlsplit(self.url.get_secret_value()).scheme
            if scheme not in ("postgresql", "postgres"):
                problems.add(
                    "url",
                    f"has scheme {scheme!r}; the outbox lives in PostgreSQL",
                    "postgresql://user:password@host:5432/database",
                )
        problems.raise_if_any()
        return self


class TopicSettings(_Section):
    """Defaults for topics streamkit creates or ensures; None leaves the broker's default.

    ``retention_ms`` / ``retention_bytes`` of -1 keep data forever (Kafka's meaning).
    """

    retention_ms: int | None = Field(default=None, ge=-1)
    """``retention.ms`` of topics ``ensure_topics`` creates or updates (``-1``: forever); broker
    default when unset.
    """
    retention_bytes: int | None = Field(default=None, ge=-1)
    """``retention.bytes`` per partition, likewise."""


class MetricsSettings(_Section):
    """Prometheus metrics; the HTTP endpoint is opt-in."""

    port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics on this port (opt-in)."""
    host: str = "127.0.0.1"
    """Metrics bind address."""
    statistics_interval_ms: int = Field(default=5_000, ge=0)
    """Librdkafka statistics interval (consumer lag)."""


class StreamkitSettings(BaseSettings):
    """All streamkit settings, read from ``STREAMKIT_*`` variables and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)


def _problems_of(error: ValidationError, section: str | None = None) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for item in error.errors(include_input=False, include_url=False):
        ctx = item.get("ctx") or {}
        if item["type"] == "streamkit_settings":
            problems.extend(ctx["problems"])
            continue
        path = [section] if section else []
        path += [str(part) for part in item["loc"] if isinstance(part, str)]
        problems.append(ConfigProblem(env_var_name(*path), item["msg"]))
    return problems


def load_settings(**overrides: Any) -> StreamkitSettings:
    """Read settings from the environment (and ``.env``), validating every field.

    Keyword arguments override the environment, section by section
    (``load_settings(kafka={"bootstrap_servers": "..."})``).

    Raises:
        ConfigError: naming every wrong variable, with a hint; never a secret value.
    """
    # The pydantic errors are re-raised without chaining: a traceback must never carry
    # the raw input, which may hold passwords.
    try:
        return StreamkitSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_problems_of(exc)) from None
    except SettingsError as exc:
        # pydantic-settings fails this way on malformed JSON in a variable.
        section = re.search(r'field "(\w+)"', str(exc))
        env_var = env_var_name(section.group(1), "*") if section else ENV_PREFIX + "*"
        problem = ConfigProblem(
            env_var,
            "could not be parsed",
            "JSON-valued variables (such as *__EXTRA) need a valid JSON object",
        )
        raise ConfigError([problem]) from None
