"""Registry errors against the real registry: what was asked, of which URL, and why."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from streamkit.errors import RegistryError
from streamkit.produce.producer import EventProducer
from streamkit.serde.registry import SchemaRegistry
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.plugin import RegistryEndpoint, TopicFactory
from tests.factories import PAYMENT_SCHEMA, payment

API_PATH = "/apis/ccompat/v7"


def _registry_at(url: str) -> SchemaRegistry:
    return SchemaRegistry(load_settings(schema_registry={"url": url, "timeout_s": 5}))


@pytest.mark.parametrize(
    ("base", "ask", "named"),
    [
        # the API root without Apicurio's API path: 404 from something that is no registry API
        (
            "root",
            lambda r, s: r.register("orders-value", s),
            ["PUT {root}/config/orders-value", "HTTP 404", "missing the registry's API path"],
        ),
        (
            "root",
            lambda r, s: r.schema_by_id(7),
            ["GET {root}/schemas/ids/7", "HTTP 404", API_PATH],
        ),
        (
            "api",
            lambda r, s: r.schema_by_id(987654321),
            [
                "look up schema id 987654321",
                "GET {api}/schemas/ids/987654321",
                "40403",
                "no schema has this id in this registry",
            ],
        ),
        (
            "api",
            lambda r, s: r.lookup("never-registered-value", s),
            [
                "for subject 'never-registered-value'",
                "POST {api}/subjects/never-registered-value",
                "the subject does not exist",
            ],
        ),
        (
            "refused",
            lambda r, s: r.schema_by_id(1),
            ["cannot reach the schema registry", "GET http://127.0.0.1:1/schemas/ids/1"],
        ),
    ],
)
def test_registry_errors_name_request_url_and_cause(
    schema_registry: RegistryEndpoint,
    schemas: SchemaSet,
    base: str,
    ask: Callable[[SchemaRegistry, Any], Any],
    named: list[str],
) -> None:
    api = schema_registry.url.rstrip("/")
    if not api.endswith(API_PATH):
        pytest.fail(f"the test kit's registry is expected to be Apicurio at {API_PATH}")
    urls = {"root": api.removesuffix(API_PATH), "api": api, "refused": "http://127.0.0.1:1"}
    with _registry_at(urls[base]) as registry, pytest.raises(RegistryError) as caught:
        ask(registry, schemas[PAYMENT_SCHEMA])
    text = str(caught.value)
    for fragment in named:
        assert fragment.format(root=urls["root"], api=api) in text
    assert "None: None" not in text
    assert "error -1" not in text


def test_info_log_has_no_line_per_registry_request(
    streamkit_settings: StreamkitSettings,
    schemas: SchemaSet,
    topic_factory: TopicFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory(partitions=1)
    with caplog.at_level(logging.INFO), EventProducer(streamkit_settings, schemas=schemas) as p:
        p.send(topic, payment(1), schema=PAYMENT_SCHEMA).result(timeout=30)
    requests = [r.getMessage() for r in caplog.records if "HTTP Request" in r.getMessage()]
    assert requests == []
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [line for line in noise if "Coordinator load in progress" in line]
