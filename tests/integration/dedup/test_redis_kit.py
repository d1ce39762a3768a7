"""The Redis test kit (real redis-server launcher, fixture) and Redis-specific failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import redis
import trustme

from streamkit.dedup import ClaimResult, RedisDedupStore, open_store
from streamkit.errors import DedupStoreError
from streamkit.testing.images import TestKitError
from streamkit.testing.network import free_port
from streamkit.testing.redis import REDIS_URL_ENV, RedisEndpoint, RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse-battery"


def test_fixture_serves_a_real_redis(redis_server: RedisEndpoint) -> None:
    assert redis_server.url.endswith(f":{redis_server.port}/0")
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping() is True
    client.close()


def test_server_stops_the_process_it_started() -> None:
    server = RedisServer().start()
    pid, workdir = server.pid, server._workdir
    assert pid is not None
    assert workdir is not None
    assert workdir.is_dir()
    assert repr(server) == f"RedisServer('redis-server', port={server.port}, pid={pid})"
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not workdir.exists()
    assert repr(server) == "RedisServer('redis-server', stopped)"
    with pytest.raises(TestKitError, match="not running"):
        _ = server.url


def test_missing_binary_names_the_package() -> None:
    with pytest.raises(TestKitError, match="apt-get install redis-server"):
        RedisServer("no-such-redis-server").start()


def test_a_server_that_cannot_start_reports_its_log() -> None:
    with pytest.raises(TestKitError, match=r"exited with code \d+\. Last log lines:"):
        RedisServer(extra_args=["--no-such-option", "1"]).start()


_INNER_TEST = """
def test_inner(redis_server):
    print("URL=" + redis_server.url, "SERVER=" + str(redis_server.server))
"""


def _run_inner_pytest(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(_INNER_TEST))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_fixture_fails_rather_than_skips_without_the_binary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != REDIS_URL_ENV}
    env["PATH"] = str(Path(sys.executable).parent)  # no redis-server there
    result = _run_inner_pytest(tmp_path, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "apt-get install redis-server" in result.stdout


def test_fixture_uses_an_existing_server_from_the_environment(
    tmp_path: Path, redis_server: RedisEndpoint
) -> None:
    env = {**os.environ, REDIS_URL_ENV: redis_server.url}
    env["PATH"] = str(Path(sys.executable).parent)  # it must not need the binary
    result = _run_inner_pytest(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"URL={redis_server.url} SERVER=None" in result.stdout


@pytest.fixture(scope="module")
def secured() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        yield server


def test_password_in_url_works_and_is_masked(secured: RedisServer) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{secured.port}/0?prefix=pw:"
    with closing(open_store(url)) as store:
        assert store.claim(["k"]) == [ClaimResult.CLAIMED]
        assert PASSWORD not in repr(store)
        assert ":**********@" in repr(store)


@pytest.mark.parametrize("password", ["", ":wrong-password@"])
def test_authentication_failure_says_what_and_never_the_password(
    secured: RedisServer, password: str
) -> None:
    url = f"redis://{password}127.0.0.1:{secured.port}/0"
    with pytest.raises(DedupStoreError, match="hint: check the user and password") as info:
        open_store(url)
    assert "wrong-password" not in str(info.value)


def test_a_server_that_goes_away_fails_with_a_hint() -> None:
    server = RedisServer().start()
    store = open_store(server.url + "?socket_timeout=1&socket_connect_timeout=1")
    assert isinstance(store, RedisDedupStore)
    store.claim(["k"])
    server.stop()
    with pytest.raises(DedupStoreError, match=r"claim failed: .*hint: check that redis is running"):
        store.claim(["j"])
    store.close()


def test_rediss_connects_over_tls_and_checks_the_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, key_file, cert_file = tmp_path / "ca.pem", tmp_path / "key.pem", tmp_path / "cert.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    tls_port = free_port()
    tls_args = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    tls_args += ["--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)]
    with RedisServer(extra_args=tls_args):
        url = f"rediss://127.0.0.1:{tls_port}/0"
        with closing(open_store(f"{url}?ssl_ca_certs={ca_file}&prefix=tls:")) as store:
            assert store.claim(["k"]) == [ClaimResult.CLAIMED]
        with pytest.raises(DedupStoreError, match="hint: the TLS handshake failed"):
            open_store(url)  # the test CA is not trusted by default
