"""The public API is exactly what ``streamkit`` exports; a change here is a release note."""

from __future__ import annotations

import importlib.metadata

import streamkit

PUBLIC_API = {
    "AsyncEventConsumer",
    "AuthenticationError",
    "AuthorizationError",
    "AvroSchema",
    "BrokerUnavailableError",
    "ConfigError",
    "ConfigProblem",
    "ConsumerStats",
    "DedupStoreError",
    "DeliveryError",
    "DeliveryFuture",
    "DeserializationError",
    "Event",
    "EventConsumer",
    "EventProducer",
    "KafkaClientError",
    "MissingExtraError",
    "Outbox",
    "OutboxError",
    "OutboxRelay",
    "Output",
    "RegistryError",
    "SchemaCompatibilityError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaRegistry",
    "SchemaSet",
    "SchemaValidationError",
    "SerializationError",
    "StreamkitError",
    "StreamkitSettings",
    "TlsError",
    "TransactionStats",
    "TransactionalProcessor",
    "__version__",
    "client_config",
    "load_schemas",
    "load_settings",
    "masked",
}


def test_all_is_pinned() -> None:
    assert set(streamkit.__all__) == PUBLIC_API
    assert len(streamkit.__all__) == len(PUBLIC_API), "a name is listed twice"


def test_all_names_are_exported_and_exist() -> None:
    public = {name for name in dir(streamkit) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(streamkit, name)).__name__ == "module"}
    assert set(streamkit.__all__) - {"__version__"} == public - modules
    for name in streamkit.__all__:
        assert hasattr(streamkit, name)


def test_version_is_the_installed_distributions() -> None:
    assert streamkit.__version__ == importlib.metadata.version("streamkit")
