"""SASL/OAUTHBEARER end to end: tokens from a real Keycloak, validated by a real broker.

Clients are configured with ``STREAMKIT_SECURITY__SASL_OAUTHBEARER_METHOD=oidc`` and the
client-credentials variables only; librdkafka fetches and renews the tokens. The broker
(``oauth_kafka``) checks each token's signature against Keycloak's JWKS, its issuer and its
audience, and names the principal after the token's ``client_id`` claim.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from streamkit.cli.main import app
from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.oauth import fetch_token
from streamkit.consume.consumer import EventConsumer
from streamkit.errors import AuthenticationError, AuthorizationError
from streamkit.ops.acl import consumer_acls, producer_acls
from streamkit.ops.admin import StreamkitAdmin
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.serde.schemas import SchemaSet
from streamkit.settings import StreamkitSettings
from streamkit.testing.keycloak import KeycloakContainer
from streamkit.testing.network import free_port
from streamkit.testing.oauth import OAuthKafka, OAuthVariant
from streamkit.testing.plugin import RegistryEndpoint
from tests.factories import ORDER_SCHEMA, order
from tests.integration.conftest import settings_from_env

PRODUCER = "producer-service"
CONSUMER = "consumer-service"
# Measured here: 0.1-0.7 s; the bound leaves room for a loaded machine.
FAILURE_BOUND_S = 10.0
DENIAL_BOUND_S = 30.0
WRONG_SECRET = "wrong-secret-5b1d"
# A JWT starts with base64url('{"'): any token bytes in a text would show this.
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")


def _grant(admin: StreamkitAdmin, topic: str, group: str) -> None:
    admin.ensure_acls(
        [
            *producer_acls(f"User:{PRODUCER}", topic),
            *consumer_acls(f"User:{CONSUMER}", topic, group),
        ]
    )


def _env(
    kafka: OAuthKafka, variant: OAuthVariant, client: str, registry: str, group: str
) -> dict[str, str]:
    return {
        **kafka.endpoint(variant, client=client).env(),
        "STREAMKIT_SCHEMA_REGISTRY__URL": registry,
        "STREAMKIT_CONSUMER__GROUP_ID": group,
    }


@pytest.mark.parametrize("variant", ["sasl_ssl", "sasl_plaintext"])
def test_round_trip_with_oidc_tokens_configured_only_by_environment(
    variant: OAuthVariant,
    oauth_provider: KeycloakContainer,
    oauth_kafka: OAuthKafka,
    oauth_admin: StreamkitAdmin,
    schema_registry: RegistryEndpoint,
    oauth_topic: str,
    schemas: SchemaSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = f"oauth-{variant}-{uuid.uuid4().hex[:8]}"
    _grant(oauth_admin, oauth_topic, group)
    producing = settings_from_env(
        monkeypatch, _env(oauth_kafka, variant, PRODUCER, schema_registry.url, group)
    )
    assert producing.security.sasl_mechanism == "OAUTHBEARER"
    assert producing.security.sasl_oauthbearer_method == "oidc"
    assert producing.security.sasl_username is None

    started = time.monotonic()
    with EventProducer(producing, schemas=schemas) as producer:
        connected = time.monotonic() - started
        sent = [producer.send(oauth_topic, order(i), schema=ORDER_SCHEMA) for i in range(20)]
        ids = [future.result(timeout=60).event_id for future in sent]
    consuming = settings_from_env(
        monkeypatch, _env(oauth_kafka, variant, CONSUMER, schema_registry.url, group)
    )
    received: list[Event] = []
    with EventConsumer([oauth_topic], received.append, settings=consuming) as consumer:
        consumer.run(max_messages=len(ids), idle_timeout_s=60, handle_signals=False)
    assert sorted(event.id for event in received) == sorted(ids)
    print(
        f"\nFIGURES oauth round-trip {variant}: producer connected (token fetched, broker "
        f"accepted it) in {connected:.3f} s; {len(ids)} sent, {len(received)} received; "
        f"session start: Keycloak ready in {oauth_provider.startup_s:.1f} s, OAuth broker "
        f"ready in {oauth_kafka.startup_s:.1f} s after it"
    )


def test_consumer_denied_on_a_topic_it_lacks_then_allowed_after_ensure_acls(
    oauth_kafka: OAuthKafka,
    oauth_admin: StreamkitAdmin,
    schema_registry: RegistryEndpoint,
    oauth_topic: str,
    schemas: SchemaSet,
) -> None:
    group = f"oauth-denied-{uuid.uuid4().hex[:8]}"
    registry = {"url": schema_registry.url}
    oauth_admin.ensure_acls(producer_acls(f"User:{PRODUCER}", oauth_topic))
    producing = oauth_kafka.endpoint(client=PRODUCER).settings(schema_registry=registry)
    with EventProducer(producing, schemas=schemas) as producer:
        sent = producer.send(oauth_topic, order(1), schema=ORDER_SCHEMA).result(timeout=60)
    # The group may be used; the topic is not granted.
    group_only = [
        spec
        for spec in consumer_acls(f"User:{CONSUMER}", oauth_topic, group)
        if spec.resource_type == "GROUP"
    ]
    oauth_admin.ensure_acls(group_only)
    consuming = oauth_kafka.endpoint(client=CONSUMER).settings(
        schema_registry=registry, consumer={"group_id": group}
    )

    started = time.monotonic()
    with (
        EventConsumer([oauth_topic], print, settings=consuming) as consumer,
        pytest.raises(AuthorizationError) as denied,
    ):
        consumer.run(max_messages=1, idle_timeout_s=DENIAL_BOUND_S, handle_signals=False)
    elapsed = time.monotonic() - started
    print(f"\nFIGURES oauth ACL denial for User:{CONSUMER} after {elapsed:.3f} s: {denied.value}")
    assert elapsed < DENIAL_BOUND_S
    assert (denied.value.resource_type, denied.value.resource_name) == ("TOPIC", oauth_topic)
    assert denied.value.acl_operation == "READ"

    changes = oauth_admin.ensure_acls(consumer_acls(f"User:{CONSUMER}", oauth_topic, group))
    assert sorted(change.action for change in changes) == ["created", "created", "unchanged"]
    received: list[Event] = []
    with EventConsumer([oauth_topic], received.append, settings=consuming) as consumer:
        consumer.run(max_messages=1, idle_timeout_s=60, handle_signals=False)
    assert [event.id for event in received] == [sent.event_id]


def _tampered_token(provider: KeycloakContainer, client: str, claims: dict[str, Any]) -> str:
    """A real token of ``client`` whose payload was changed after signing."""
    header, payload, signature = provider.fetch_token(provider.client(client))[
        "access_token"
    ].split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode())
    return f"{header}.{forged.decode().rstrip('=')}.{signature}"


def _case_settings(
    case: str, broker: OAuthKafka, provider: KeycloakContainer, **overrides: Any
) -> tuple[StreamkitSettings, dict[str, Any]]:
    """Settings (``overrides`` as for ``SecureEndpoint.settings``) and client config
    overrides that must fail for ``case``."""
    unreachable = f"http://127.0.0.1:{free_port()}/realms/streamkit/protocol/openid-connect/token"

    def tampered(_config: str) -> tuple[str, float]:
        # A consumer's token rewritten to name the super user: the signature no longer
        # matches (a broker that skipped signature checks would let it in).
        return _tampered_token(provider, CONSUMER, {"client_id": "admin-service"}), time.time() + 60

    # case -> (client id, security settings, client config overrides)
    cases: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
        "wrong client secret": (PRODUCER, {"sasl_oauthbearer_client_secret": WRONG_SECRET}, {}),
        "unknown client": ("mallory-service", {}, {}),
        "token endpoint unreachable": (
            PRODUCER,
            {"sasl_oauthbearer_token_endpoint_url": unreachable},
            {},
        ),
        "token for the wrong audience": ("stranger-service", {}, {}),
        "tampered token": (
            CONSUMER,
            {"sasl_oauthbearer_method": "default"},
            {"oauth_cb": tampered},
        ),
    }
    client, security, conf = cases[case]
    return broker.endpoint(client=client).settings(security=security, **overrides), conf


# case -> words the AuthenticationError must contain (the side that failed, the cause)
FAILURES: dict[str, tuple[str, ...]] = {
    "wrong client secret": ("token endpoint", "refused the client credentials", f"'{PRODUCER}'"),
    "unknown client": ("token endpoint", "refused the client credentials", "'mallory-service'"),
    "token endpoint unreachable": ("token endpoint", "cannot be reached"),
    "token for the wrong audience": ("broker refused the OAuth token", "aud=", "another-api"),
    "tampered token": ("broker refused the OAuth token", "invalid_token"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_oauth_failure_is_an_authentication_error_naming_the_side_within_its_bound(
    case: str,
    oauth_kafka: OAuthKafka,
    oauth_provider: KeycloakContainer,
    record_property: Callable[[str, Any], None],
) -> None:
    settings, overrides = _case_settings(case, oauth_kafka, oauth_provider)
    conf = client_config(settings, "admin", oauth_cb=overrides.get("oauth_cb"))
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as failure:
        connect(AdminClient, conf, settings, timeout_s=FAILURE_BOUND_S)
    elapsed = time.monotonic() - started
    record_property("time_to_error_s", round(elapsed, 3))
    print(f"\nFIGURES oauth time-to-error {case}: {elapsed:.3f} s: {failure.value}")
    assert type(failure.value) is AuthenticationError, failure.value
    for words in FAILURES[case]:
        assert words in str(failure.value)
    assert elapsed < FAILURE_BOUND_S


@pytest.mark.parametrize("client", ["producer", "consumer"])
def test_producers_and_consumers_fail_as_fast_with_a_wrong_secret(
    client: str, oauth_kafka: OAuthKafka, schema_registry: RegistryEndpoint, schemas: SchemaSet
) -> None:
    settings = oauth_kafka.endpoint(client=PRODUCER).settings(
        security={"sasl_oauthbearer_client_secret": WRONG_SECRET},
        schema_registry={"url": schema_registry.url},
        consumer={"group_id": "never-joins"},
    )
    make: dict[str, Callable[[], object]] = {
        "producer": lambda: EventProducer(settings, schemas=schemas),
        "consumer": lambda: EventConsumer(["any"], print, settings=settings),
    }
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="refused the client credentials"):
        make[client]()
    assert time.monotonic() - started < FAILURE_BOUND_S


def _secrets(provider: KeycloakContainer) -> list[str]:
    return [client.secret for client in provider.clients] + [WRONG_SECRET]


def test_no_client_secret_or_token_bytes_in_debug_logs_errors_reprs_or_check_output(
    oauth_kafka: OAuthKafka,
    oauth_provider: KeycloakContainer,
    oauth_admin: StreamkitAdmin,
    schema_registry: RegistryEndpoint,
    oauth_topic: str,
    schemas: SchemaSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    debug = {"extra": {"debug": "security,broker,protocol"}}
    registry = {"url": schema_registry.url}
    oauth_admin.ensure_acls(producer_acls(f"User:{PRODUCER}", oauth_topic))
    texts: list[str] = []

    for case in ("wrong client secret", "token for the wrong audience"):
        failing, _ = _case_settings(
            case, oauth_kafka, oauth_provider, kafka=debug, schema_registry=registry
        )
        with pytest.raises(AuthenticationError) as failure:
            EventProducer(failing, schemas=schemas)
        texts += [str(failure.value), repr(failure.value), repr(failing), str(failing)]

    for variant in ("sasl_ssl", "sasl_plaintext"):
        settings = oauth_kafka.endpoint(variant, client=PRODUCER).settings(
            kafka=debug, schema_registry=registry
        )
        with EventProducer(settings, schemas=schemas) as producer:
            producer.send(oauth_topic, order(2), schema=ORDER_SCHEMA).result(timeout=60)
            texts += [repr(producer), repr(settings), str(settings)]
    token = fetch_token(oauth_kafka.endpoint(client=PRODUCER).settings().security)
    texts += [repr(token), token.describe()]

    env = oauth_kafka.endpoint(client=PRODUCER).env()
    runner = CliRunner()
    for args in (["config", "show"], ["config", "show", "--json"], ["check", "--json"]):
        shown = runner.invoke(app, args, env=env)
        assert shown.exit_code == 0, shown.output
        texts.append(shown.output)

    logged = caplog.text
    # The debug output really was captured: the SASL OAUTHBEARER exchanges of every client.
    assert "OAUTHBEARER" in logged
    assert "SASL OAUTHBEARER authentication successful" in logged
    assert len(caplog.records) > 100
    for text in [logged, *texts]:
        assert JWT_PATTERN.search(text) is None
        assert token.value not in text
        for secret in _secrets(oauth_provider):
            assert secret not in text


def test_check_command_reports_the_oauth_step(oauth_kafka: OAuthKafka) -> None:
    runner = CliRunner()
    env = oauth_kafka.endpoint(client=PRODUCER).env()
    passed = runner.invoke(app, ["check", "--json"], env=env)
    assert passed.exit_code == 0, passed.output
    items = {item["name"]: item for item in json.loads(passed.output)["items"]}
    assert list(items)[:3] == ["broker reachable", "oauth token fetched", "authenticated"]
    assert items["oauth token fetched"]["ok"]
    assert f"{PRODUCER} got a token from" in items["oauth token fetched"]["detail"]
    assert items["authenticated"]["ok"]
    assert f"OAUTHBEARER as {PRODUCER}" in items["authenticated"]["detail"]

    env["STREAMKIT_SECURITY__SASL_OAUTHBEARER_CLIENT_SECRET"] = WRONG_SECRET
    failed = runner.invoke(app, ["check", "--json"], env=env)
    assert failed.exit_code == 1
    items = {item["name"]: item for item in json.loads(failed.output)["items"]}
    assert not items["oauth token fetched"]["ok"]
    assert "refused the client credentials" in items["oauth token fetched"]["detail"]
    assert items["authenticated"]["skipped"]


RENEWAL_RUN_S = 150.0
SEND_INTERVAL_S = 0.5
# Words of an authentication problem; "SASL" alone, not the scheme of a sasl_ssl:// URL.
AUTH_WORDS = re.compile(r"\bSASL\b|oauth|token|authenticat", re.IGNORECASE)
SESSION_LIFETIME = re.compile(r"Received session lifetime (\d+) ms")


@pytest.mark.slow
@pytest.mark.timeout(RENEWAL_RUN_S + 180)
def test_tokens_renew_while_a_producer_and_a_consumer_run_150_s_without_error_or_loss(
    oauth_kafka: OAuthKafka,
    oauth_provider: KeycloakContainer,
    oauth_admin: StreamkitAdmin,
    schema_registry: RegistryEndpoint,
    oauth_topic: str,
    schemas: SchemaSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamkit")
    group = f"oauth-renewal-{uuid.uuid4().hex[:8]}"
    _grant(oauth_admin, oauth_topic, group)
    registry = {"url": schema_registry.url}
    lifespan = oauth_provider.token_lifespan_s
    began = time.time()
    received: dict[str, int] = {}
    lock = threading.Lock()

    def handle(event: Event) -> None:
        with lock:
            received[event.id] = received.get(event.id, 0) + 1

    # librdkafka's security debug lines show each (re-)authentication of a connection.
    debug = {"extra": {"debug": "security,broker"}}
    consuming = oauth_kafka.endpoint(client=CONSUMER).settings(
        kafka=debug, schema_registry=registry, consumer={"group_id": group}
    )
    producing = oauth_kafka.endpoint(client=PRODUCER).settings(
        kafka=debug, schema_registry=registry
    )
    sent: list[str] = []
    with (
        EventConsumer([oauth_topic], handle, settings=consuming) as consumer,
        EventProducer(producing, schemas=schemas) as producer,
    ):
        runner = threading.Thread(
            target=consumer.run, kwargs={"handle_signals": False}, daemon=True
        )
        runner.start()
        deadline = time.monotonic() + RENEWAL_RUN_S
        seq = 0
        while time.monotonic() < deadline:
            future = producer.send(oauth_topic, order(seq), schema=ORDER_SCHEMA)
            sent.append(future.result(timeout=60).event_id)
            seq += 1
            time.sleep(SEND_INTERVAL_S)
        drain = time.monotonic() + 60
        while time.monotonic() < drain and not set(sent) <= set(received):
            time.sleep(0.2)
        consumer.stop()
        runner.join(60)
    elapsed = time.time() - began

    grants = {
        client: oauth_provider.wait_for_grants(client, 3, since=began)
        for client in (PRODUCER, CONSUMER)
    }
    lost = set(sent) - set(received)
    duplicates = sum(count - 1 for count in received.values())
    records = [r for r in caplog.records if r.name.startswith("streamkit")]
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    # An error, or any warning about authentication, fails the run. Other warnings (a fresh
    # broker's "coordinator load in progress" while the producer gets its id) are retried
    # by librdkafka and only counted.
    problems = [
        r
        for r in warnings
        if r.levelno >= logging.ERROR or AUTH_WORDS.search(r.getMessage()) is not None
    ]
    authentications = sum(
        "OAUTHBEARER authentication successful" in r.getMessage() for r in records
    )
    # KIP-368: the broker tells each authenticated connection how long its session may
    # live, at most until the token expires; past that it closes a connection that has not
    # re-authenticated with a renewed token.
    lifetimes_ms = [
        int(found.group(1))
        for r in records
        if (found := SESSION_LIFETIME.search(r.getMessage())) is not None
    ]
    intervals = {
        client: [round(b - a, 1) for a, b in itertools.pairwise(times)]
        for client, times in grants.items()
    }
    print(
        f"\nFIGURES oauth renewal: token lifetime {lifespan} s, run {elapsed:.1f} s, "
        f"{len(sent)} sent, {len(set(received))} received, {len(lost)} lost, "
        f"{duplicates} duplicates, {len(problems)} errors, {len(warnings)} other warnings; "
        f"{authentications} SASL authentications, session lifetimes set by the broker "
        f"{min(lifetimes_ms, default=0) / 1000:.1f}-{max(lifetimes_ms, default=0) / 1000:.1f} s; "
        "token grants "
        + ", ".join(
            f"{client} {len(times)} (renewals {len(times) - 1}, intervals {intervals[client]} s)"
            for client, times in grants.items()
        )
    )
    assert not runner.is_alive()
    assert not lost
    assert not problems, [r.getMessage() for r in problems]
    for client, times in grants.items():
        assert len(times) - 1 >= 2, f"{client} renewed its token {len(times) - 1} times"
    # Sessions end with their tokens, so running 150 s took renewed tokens on the wire.
    assert lifetimes_ms
    assert max(lifetimes_ms) <= lifespan * 1000
