"""Readiness check: connect with the current settings and report what works.

:func:`check_connectivity` answers, in order, each with ``ok`` and a detail that names
the cause when it fails: is a broker reachable (TCP), does the OAuth token endpoint give
a token (SASL/OAUTHBEARER with client credentials only), does the client authenticate
(TLS and SASL with the configured credentials), is topic metadata visible (all
topics, or the ones asked for: an ACL may hide them), and does the schema registry
answer. It never raises for a failing item; ``streamkit check`` prints the report.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from streamkit.client.connect import check_connection
from streamkit.errors import StreamkitError
from streamkit.settings import StreamkitSettings

__all__ = ["CheckItem", "ReadinessReport", "check_connectivity"]

_TCP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CheckItem:
    """One line of the report. ``skipped`` items (not configured, or after an earlier
    failure) count as neither passed nor failed."""

    name: str
    ok: bool
    detail: str
    elapsed_s: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class ReadinessReport:
    """The outcome of :func:`check_connectivity`."""

    items: tuple[CheckItem, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return all(item.ok or item.skipped for item in self.items)

    def item(self, name: str) -> CheckItem:
        """The item called ``name``."""
        return next(item for item in self.items if item.name == name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "items": [asdict(item) for item in self.items]}


def _timed(name: str, check: Callable[[], str]) -> CheckItem:
    started = time.monotonic()
    try:
        detail = check()
    except (StreamkitError, OSError) as exc:
        return CheckItem(name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    return CheckItem(name, True, detail, time.monotonic() - started)


def _skipped(name: str, why: str) -> CheckItem:
    return CheckItem(name, False, why, skipped=True)


def _tcp(settings: StreamkitSettings) -> str:
    errors = []
    for server in settings.kafka.bootstrap_list:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), _TCP_TIMEOUT_S):
                return f"{server} accepts connections"
        except OSError as exc:
            errors.append(f"{server}: {exc.strerror or exc}")
    raise OSError("no bootstrap server accepts connections: " + "; ".join(errors))


def _topics(metadata: Any, wanted: Sequence[str]) -> str:
    visible = {name for name, topic in metadata.topics.items() if topic.error is None}
    if not wanted:
        return f"{len(visible)} topics visible"
    hidden = [name for name in wanted if name not in visible]
    if hidden:
        raise StreamkitError(
            f"not visible: {', '.join(hidden)} (hint: the topic does not exist, or the "
            "principal lacks DESCRIBE on it)"
        )
    return f"{len(wanted)} topics visible: {', '.join(wanted)}"


def _oauth_token(settings: StreamkitSettings) -> str:
    from streamkit.client.oauth import fetch_token

    token = fetch_token(settings.security)
    return (
        f"{token.client_id} got a token from {token.endpoint}, valid {token.expires_in_s:g} s "
        f"({token.describe()})"
    )


def _registry(settings: StreamkitSettings) -> str:
    from streamkit.serde.registry import SchemaRegistry, registry_errors

    with SchemaRegistry(settings) as registry, registry_errors("list subjects"):
        subjects = registry.client.get_subjects()
    return f"{settings.schema_registry.url} answers ({len(subjects)} subjects)"


def check_connectivity(
    settings: StreamkitSettings,
    *,
    topics: Sequence[str] = (),
    timeout_s: float | None = None,
) -> ReadinessReport:
    """Check broker reachability, authentication, topic metadata and the registry.

    Args:
        settings: the settings to check.
        topics: topics that must be visible (default: report how many are).
        timeout_s: bound of the authentication step (default
            ``kafka.startup_check_timeout_s``, or 10 s when that is 0).
    """
    bound = timeout_s or settings.kafka.startup_check_timeout_s or 10.0
    items = [_timed("broker reachable", lambda: _tcp(settings))]
    metadata: list[Any] = []

    def authenticate() -> str:
        metadata.append(check_connection(settings, timeout_s=bound))
        security = settings.security
        how = security.protocol + (f" {security.sasl_mechanism}" if security.uses_sasl else "")
        who = security.sasl_username or (
            security.sasl_oauthbearer_client_id
            if security.sasl_mechanism == "OAUTHBEARER"
            else None
        )
        user = f" as {who}" if who else ""
        return f"{how}{user}: {len(metadata[0].brokers)} brokers"

    security = settings.security
    if security.sasl_mechanism == "OAUTHBEARER" and security.sasl_oauthbearer_method == "oidc":
        items.append(_timed("oauth token fetched", lambda: _oauth_token(settings)))
    if not items[0].ok:
        items.append(_skipped("authenticated", "not checked: no broker reachable"))
    elif not items[-1].ok:
        items.append(_skipped("authenticated", "not checked: no OAuth token"))
    else:
        items.append(_timed("authenticated", authenticate))
    if metadata:
        items.append(_timed("topic metadata visible", lambda: _topics(metadata[0], topics)))
    else:
        items.append(_skipped("topic metadata visible", "not checked: not connected"))
    if settings.schema_registry.url:
        items.append(_timed("schema registry reachable", lambda: _registry(settings)))
    else:
        items.append(
            _skipped("schema registry reachable", "not configured (STREAMKIT_SCHEMA_REGISTRY__URL)")
        )
    return ReadinessReport(tuple(items))
