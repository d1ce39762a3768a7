"""``mock://`` registry URLs: one in-memory registry per scope, shared by the process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamkit.errors import ConfigError, RegistryError
from streamkit.serde.mock_registry import drop_scope
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import AvroSchema
from streamkit.settings import StreamkitSettings, load_settings

PING = AvroSchema.from_definition(
    {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "long"}]}
)
PONG = AvroSchema.from_definition(
    {"type": "record", "name": "Pong", "fields": [{"name": "s", "type": "string"}]}
)


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Iterator[StreamkitSettings]:
    url = f"mock://{request.node.name}"
    yield load_settings(schema_registry={"url": url})
    drop_scope(url)


def test_faces_of_one_scope_share_ids(settings: StreamkitSettings) -> None:
    with SchemaRegistry(settings) as producer_side, SchemaRegistry(settings) as consumer_side:
        schema_id = producer_side.register("pings-value", PING)
        assert consumer_side.schema_by_id(schema_id).text == PING.text
        assert consumer_side.lookup("pings-value", PING) == schema_id


def test_scopes_are_apart(settings: StreamkitSettings) -> None:
    other = load_settings(schema_registry={"url": "mock://another-scope"})
    SchemaRegistry(other).register("pongs-value", PONG)
    with pytest.raises(RegistryError):
        SchemaRegistry(settings).schema_by_id(999)
    drop_scope("mock://another-scope")


def test_a_new_subject_gets_the_configured_level(settings: StreamkitSettings) -> None:
    registry = SchemaRegistry(settings)
    assert registry.check("pings-value", PING).new_subject
    registry.register("pings-value", PING)
    assert registry.compatibility("pings-value") == settings.schema_registry.compatibility


def test_compatibility_checks_are_refused_rather_than_guessed(settings: StreamkitSettings) -> None:
    registry = SchemaRegistry(settings)
    registry.register("pings-value", PING)
    with pytest.raises(RegistryError, match="does not check compatibility"):
        registry.check("pings-value", PONG)


@pytest.mark.parametrize("url", ["mock:/", "mocks://scope", "ftp://host"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="mock://"):
        load_settings(schema_registry={"url": url})
