"""Settings → client configuration dicts.

:func:`client_config` is the only place in streamkit that knows librdkafka property
names (and the schema registry client's). Everything that builds a client calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import SecretStr

from streamkit.settings import SchemaRegistrySettings, SecuritySettings, StreamkitSettings

__all__ = ["ClientRole", "client_config", "masked", "topic_config"]

ClientRole = Literal["producer", "consumer", "admin", "schema_registry"]
OAuthCallback = Callable[[str], tuple[str, float]]
StatsCallback = Callable[[str], None]

MASK = "**********"
_SECRET_MARKERS = ("password", "secret", "user.info", "token", "sasl.oauthbearer.config", "pem")


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _security(security: SecuritySettings, oauth_cb: OAuthCallback | None) -> dict[str, Any]:
    conf: dict[str, Any] = {"security.protocol": security.protocol.lower()}
    if security.uses_sasl and security.sasl_mechanism is not None:
        conf["sasl.mechanism"] = security.sasl_mechanism
        if security.sasl_mechanism == "OAUTHBEARER":
            conf.update(_oauthbearer(security, oauth_cb))
        else:
            conf["sasl.username"] = security.sasl_username
            conf["sasl.password"] = _secret(security.sasl_password)
    if security.uses_tls:
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if security.ssl_endpoint_identification else "none"
        )
        conf.update(
            {
                "ssl.ca.location": security.ssl_ca_location,
                "ssl.certificate.location": security.ssl_certificate_location,
                "ssl.key.location": security.ssl_key_location,
                "ssl.key.password": _secret(security.ssl_key_password),
                "ssl.crl.location": security.ssl_crl_location,
            }
        )
    return conf


def _oauthbearer(security: SecuritySettings, oauth_cb: OAuthCallback | None) -> dict[str, Any]:
    if oauth_cb is not None:
        return {"oauth_cb": oauth_cb}
    if security.sasl_oauthbearer_method == "aws_msk_iam":
        from streamkit.client.oauth import msk_iam_oauth_cb

        return {"oauth_cb": msk_iam_oauth_cb(str(security.sasl_oauthbearer_aws_region))}
    if security.sasl_oauthbearer_method == "oidc":
        return {
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.token.endpoint.url": security.sasl_oauthbearer_token_endpoint_url,
            "sasl.oauthbearer.client.id": security.sasl_oauthbearer_client_id,
            "sasl.oauthbearer.client.secret": _secret(security.sasl_oauthbearer_client_secret),
            "sasl.oauthbearer.scope": security.sasl_oauthbearer_scope,
            "sasl.oauthbearer.extensions": security.sasl_oauthbearer_extensions,
        }
    return {"sasl.oauthbearer.config": _secret(security.sasl_oauthbearer_config)}


def _producer(settings: StreamkitSettings) -> dict[str, Any]:
    producer = settings.producer
    return {
        "enable.idempotence": producer.enable_idempotence,
        "acks": producer.acks,
        "linger.ms": producer.linger_ms,
        "batch.size": producer.batch_size,
        "compression.type": producer.compression_type,
        "delivery.timeout.ms": producer.delivery_timeout_ms,
        "transactional.id": producer.transactional_id,
        # librdkafka refuses a transactional producer whose delivery timeout exceeds
        # the transaction timeout (default 60 s, below streamkit's delivery default).
        "transaction.timeout.ms": (
            max(60_000, producer.delivery_timeout_ms) if producer.transactional_id else None
        ),
        **producer.extra,
    }


def _consumer(settings: StreamkitSettings) -> dict[str, Any]:
    consumer = settings.consumer
    return {
        "group.id": consumer.group_id,
        "auto.offset.reset": consumer.auto_offset_reset,
        "partition.assignment.strategy": consumer.partition_assignment_strategy,
        "isolation.level": consumer.isolation_level,
        "session.timeout.ms": consumer.session_timeout_ms,
        "max.poll.interval.ms": consumer.max_poll_interval_ms,
        # streamkit stores and commits offsets itself, after the handler succeeded.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        **consumer.extra,
    }


def _schema_registry(settings: StreamkitSettings) -> dict[str, Any]:
    registry = settings.schema_registry
    return {
        "url": registry.url,
        "basic.auth.user.info": _secret(registry.basic_auth_user_info),
        "ssl.ca.location": registry.ssl_ca_location,
        "ssl.certificate.location": registry.ssl_certificate_location,
        "ssl.key.location": registry.ssl_key_location,
        "ssl.key.password": _secret(registry.ssl_key_password),
        "timeout": registry.timeout_s,
        **_registry_bearer(registry),
    }


def _registry_bearer(registry: SchemaRegistrySettings) -> dict[str, Any]:
    if registry.oauth_client_id:
        conf: dict[str, Any] = {
            "bearer.auth.credentials.source": "OAUTHBEARER",
            "bearer.auth.client.id": registry.oauth_client_id,
            "bearer.auth.client.secret": _secret(registry.oauth_client_secret),
            "bearer.auth.scope": registry.oauth_scope,
            "bearer.auth.issuer.endpoint.url": registry.oauth_token_endpoint_url,
        }
    elif registry.bearer_auth_token is not None:
        conf = {
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": _secret(registry.bearer_auth_token),
        }
    else:
        return {}
    # The client demands a logical cluster even where only Confluent Cloud uses it.
    conf["bearer.auth.logical.cluster"] = registry.bearer_auth_logical_cluster or ""
    conf["bearer.auth.identity.pool.id"] = registry.bearer_auth_identity_pool_id
    return conf


def client_config(
    settings: StreamkitSettings,
    role: ClientRole,
    *,
    oauth_cb: OAuthCallback | None = None,
    stats_cb: StatsCallback | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the configuration dict of one client from settings.

    Args:
        settings: the resolved settings.
        role: which client the dict is for.
        oauth_cb: OAUTHBEARER token callback ``(config_str) -> (token, expiry_epoch_s)``.
        stats_cb: called with librdkafka's statistics JSON every
            ``metrics.statistics_interval_ms`` (not set when that is 0).
        overrides: properties set by streamkit's own components (win over settings).

    Returns:
        A dict ready for ``Producer``, ``Consumer``, ``AdminClient`` or
        ``SchemaRegistryClient``; properties left unset are omitted.
    """
    if role == "schema_registry":
        conf = _schema_registry(settings)
    else:
        conf = {
            "bootstrap.servers": ",".join(settings.kafka.bootstrap_list),
            "client.id": settings.kafka.client_id,
            **_security(settings.security, oauth_cb),
            **settings.kafka.extra,
        }
        if role == "producer":
            conf.update(_producer(settings))
        elif role == "consumer":
            conf.update(_consumer(settings))
        interval = settings.metrics.statistics_interval_ms
        if stats_cb is not None and interval > 0:
            conf.update({"stats_cb": stats_cb, "statistics.interval.ms": interval})
    conf.update(overrides or {})
    return {
        key: str(value) if hasattr(value, "__fspath__") else value
        for key, value in conf.items()
        if value is not None
    }


def topic_config(settings: StreamkitSettings) -> dict[str, str]:
    """The topic-level configs that settings ask for (``STREAMKIT_TOPICS__*``), as strings."""
    topics = settings.topics
    conf = {"retention.ms": topics.retention_ms, "retention.bytes": topics.retention_bytes}
    return {key: str(value) for key, value in conf.items() if value is not None}


def is_secret_key(key: str) -> bool:
    """Whether a configuration property holds a secret (a URL never does: token endpoints)."""
    lowered = key.lower()
    if lowered.endswith("url"):
        return False
    return any(marker in lowered for marker in _SECRET_MARKERS)


def masked(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a configuration dict with every secret value replaced by a mask."""
    return {key: MASK if is_secret_key(key) else value for key, value in conf.items()}
