"""Start-up connection check: fail fast and name the cause, instead of retrying forever.

librdkafka never gives up on a broker: with a wrong password, an untrusted certificate
or TLS spoken to a plaintext port it reconnects with backoff for as long as the client
lives, and a producer's records time out minutes later. :func:`connect` creates a
client with a :class:`ConnectionWatch` in front of its error callback and logger and
waits, within a bound, for the client's first metadata; a failure raises the streamkit
error that names the likely cause (:class:`~streamkit.errors.AuthenticationError`,
:class:`~streamkit.errors.TlsError`, :class:`~streamkit.errors.BrokerUnavailableError`).
:func:`check_connection` does the same with a throw-away admin client.

Where librdkafka's text is ambiguous, local facts make the cause precise: a TLS
handshake from Python tells an untrusted CA from a host name mismatch, and the client
certificate's dates tell an expired certificate from an untrusted one.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamkit.client.config import client_config
from streamkit.client.diagnose import diagnose, translate_kafka_error
from streamkit.client.oauth import explain_oauth_failure
from streamkit.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    KafkaClientError,
    TlsError,
)
from streamkit.settings import SecuritySettings, StreamkitSettings, env_var_name

__all__ = ["ConnectionWatch", "check_connection", "connect"]

log = logging.getLogger(__name__)

_SLICE_S = 0.25
_EARLY_CLOSES = 3  # connections dropped by the broker before the protocol is judged wrong
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")


class ConnectionWatch:
    """``error_cb`` and ``logger`` of a librdkafka client: keeps the first failure that
    names a cause.

    Args:
        protocol: the client's security protocol (``PLAINTEXT``, ``SSL``, ...).
        logger: receives librdkafka's log lines.
        error_cb: the component's own error callback, called after the watch's.
        quiet: log lines at DEBUG (a throw-away check client, whose failure becomes an
            exception: its reconnect attempts are noise) instead of at their level.
        operation: what the client is for (``produce``, ``consume``), named by errors.
    """

    def __init__(
        self,
        protocol: str = "PLAINTEXT",
        logger: Any = log,
        *,
        error_cb: Callable[[KafkaError], None] | None = None,
        quiet: bool = True,
        operation: str = "connect",
    ) -> None:
        self.protocol = protocol.upper()
        self.operation = operation
        self.logger = logger
        self.error_cb = error_cb
        self.quiet = quiet
        self.failure: KafkaClientError | None = None
        self.logged_failure: KafkaClientError | None = None
        self.last_error: KafkaError | None = None
        self._early_closes = 0

    def on_error(self, error: KafkaError) -> None:
        """The client's ``error_cb``."""
        self.last_error = error
        known = diagnose(error.str()) is not None or error.code() == KafkaError._SSL
        if self.failure is None and (known or error.fatal()):
            self.failure = translate_kafka_error(error, operation=self.operation)
        if self.error_cb is not None:
            self.error_cb(error)
        elif self.quiet:
            self.logger.debug("connection check: %s: %s", error.name(), error.str())

    def log(self, level: int, msg: str, *args: Any) -> None:
        """The client's ``logger`` hook (the ``log`` method the Python binding calls)."""
        if self.quiet:
            text = _THREAD_PREFIX.sub("", str(args[-1]) if args else msg)
            self.logger.debug("librdkafka[%d]: %s", level, text)
        else:
            self.logger.log(level, msg, *args)
            text = _THREAD_PREFIX.sub("", str(args[-1]) if args else msg)
        if self.logged_failure is not None:
            return
        if diagnose(text) is not None:
            self.logged_failure = translate_kafka_error(
                KafkaError(KafkaError._TRANSPORT, text), operation="connect"
            )
        elif "closed by peer" in text and "TLS" not in self.protocol and "SSL" not in self.protocol:
            self._count_early_close(text)

    def _count_early_close(self, text: str) -> None:
        # A TLS listener drops a plaintext client at its first request (ApiVersion); a
        # SASL listener answers ApiVersion, then drops a client that skips SASL.
        self._early_closes += 1
        if self._early_closes < _EARLY_CLOSES:
            return
        protocol = env_var_name("security", "protocol")
        if "APIVERSION_QUERY" in text:
            self.logged_failure = TlsError(
                f"connect failed: the broker closes every connection at the first request "
                f"({text}) (hint: the listener probably expects TLS: set {protocol}=SSL or "
                "SASL_SSL, or use the broker's plaintext port)",
                code="_TRANSPORT",
            )
        elif not self.protocol.startswith("SASL"):
            self.logged_failure = AuthenticationError(
                f"connect failed: the broker closes every connection after the first request "
                f"({text}) (hint: the listener probably expects SASL: set {protocol}="
                "SASL_PLAINTEXT and the SASL mechanism, user and password)",
                code="_TRANSPORT",
            )

    @property
    def cause(self) -> KafkaClientError | None:
        """The failure that names a cause: from the error callback first, else the logs."""
        return self.failure or self.logged_failure


Client = TypeVar("Client")


