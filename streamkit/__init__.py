"""streamkit: a thin, typed layer over Apache Kafka for Python microservices."""

from streamkit.clientconfig import client_config, masked
from streamkit.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    ConfigError,
    ConfigProblem,
    DedupStoreError,
    DeliveryError,
    DeserializationError,
    KafkaClientError,
    RegistryError,
    SchemaCompatibilityError,
    SchemaError,
    SchemaLoadError,
    SchemaValidationError,
    SerializationError,
    StreamkitError,
    TlsError,
)
from streamkit.settings import StreamkitSettings, load_settings

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BrokerUnavailableError",
    "ConfigError",
    "ConfigProblem",
    "DedupStoreError",
    "DeliveryError",
    "DeserializationError",
    "KafkaClientError",
    "RegistryError",
    "SchemaCompatibilityError",
    "SchemaError",
    "SchemaLoadError",
    "SchemaValidationError",
    "SerializationError",
    "StreamkitError",
    "StreamkitSettings",
    "TlsError",
    "__version__",
    "client_config",
    "load_settings",
    "masked",
]
