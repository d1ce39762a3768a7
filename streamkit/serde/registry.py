"""The schema registry (Confluent REST API): register, check, look up by id.

A thin, caching face over ``confluent_kafka.schema_registry.SchemaRegistryClient``.
Registry failures are translated into streamkit errors in one place,
:func:`registry_errors`: each names what was asked, the request (method and URL), the
registry's answer and the likely cause. The HTTP client's INFO line per request is
left out of the service's log (streamkit logs each request at DEBUG instead). A
``mock://<scope>`` URL selects an in-memory registry shared by the process
(:mod:`streamkit.serde.mock_registry`), for broker-less tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import error as registry_error
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streamkit.client.closing import Closing
from streamkit.client.config import client_config
from streamkit.errors import (
    ConfigError,
    ConfigProblem,
    RegistryError,
    SchemaCompatibilityError,
)
from streamkit.serde.mock_registry import is_mock_url, mock_client
from streamkit.serde.schemas import AvroSchema, EventSchema, JsonSchema, ValueSchema
from streamkit.settings import StreamkitSettings, env_var_name

__all__ = ["CompatibilityReport", "SchemaRegistry", "registry_errors"]

log = logging.getLogger(__name__)

_INCOMPATIBLE = 409
# Raised by the client's OAuth token fetch in recent confluent-kafka releases; where the
# class does not exist, the placeholder is never raised.
_OAuthTokenError: type[Exception] = getattr(
    registry_error, "OAuthTokenError", type("_NeverRaised", (Exception,), {})
)
_OAUTH = env_var_name("schema_registry", "oauth_")
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})
_URL_VAR = env_var_name("schema_registry", "url")
_AUTH_VARS = " / ".join(
    env_var_name("schema_registry", name) for name in ("basic_auth_user_info", "bearer_auth_token")
)
_NO_REGISTRY_API = (
    f"{_URL_VAR} is probably missing the registry's API path (Apicurio serves the "
    "Confluent API under /apis/ccompat/v7, e.g. http://host:8080/apis/ccompat/v7), or "
    "names another service"
)
_CODE_CAUSES = {
    40401: "the subject does not exist (nothing was registered under it yet)",
    40402: "the subject has no such version",
    40403: "no schema has this id in this registry (was the data written against another "
    "registry?)",
    42201: "the registry refused the schema as invalid",
    42203: "the registry does not know this compatibility level",
}
_STATUS_CAUSES = {
    401: (
        "the registry did not accept the request's credentials: it requires "
        f"authentication ({_OAUTH}CLIENT_ID, {_OAUTH}CLIENT_SECRET, {_OAUTH}SCOPE and "
        f"{_OAUTH}TOKEN_ENDPOINT_URL for OAuth, or {_AUTH_VARS}); with OAuth set, the "
        "token's audience or issuer is not what the registry expects"
    ),
    403: "the credentials are valid but not allowed to do this: ask for registry access",
    404: _NO_REGISTRY_API,
    405: _NO_REGISTRY_API,
    409: "the schema is not compatible with the subject's registered versions",
    408: "the registry timed out; it may succeed later",
    429: "the registry throttled the request; it may succeed later",
}
_MAX_BODY = 200

# The request of the current thread's registry call, recorded by an HTTP client hook so
# that an error can name it (the Confluent client's errors do not).
_calls = threading.local()
_quiet_urls: set[str] = set()


class _QuietRequests(logging.Filter):
    """Drops the HTTP client's INFO line per request for streamkit's registries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not str(record.msg).startswith("HTTP Request:"):
            return True
        url = str(record.args[1]) if isinstance(record.args, tuple) and record.args[1:] else ""
        return not any(url.startswith(base) for base in _quiet_urls)


_quiet_filter = _QuietRequests()


def _record_request(request: Any) -> None:
    _calls.request = f"{request.method} {str(request.url).partition('?')[0]}"


def _log_response(response: Any) -> None:
    log.debug(
        "schema registry: %s -> HTTP %s", getattr(_calls, "request", "?"), response.status_code
    )


def _watch_requests(client: SchemaRegistryClient, base_url: str | None) -> None:
    """Record each request (for error messages) and quiet the per-request INFO line."""
    session = getattr(getattr(client, "_rest_client", None), "session", None)
    hooks = getattr(session, "event_hooks", None)
    if session is None or not isinstance(hooks, dict):
        return  # another client implementation: errors just name no request
    if _record_request not in hooks.get("request", []):
        hooks["request"] = [*hooks.get("request", []), _record_request]
        hooks["response"] = [*hooks.get("response", []), _log_response]
        session.event_hooks = hooks
    if base_url:
        _quiet_urls.add(base_url.rstrip("/"))
        http_log = logging.getLogger(type(session).__module__.partition(".")[0])
        if _quiet_filter not in http_log.filters:
            http_log.addFilter(_quiet_filter)