def connect(
    factory: Callable[[dict[str, Any]], Client],
    conf: Mapping[str, Any],
    settings: StreamkitSettings,
    *,
    timeout_s: float | None = None,
    quiet: bool = False,
    operation: str = "connect",
) -> tuple[Client, Any]:
    """Create a librdkafka client and wait until it reaches the cluster, or raise.

    The client's ``error_cb`` and ``logger`` in ``conf`` keep working: a
    :class:`ConnectionWatch` sits in front of them. Waiting costs one metadata round
    trip of the client itself, which it needs anyway.

    Args:
        factory: ``Producer``, ``Consumer`` or ``AdminClient``.
        conf: the client configuration (from :func:`~streamkit.client.config.client_config`).
        settings: the settings the configuration came from (bound, security facts).
        timeout_s: bound; default ``kafka.startup_check_timeout_s``; 0 does not wait.
        quiet: log librdkafka's lines at DEBUG (for throw-away check clients).
        operation: what the client is for (``produce``, ``consume``), named by errors.

    Returns:
        The client and the cluster metadata (None when not waited for).

    Raises:
        AuthenticationError: the broker refused the SASL credentials.
        TlsError: the TLS handshake failed, the key could not be read, or the listener
            speaks another protocol.
        BrokerUnavailableError: no broker answered within the bound.
    """
    bound = settings.kafka.startup_check_timeout_s if timeout_s is None else timeout_s
    watch = ConnectionWatch(
        settings.security.protocol,
        conf.get("logger") or log,
        error_cb=conf.get("error_cb"),
        quiet=quiet,
        operation=operation,
    )
    try:
        client = factory({**conf, "error_cb": watch.on_error, "logger": watch})
    except KafkaException as exc:  # unreadable key or certificate, bad property
        raise translate_kafka_error(exc.args[0], operation="create a Kafka client") from None
    if bound <= 0:
        return client, None
    return client, _await_metadata(client, watch, settings, bound, str(conf["bootstrap.servers"]))


def _await_metadata(
    client: Any, watch: ConnectionWatch, settings: StreamkitSettings, bound: float, servers: str
) -> Any:
    deadline = time.monotonic() + bound
    while True:
        client.poll(0)  # serves error_cb and log lines (no subscription yet: no messages)
        if watch.cause is not None:
            raise refine(watch.cause, settings.security, servers)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            metadata = client.list_topics(timeout=min(_SLICE_S, remaining))
        except KafkaException:
            continue
        if metadata.brokers:
            return metadata
    last = watch.last_error
    detail = f": last error {last.name()}: {last.str()}" if last is not None else ""
    raise BrokerUnavailableError(
        f"no broker of {servers} answered within {bound:g} s{detail} "
        f"(hint: check {env_var_name('kafka', 'bootstrap_servers')}, that the broker runs, "
        f"and {env_var_name('security', 'protocol')}; "
        f"{env_var_name('kafka', 'startup_check_timeout_s')} sets this bound)",
        code=last.name() if last is not None else "_TIMED_OUT",
        retriable=True,
    )


def check_connection(settings: StreamkitSettings, *, timeout_s: float | None = None) -> Any:
    """Connect a throw-away admin client with ``settings``; return the cluster metadata.

    Returns None without connecting when the bound is 0. Raises as :func:`connect`.
    """
    bound = settings.kafka.startup_check_timeout_s if timeout_s is None else timeout_s
    if bound <= 0:
        return None
    _, metadata = connect(
        AdminClient, client_config(settings, "admin"), settings, timeout_s=bound, quiet=True
    )
    return metadata


def refine(
    failure: KafkaClientError, security: SecuritySettings, bootstrap: str
) -> KafkaClientError:
    """Make a TLS or OAuth failure precise with local facts; others pass unchanged."""
    if security.sasl_mechanism == "OAUTHBEARER" and security.sasl_oauthbearer_method == "oidc":
        # Which side failed: the token endpoint, or the broker refusing its token.
        failure = explain_oauth_failure(failure, security)
    if not isinstance(failure, TlsError):
        return failure
    text = str(failure)
    cause: str | None = None
    if "certificate verify failed" in text and security.ssl_endpoint_identification:
        cause = _server_verification(bootstrap, security.ssl_ca_location)
    elif security.ssl_certificate_location is not None and "client certificate" in text:
        cause = _client_certificate_dates(security.ssl_certificate_location)
    if cause is None:
        return failure
    return TlsError(f"{cause}; {text}", code=failure.code, fatal=failure.fatal)


def _server_verification(bootstrap: str, ca_location: Path | None) -> str | None:
    """Tell an untrusted CA from a host name mismatch by a handshake from Python."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_location) if ca_location else None)
    try:
        with (
            socket.create_connection((host, int(port)), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        reason = str(exc.verify_message or exc)
        if "mismatch" in reason.lower():
            return (
                f"host name mismatch: the broker certificate at {host}:{port} does not name "
                f"{host!r}"
            )
        return f"untrusted broker certificate at {host}:{port} ({reason})"
    except (OSError, ValueError):
        return None


def _client_certificate_dates(path: Path) -> str | None:
    """Name an expired or not yet valid client certificate."""
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (ImportError, OSError, ValueError):
        return None
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now:
        return (
            f"client certificate {str(path)!r} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_before_utc > now:
        return (
            f"client certificate {str(path)!r} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    return None
