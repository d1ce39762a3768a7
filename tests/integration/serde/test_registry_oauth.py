"""A schema registry that requires OAuth tokens (Apicurio with Quarkus OIDC, real Keycloak).

streamkit's registry client gets its tokens by client credentials
(``STREAMKIT_SCHEMA_REGISTRY__OAUTH_*``); without them, or with wrong ones, the failure is a
:class:`~streamkit.errors.RegistryError` that says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import RegistryError
from streamkit.ops.acl import consumer_acls, producer_acls
from streamkit.ops.admin import StreamkitAdmin
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.testing.keycloak import KeycloakContainer
from streamkit.testing.oauth import OAuthKafka
from streamkit.testing.plugin import RegistryEndpoint
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import settings_from_env

# Keycloak's default client scope; any scope the client may request works.
SCOPE = "profile"
# The client retries a failed token fetch 3 times with backoff (up to 1, 2, 4 s).
FAILURE_BOUND_S = 20.0


def _registry_env(
    registry: RegistryEndpoint, provider: KeycloakContainer, client: str, secret: str | None = None
) -> dict[str, str]:
    return {
        "STREAMKIT_SCHEMA_REGISTRY__URL": registry.url,
        "STREAMKIT_SCHEMA_REGISTRY__OAUTH_CLIENT_ID": client,
        "STREAMKIT_SCHEMA_REGISTRY__OAUTH_CLIENT_SECRET": secret or provider.client(client).secret,
        "STREAMKIT_SCHEMA_REGISTRY__OAUTH_SCOPE": SCOPE,
        "STREAMKIT_SCHEMA_REGISTRY__OAUTH_TOKEN_ENDPOINT_URL": provider.token_endpoint_url,
    }


def test_events_round_trip_with_tokens_for_broker_and_registry(
    oauth_kafka: OAuthKafka,
    oauth_provider: KeycloakContainer,
    oauth_registry: RegistryEndpoint,
    oauth_admin: StreamkitAdmin,
    oauth_topic: str,
    schemas: SchemaSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = f"registry-oauth-{uuid.uuid4().hex[:8]}"
    oauth_admin.ensure_acls(
        [
            *producer_acls("User:producer-service", oauth_topic),
            *consumer_acls("User:consumer-service", oauth_topic, group),
        ]
    )
    producing = settings_from_env(
        monkeypatch,
        {
            **oauth_kafka.endpoint(client="producer-service").env(),
            **_registry_env(oauth_registry, oauth_provider, "producer-service"),
        },
    )
    with EventProducer(producing, schemas=schemas) as producer:
        sent = producer.send(oauth_topic, order(7), schema=ORDER_SCHEMA).result(timeout=60)

    # Another service, with its own tokens, decodes by the writer schema's id.
    consuming = settings_from_env(
        monkeypatch,
        {
            **oauth_kafka.endpoint(client="consumer-service").env(),
            **_registry_env(oauth_registry, oauth_provider, "consumer-service"),
            "STREAMKIT_CONSUMER__GROUP_ID": group,
        },
    )
    received: list[Event] = []
    with EventConsumer([oauth_topic], received.append, settings=consuming) as consumer:
        consumer.run(max_messages=1, idle_timeout_s=60, handle_signals=False)
    assert [event.id for event in received] == [sent.event_id]
    assert received[0].payload["order_id"] == "order-7"

    with SchemaRegistry(consuming) as registry:
        subject = f"{oauth_topic}-value"
        schema_id = registry.lookup(subject, schemas[ORDER_SCHEMA])
        assert registry.schema_by_id(schema_id).text == schemas[ORDER_SCHEMA].text


# case -> (client id, secret override, words the RegistryError must contain)
FAILURES: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {
    "no token": (None, None, ("HTTP 401", "requires authentication", "OAUTH_CLIENT_ID")),
    "wrong client secret": (
        "producer-service",
        "wrong-secret-0c4e",
        ("cannot get an OAuth token", "OAUTH_CLIENT_SECRET"),
    ),
    "token for the wrong audience": (
        "stranger-service",
        None,
        ("HTTP 401", "audience or issuer is not what the registry expects"),
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_registry_auth_failure_is_a_clear_registry_error(
    case: str,
    oauth_provider: KeycloakContainer,
    oauth_registry: RegistryEndpoint,
    schemas: SchemaSet,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, Any], None],
) -> None:
    client, secret, words = FAILURES[case]
    env = (
        _registry_env(oauth_registry, oauth_provider, client, secret)
        if client
        else {"STREAMKIT_SCHEMA_REGISTRY__URL": oauth_registry.url}
    )
    settings = settings_from_env(monkeypatch, env)
    started = time.monotonic()
    with SchemaRegistry(settings) as registry, pytest.raises(RegistryError) as failure:
        registry.register(f"denied-{uuid.uuid4().hex[:8]}-value", schemas[ORDER_SCHEMA])
    elapsed = time.monotonic() - started
    record_property("time_to_error_s", round(elapsed, 3))
    print(f"\nFIGURES oauth registry time-to-error {case}: {elapsed:.3f} s: {failure.value}")
    for word in words:
        assert word in str(failure.value)
    assert elapsed < FAILURE_BOUND_S
    secrets = [c.secret for c in oauth_provider.clients]
    assert not any(s in str(failure.value) or s in repr(registry) for s in secrets)
