"""Registry failures name what was asked, the answer and the likely cause."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streamkit.errors import RegistryError
from streamkit.serde.registry import _quiet_urls, _QuietRequests, registry_errors


@pytest.mark.parametrize(
    ("status", "code", "message", "cause"),
    [
        (404, None, None, "missing the registry's API path"),  # JSON without registry fields
        (404, -1, "Unknown Schema Registry Error: b'<html>'", "missing the registry's API path"),
        (405, -1, "Unknown Schema Registry Error: b''", "/apis/ccompat/v7"),
        (404, 40401, "Subject 'x' not found.", "the subject does not exist"),
        (404, 40403, "Schema 7 not found.", "no schema has this id in this registry"),
        (401, 401, "Unauthorized", "STREAMKIT_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO"),
        (403, 40301, "User cannot access the resource.", "not allowed"),
        (422, 42201, "Invalid schema", "refused the schema as invalid"),
        (500, 50001, "Error in the backend data store", "failed on its side"),
        (503, -1, "Unknown Schema Registry Error: b'busy'", "may succeed later"),
    ],
)
def test_http_failures_name_the_answer_and_cause(
    status: int, code: int | None, message: str | None, cause: str
) -> None:
    with (
        pytest.raises(RegistryError) as caught,
        registry_errors("register a schema", subject="orders-value"),
    ):
        raise SchemaRegistryError(status, code, message)  # type: ignore[arg-type]
    text = str(caught.value)
    assert text.startswith("cannot register a schema for subject 'orders-value': ")
    assert f"answered HTTP {status}" in text
    assert cause in text
    assert "None" not in text
    assert caught.value.http_status == status
    assert caught.value.transient is (status >= 500)


def test_http_client_info_line_is_dropped_for_registry_urls_only() -> None:
    _quiet_urls.add("http://registry.test:8081/apis/ccompat/v7")
    quiet = _QuietRequests()

    def record(url: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord(
            "httpx",
            level,
            "",
            0,
            'HTTP Request: %s %s "%s %d %s"',
            ("GET", url, "HTTP/1.1", 200, "OK"),
            None,
        )

    assert not quiet.filter(record("http://registry.test:8081/apis/ccompat/v7/subjects"))
    assert quiet.filter(record("http://other.test/api"))
    assert quiet.filter(record("http://registry.test:8081/apis/ccompat/v7/x", logging.WARNING))
