"""ACLs against the real broker with KRaft's StandardAuthorizer (the test kit's secure_kafka).

``bob`` is an ordinary SCRAM user without ACLs; ``admin`` is a super user that grants
them through :meth:`StreamkitAdmin.ensure_acls`.
"""

from __future__ import annotations

import time
import uuid

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import AuthorizationError, ConfigError
from streamkit.ops.acl import AclSpec, consumer_acls, producer_acls
from streamkit.ops.admin import StreamkitAdmin
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import RegistryEndpoint
from streamkit.testing.security import SecureKafka
from tests.factories import ORDER_SCHEMA, order

BOB = "User:bob"
DENIAL_BOUND_S = 30.0


@pytest.fixture
def acl_admin(secure_kafka: SecureKafka) -> StreamkitAdmin:
    """An admin authenticated as the super user ``admin`` over SASL."""
    return StreamkitAdmin(secure_kafka.endpoint("sasl_scram_512", user="admin").settings())


def _as(
    user: str, kafka: SecureKafka, registry: RegistryEndpoint, group: str | None = None
) -> StreamkitSettings:
    return kafka.endpoint("sasl_scram_512", user=user).settings(
        schema_registry={"url": registry.url},
        consumer={"group_id": group or f"group-{uuid.uuid4().hex[:8]}"},
    )


def _produce_one(settings: StreamkitSettings, schemas: SchemaSet, topic: str) -> None:
    # The refusal may come at start-up (producer id) or with the delivery report.
    with EventProducer(settings, schemas=schemas) as producer:
        producer.send(topic, order(1), schema=ORDER_SCHEMA).result(timeout=60)


# idempotent producers ask for a producer id first: the broker refuses it as a cluster
# authorization failure; plain producers meet the topic ACL.
DENIED_PRODUCE = {True: ("CLUSTER", "IDEMPOTENT_WRITE"), False: ("TOPIC", "WRITE")}


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
def test_denied_produce_names_resource_and_operation_then_allowed_after_grant(
    idempotent: bool,
    secure_kafka: SecureKafka,
    schema_registry: RegistryEndpoint,
    secure_topic: str,
    schemas: SchemaSet,
    acl_admin: StreamkitAdmin,
) -> None:
    bob = _as("bob", secure_kafka, schema_registry)
    bob = bob.model_copy(
        update={"producer": bob.producer.model_copy(update={"enable_idempotence": idempotent})}
    )
    started = time.monotonic()
    with pytest.raises(AuthorizationError) as denied:
        _produce_one(bob, schemas, secure_topic)
    elapsed = time.monotonic() - started
    print(
        f"\ndenied produce ({'idempotent' if idempotent else 'plain'}) after {elapsed:.3f} s: "
        f"{denied.value}"
    )
    assert elapsed < DENIAL_BOUND_S
    resource_type, operation = DENIED_PRODUCE[idempotent]
    assert (denied.value.resource_type, denied.value.acl_operation) == (resource_type, operation)
    if not idempotent:
        assert denied.value.resource_name == secure_topic
        assert f"WRITE on TOPIC {secure_topic!r}" in str(denied.value)

    grants = producer_acls(BOB, secure_topic)
    assert {c.action for c in acl_admin.ensure_acls(grants)} == {"created"}
    _produce_one(bob, schemas, secure_topic)
    assert {c.action for c in acl_admin.ensure_acls(grants)} == {"unchanged"}


def test_denied_consume_on_group_names_group_then_allowed_after_grant(
    secure_kafka: SecureKafka,
    schema_registry: RegistryEndpoint,
    secure_topic: str,
    schemas: SchemaSet,
    acl_admin: StreamkitAdmin,
) -> None:
    with EventProducer(_as("alice", secure_kafka, schema_registry), schemas=schemas) as producer:
        sent = producer.send(secure_topic, order(3), schema=ORDER_SCHEMA).result(timeout=60)
    group = f"bob-{uuid.uuid4().hex[:8]}"
    bob = _as("bob", secure_kafka, schema_registry, group)
    topic_only = [
        spec for spec in consumer_acls(BOB, secure_topic, group) if spec.resource_type == "TOPIC"
    ]
    acl_admin.ensure_acls(topic_only)

    started = time.monotonic()
    with (
        EventConsumer([secure_topic], print, settings=bob) as consumer,
        pytest.raises(AuthorizationError) as denied,
    ):
        consumer.run(max_messages=1, idle_timeout_s=DENIAL_BOUND_S, handle_signals=False)
    elapsed = time.monotonic() - started
    print(f"\ndenied consume after {elapsed:.3f} s: {denied.value}")
    assert elapsed < DENIAL_BOUND_S
    assert (denied.value.resource_type, denied.value.resource_name) == ("GROUP", group)
    assert denied.value.acl_operation == "READ"
    assert f"READ on GROUP {group!r}" in str(denied.value)

    changes = acl_admin.ensure_acls(consumer_acls(BOB, secure_topic, group))
    assert [c.action for c in changes] == ["unchanged", "unchanged", "created"]
    received: list[Event] = []
    with EventConsumer([secure_topic], received.append, settings=bob) as consumer:
        consumer.run(max_messages=1, idle_timeout_s=60, handle_signals=False)
    assert [event.id for event in received] == [sent.event_id]


def test_acl_spec_refuses_unknown_names() -> None:
    with pytest.raises(ConfigError, match=r"AclSpec\.operation"):
        AclSpec(BOB, "TOPIC", "t", "SHOUT")
    with pytest.raises(ConfigError, match=r"AclSpec\.principal"):
        AclSpec("bob", "TOPIC", "t", "READ")
