"""Start-up connection check: fail fast and name the cause, instead of retrying forever.

librdkafka never gives up on a broker: with a wrong password, an untrusted certificate
or TLS spoken to a plaintext port it reconnects with backoff for as long as the client
lives, and a producer's records time out minutes later. :func:`check_connection` opens a
short-lived admin client with the same security settings, watches its error callback and
log lines, and within a bound either returns the cluster metadata or raises the
streamkit error that names the likely cause (:class:`~streamkit.errors.AuthenticationError`,
:class:`~streamkit.errors.TlsError`, :class:`~streamkit.errors.BrokerUnavailableError`).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamkit.clientconfig import client_config
from streamkit.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    KafkaClientError,
    TlsError,
    diagnose,
    translate_kafka_error,
)
from streamkit.settings import SecuritySettings, StreamkitSettings, env_var_name

__all__ = ["ConnectionWatch", "check_connection"]

log = logging.getLogger(__name__)

_SLICE_S = 0.25
_EARLY_CLOSES = 3  # connections dropped by the broker before the protocol is judged wrong
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")
# Client properties that decide where and how a client connects (the probe copies them).
_CONNECTION_KEYS = ("bootstrap.servers", "client.id", "security.protocol", "oauth_cb")
_CONNECTION_PREFIXES = ("sasl.", "ssl.", "socket.", "broker.address.")


class ConnectionWatch:
    """``error_cb`` and ``logger`` of a librdkafka client: keeps the first failure that
    names a cause.

    Args:
        protocol: the client's security protocol (``PLAINTEXT``, ``SSL``, ...).
        logger: receives librdkafka's log lines at DEBUG (the failure itself becomes an
            exception; the reconnect attempts are noise).
    """

    def __init__(self, protocol: str = "PLAINTEXT", logger: logging.Logger = log) -> None:
        self.protocol = protocol.upper()
        self.logger = logger
        self.failure: KafkaClientError | None = None
        self.logged_failure: KafkaClientError | None = None
        self.last_error: KafkaError | None = None
        self._early_closes = 0

    def on_error(self, error: KafkaError) -> None:
        """The client's ``error_cb``."""
        self.last_error = error
        known = diagnose(error.str()) is not None or error.code() == KafkaError._SSL
        if self.failure is None and (known or error.fatal()):
            self.failure = translate_kafka_error(error, operation="connect")
        self.logger.debug("connection check: %s: %s", error.name(), error.str())

    def log(self, level: int, msg: str, *args: Any) -> None:
        """The client's ``logger`` hook (the ``log`` method the Python binding calls)."""
        text = _THREAD_PREFIX.sub("", str(args[-1]) if args else msg)
        self.logger.debug("librdkafka[%d]: %s", level, text)
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


def _probe_config(
    settings: StreamkitSettings, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    extra = {
        key: value
        for key, value in (overrides or {}).items()
        if key.startswith(_CONNECTION_PREFIXES) or key in _CONNECTION_KEYS
    }
    return client_config(settings, "admin", overrides=extra)


def check_connection(
    settings: StreamkitSettings,
    *,
    timeout_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    logger: logging.Logger = log,
) -> Any:
    """Connect with ``settings`` and return the cluster metadata, or raise within the bound.

    Args:
        settings: the settings whose Kafka and security sections are checked.
        timeout_s: bound; default ``kafka.startup_check_timeout_s``.
        overrides: client properties a component sets on top of the settings; the
            connection-related ones (bootstrap, security, SASL, SSL) are applied.
        logger: receives librdkafka's log lines of the check.

    Raises:
        AuthenticationError: the broker refused the SASL credentials.
        TlsError: the TLS handshake failed or the listener speaks another protocol.
        BrokerUnavailableError: no broker answered within the bound.
    """
    bound = settings.kafka.startup_check_timeout_s if timeout_s is None else timeout_s
    watch = ConnectionWatch(settings.security.protocol, logger)
    conf = _probe_config(settings, overrides)
    conf.update({"error_cb": watch.on_error, "logger": watch})
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # unreadable key or certificate, bad property
        raise translate_kafka_error(exc.args[0], operation="create a Kafka client") from None
    deadline = time.monotonic() + bound
    while True:
        admin.poll(0)  # serves error_cb and log lines
        if watch.cause is not None:
            raise refine(watch.cause, settings.security, conf["bootstrap.servers"])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            metadata = admin.list_topics(timeout=min(_SLICE_S, remaining))
        except KafkaException:
            continue
        if metadata.brokers:
            return metadata
    last = watch.last_error
    detail = f": last error {last.name()}: {last.str()}" if last is not None else ""
    raise BrokerUnavailableError(
        f"no broker of {conf['bootstrap.servers']} answered within {bound:g} s{detail} "
        f"(hint: check {env_var_name('kafka', 'bootstrap_servers')}, that the broker runs, "
        f"and {env_var_name('security', 'protocol')}; "
        f"{env_var_name('kafka', 'startup_check_timeout_s')} sets this bound)",
        code=last.name() if last is not None else "_TIMED_OUT",
        retriable=True,
    )


def refine(
    failure: KafkaClientError, security: SecuritySettings, bootstrap: str
) -> KafkaClientError:
    """Make a TLS failure precise with local facts; other failures pass unchanged."""
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
