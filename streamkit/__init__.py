"""streamkit: a thin, typed layer over Apache Kafka for Python microservices.

The public API is re-exported here; import from ``streamkit`` itself::

    from streamkit import EventConsumer, EventProducer, load_settings
"""

from streamkit._version import __version__
from streamkit.client.config import client_config, masked
from streamkit.consume.aio import AsyncEventConsumer
from streamkit.consume.consumer import EventConsumer
from streamkit.consume.processing import ConsumerStats
from streamkit.consume.transactional import Output, TransactionalProcessor, TransactionStats
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
    MissingExtraError,
    OutboxError,
    RegistryError,
    SchemaCompatibilityError,
    SchemaError,
    SchemaLoadError,
    SchemaValidationError,
    SerializationError,
    StreamkitError,
    TlsError,
)
from streamkit.produce.delivery import DeliveryFuture
from streamkit.produce.outbox import Outbox
from streamkit.produce.outbox_relay import OutboxRelay
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema, SchemaSet, load_schemas
from streamkit.settings import StreamkitSettings, load_settings

__all__ = [
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
]