def _http_failure(action: str, where: str, exc: SchemaRegistryError) -> str:
    status, code = exc.http_status_code, exc.error_code
    from_registry = code not in (None, -1) and code != status
    if from_registry:
        answer = f"registry error {code}: {exc.error_message}"
    elif exc.error_message and not str(exc.error_message).startswith("Unknown Schema Registry"):
        answer = f"no registry error code: {exc.error_message}"
    else:
        body = str(exc.error_message or "").removeprefix("Unknown Schema Registry Error: ")
        answer = "not a schema registry's answer" + (
            f": {body[:_MAX_BODY]}" if body and body != "b''" else ""
        )
    request = getattr(_calls, "request", None)
    who = request or "the schema registry"
    if status is not None and status >= 500:
        cause: str | None = (
            "the registry failed on its side (or its storage is down); it may succeed later"
        )
    elif from_registry:  # a registry answered: the path exists, the resource may not
        known = _CODE_CAUSES.get(code or 0)
        cause = known or (None if status in (404, 405) else _STATUS_CAUSES.get(status or 0))
    else:
        cause = _STATUS_CAUSES.get(status or 0)
    hint = f" (hint: {cause})" if cause else ""
    return f"cannot {action}{where}: {who} answered HTTP {status} ({answer}){hint}"


@dataclass(frozen=True)
class CompatibilityReport:
    """The outcome of checking one schema against its subject."""

    subject: str
    schema: str
    compatible: bool
    reasons: tuple[str, ...] = ()
    new_subject: bool = False


