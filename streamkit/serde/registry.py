"""The schema registry (Confluent REST API): register, check, look up by id.

A thin, caching face over ``confluent_kafka.schema_registry.SchemaRegistryClient``.
Registry failures are translated into streamkit errors in one place,
:func:`registry_errors`. A ``mock://<scope>`` URL selects an in-memory registry shared by
the process (:mod:`streamkit.serde.mock_registry`), for broker-less tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import error as registry_error
from confluent_kafka.schema_registry.error import SchemaRegistryError

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

_INCOMPATIBLE = 409
# Raised by the client's OAuth token fetch in recent confluent-kafka releases; where the
# class does not exist, the placeholder is never raised.
_OAuthTokenError: type[Exception] = getattr(
    registry_error, "OAuthTokenError", type("_NeverRaised", (Exception,), {})
)
_OAUTH = env_var_name("schema_registry", "oauth_")
_AUTH_HINTS = {
    401: (
        " (hint: the registry did not accept the request's credentials: it requires "
        f"authentication ({_OAUTH}CLIENT_ID, {_OAUTH}CLIENT_SECRET, {_OAUTH}SCOPE and "
        f"{_OAUTH}TOKEN_ENDPOINT_URL for OAuth, or "
        f"{env_var_name('schema_registry', 'basic_auth_user_info')} / "
        f"{env_var_name('schema_registry', 'bearer_auth_token')}); with OAuth set, the "
        "token's audience or issuer is not what the registry expects)"
    ),
    403: " (hint: the registry knows the caller but does not let it do this: check its roles)",
}
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})


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
    """Translate registry client failures raised inside the block into RegistryError."""
    where = f" for subject {subject!r}" if subject else ""
    try:
        yield
    except SchemaRegistryError as exc:
        hint = _AUTH_HINTS.get(exc.http_status_code, "")
        raise RegistryError(
            f"schema registry refused to {action}{where}: HTTP {exc.http_status_code}, "
            f"error {exc.error_code}: {exc.error_message}{hint}",
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
            raise RegistryError(
                f"cannot reach the schema registry to {action}{where}: {exc} "
                "(hint: check STREAMKIT_SCHEMA_REGISTRY__URL and that the registry runs)",
                transient=True,
            ) from exc
        raise


class SchemaRegistry:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
            with registry_errors("look up the subject", subject=subject):
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
