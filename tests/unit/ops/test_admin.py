"""Admin calls that raise synchronously reach the caller as streamkit errors."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamkit.errors import BrokerUnavailableError, KafkaClientError
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.settings import load_settings


class RaisingAdmin:
    """Every admin call raises the way librdkafka does when the cluster cannot be asked."""

    def __getattr__(self, name: str) -> Any:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise KafkaException(
                KafkaError(KafkaError._TRANSPORT, f"{name}: Broker transport failure")
            )

        return call


@pytest.fixture
def admin() -> StreamkitAdmin:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:1", "startup_check_timeout_s": 0}
    )
    admin = StreamkitAdmin(settings)
    admin._admin = RaisingAdmin()
    return admin


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (lambda a: a.partitions("orders"), "list topics"),
        (lambda a: a.ensure_topics([TopicSpec("orders")]), "list topics"),
        (lambda a: a.describe_lag("billing"), "list group offsets"),
    ],
)
def test_admin_calls_raise_streamkit_errors(
    admin: StreamkitAdmin, call: Any, operation: str
) -> None:
    with pytest.raises(KafkaClientError) as caught:
        call(admin)
    assert isinstance(caught.value, BrokerUnavailableError)
    assert str(caught.value).startswith(f"{operation} failed")
    assert "STREAMKIT_KAFKA__BOOTSTRAP_SERVERS" in str(caught.value)