@contextmanager
def registry_errors(action: str, *, subject: str | None = None) -> Iterator[None]:
    """Translate registry client failures raised inside the block into RegistryError.

    The message names ``action`` (what was asked), the request (method and URL, when a
    :class:`SchemaRegistry` made it), the registry's answer and the likely cause.
    """
    where = f" for subject {subject!r}" if subject else ""
    _calls.request = None
    try:
        yield
    except SchemaRegistryError as exc:
        raise RegistryError(
            _http_failure(action, where, exc),
            http_status=exc.http_status_code,
            error_code=exc.error_code,
        ) from exc
    except _OAuthTokenError as exc:
        # The client's own token fetch failed: the registry was never asked.
        raise RegistryError(
            f"cannot get an OAuth token for the schema registry to {action}{where}: "
            f"{getattr(exc, 'message', exc)} (hint: check {_OAUTH}TOKEN_ENDPOINT_URL, "
            f"{_OAUTH}CLIENT_ID and {_OAUTH}CLIENT_SECRET)",
            transient=getattr(exc, "status_code", None) is None,
        ) from exc
    except OSError as exc:
        raise RegistryError(f"cannot {action}{where}: {exc}", transient=True) from exc
    except ValueError as exc:  # httpx transport errors derive from neither
        raise RegistryError(f"cannot {action}{where}: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("httpx"):
            request = getattr(_calls, "request", None)
            raise RegistryError(
                f"cannot reach the schema registry to {action}{where}"
                f"{f' ({request})' if request else ''}: {type(exc).__name__}: {exc} "
                f"(hint: check {_URL_VAR} and that the registry runs)",
                transient=True,
            ) from exc
        raise


class SchemaRegistry(Closing):
    """Registers schemas and resolves ids, caching both directions.

    Args:
        settings: resolved settings; ``schema_registry.url`` must be set.
        client: an existing ``SchemaRegistryClient`` to use instead (tests, sharing).
    """

    def __init__(
        self, settings: StreamkitSettings, *, client: SchemaRegistryClient | None = None
    ) -> None:
        if client is None and not settings.schema_registry.url:
            raise ConfigError(
                [
                    ConfigProblem(
                        env_var_name("schema_registry", "url"),
                        "is required to produce or consume Avro",
                        "e.g. http://127.0.0.1:8081",
                    )
                ]
            )
        self.settings = settings.schema_registry
        if client is None and is_mock_url(self.settings.url):
            client = mock_client(str(self.settings.url))
        self._client = client or SchemaRegistryClient(client_config(settings, "schema_registry"))
        _watch_requests(self._client, self.settings.url)
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, ValueSchema] = {}

    def __repr__(self) -> str:
        return f"SchemaRegistry(url={self.settings.url!r})"

    def close(self) -> None:
        """Close the HTTP connections (the caches stay usable for decoding)."""
        # SchemaRegistryClient.close() only exists from confluent-kafka 2.13 on; older
        # clients (which the dependency range allows) release their session on collection.
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
        # The client's close() leaves the HTTP connections of its OAuth token fetcher
        # (authlib's OAuth2Client) open, which surface as ResourceWarnings later.
        provider = getattr(
            getattr(self._client, "_rest_client", None), "bearer_field_provider", None
        )
        close_token_client = getattr(getattr(provider, "client", None), "close", None)
        if callable(close_token_client):
            close_token_client()

    @property
    def client(self) -> SchemaRegistryClient:
        """The underlying Confluent client (for interop)."""
        return self._client

    def register(self, subject: str, schema: EventSchema) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id.

        Raises:
            SchemaCompatibilityError: the registry refused it as incompatible, with the
                registry's reasons.
        """
        key = (subject, schema.text)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        if not self._exists(subject):
            # A new subject gets the configured level, not whatever the registry defaults
            # to (Confluent: BACKWARD, Apicurio: NONE).
            self.set_compatibility(subject, self.settings.compatibility)
        try:
            with registry_errors("register a schema", subject=subject):
                schema_id = self._client.register_schema(
                    subject, Schema(schema.text, schema.schema_type)
                )
        except RegistryError as exc:
            if exc.http_status == _INCOMPATIBLE:
                # Confluent explains in the verbose check; Apicurio only in the 409 body.
                cause = exc.__cause__
                message = cause.error_message if isinstance(cause, SchemaRegistryError) else ""
                reasons = list(self.check(subject, schema).reasons) or [message or str(exc)]
                raise SchemaCompatibilityError(
                    subject=subject, compatibility=self.compatibility(subject), reasons=reasons
                ) from exc
            raise
        self._ids[key] = schema_id
        self._remember(schema_id, schema)
        return schema_id

    def _remember(self, schema_id: int, schema: EventSchema) -> None:
        if isinstance(schema, AvroSchema | JsonSchema):
            self._by_id.setdefault(schema_id, schema)

    def _exists(self, subject: str) -> bool:
        try:
            with registry_errors("list the versions", subject=subject):
                # get_versions, not get_latest_version: the latter is cached by the client
                # and would hide versions registered afterwards.
                versions = self._client.get_versions(subject)
        except RegistryError as exc:
            if exc.error_code in _NOT_FOUND_CODES or exc.http_status == 404:
                return False
            raise
        return bool(versions)  # the mock:// registry answers [] where a registry says 404

    def lookup(self, subject: str, schema: EventSchema) -> int:
        """The id of ``schema`` already registered under ``subject`` (no registration)."""
        key = (subject, schema.text)
        cached = self._ids.get(key)
        if cached is None:
            with registry_errors("look up a schema", subject=subject):
                registered = self._client.lookup_schema(
                    subject, Schema(schema.text, schema.schema_type)
                )
            if registered.schema_id is None:
                raise RegistryError(f"subject {subject!r} returned no schema id")
            cached = self._ids[key] = registered.schema_id
            self._remember(cached, schema)
        return cached

    def schema_by_id(self, schema_id: int) -> ValueSchema:
        """The writer schema of ``schema_id`` (Avro or JSON Schema), fetched once and cached."""
        cached = self._by_id.get(schema_id)
        if cached is None:
            with registry_errors(f"look up schema id {schema_id}"):
                registered = self._client.get_schema(schema_id)
            if registered.schema_str is None:
                raise RegistryError(f"schema id {schema_id} has no definition in the registry")
            if registered.schema_type == JsonSchema.schema_type:
                cached = JsonSchema.from_definition(registered.schema_str)
            else:  # the registry omits schemaType for Avro, the default
                cached = AvroSchema.from_definition(registered.schema_str)
            self._by_id[schema_id] = cached
        return cached

    def compatibility(self, subject: str) -> str:
        """The subject's compatibility level (falling back to the global one)."""
        try:
            with registry_errors("read the compatibility level", subject=subject):
                return str(self._client.get_compatibility(subject))
        except RegistryError as exc:
            if exc.error_code not in _NOT_FOUND_CODES and exc.http_status != 404:
                raise
        with registry_errors("read the global compatibility level"):
            return str(self._client.get_compatibility())

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set the compatibility level of ``subject``."""
        with registry_errors(f"set compatibility {level}", subject=subject):
            self._client.set_compatibility(subject_name=subject, level=level)

    def check(self, subject: str, schema: EventSchema) -> CompatibilityReport:
        """Whether ``schema`` could be registered under ``subject``, without registering.

        A subject with no versions yet accepts anything.
        """
        if not self._exists(subject):  # Apicurio answers "compatible" for a missing subject
            return CompatibilityReport(subject, schema.name, True, new_subject=True)
        if is_mock_url(self.settings.url):
            raise RegistryError(
                f"cannot check compatibility for subject {subject!r}: the mock:// registry "
                "does not check compatibility (hint: use a real registry for this test)"
            )
        body: dict[str, Any] = {"schema": schema.text, "schemaType": schema.schema_type}
        try:
            with registry_errors("check compatibility", subject=subject):
                # The public test_compatibility() drops the registry's reasons; the same
                # request through the client's REST session returns them (verbose=true).
                path = f"compatibility/subjects/{quote(subject, safe='')}/versions/latest"
                response = self._client._rest_client.post(f"{path}?verbose=true", body=body)
        except RegistryError as exc:
            if exc.error_code in _NOT_FOUND_CODES or exc.http_status == 404:
                return CompatibilityReport(subject, schema.name, True, new_subject=True)
            raise
        reasons = tuple(str(message) for message in response.get("messages") or ())
        return CompatibilityReport(subject, schema.name, bool(response["is_compatible"]), reasons)
