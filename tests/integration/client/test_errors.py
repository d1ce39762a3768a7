"""Start-up and first-call errors against the real broker: a streamkit error naming the
cause, never a bare ``cimpl.KafkaException`` or a cause that cannot apply."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.errors import BrokerUnavailableError, KafkaClientError
from streamkit.produce.producer import EventProducer
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.plugin import RegistryEndpoint


def test_registry_port_as_bootstrap_server_is_named_not_a_kafka_listener(
    schema_registry: RegistryEndpoint, schemas: SchemaSet
) -> None:
    # A common slip: the registry's host:port in STREAMKIT_KAFKA__BOOTSTRAP_SERVERS.
    http = urlsplit(schema_registry.url).netloc
    settings = load_settings(
        kafka={"bootstrap_servers": http, "startup_check_timeout_s": 60},
        schema_registry={"url": schema_registry.url},
    )
    with pytest.raises(BrokerUnavailableError) as caught:
        EventProducer(settings, schemas=schemas)
    text = str(caught.value)
    assert f"{http} is not a Kafka listener" in text
    assert "'HTTP'" in text
    assert "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS" in text
    assert "receive.message.max.bytes" not in text  # librdkafka's guess, impossible here
    assert "broker version" not in text


def test_invalid_subscription_is_a_streamkit_error(streamkit_settings: StreamkitSettings) -> None:
    consumer = EventConsumer(["^["], lambda _event: None, settings=streamkit_settings)
    with consumer, pytest.raises(KafkaClientError) as caught:
        consumer.run(max_messages=1, idle_timeout_s=5, handle_signals=False)
    assert str(caught.value).startswith("subscribe failed: _INVALID_ARG")
    assert caught.value.code == "_INVALID_ARG"
