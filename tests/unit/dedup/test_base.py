from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the redis store needs streamkit[redis]")

import redis

import streamkit.dedup
from streamkit.dedup import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_TTL_S,
    ClaimResult,
    DedupStore,
    MemoryDedupStore,
    RedisDedupStore,
    SqliteDedupStore,
    claim_one,
    complete_one,
    mask_url,
    open_store,
    open_store_from_settings,
    release_one,
)
from streamkit.errors import DedupStoreError, StreamkitError
from streamkit.settings import DedupSettings


def test_all_names_are_exported_and_exist() -> None:
    public = {name for name in dir(streamkit.dedup) if not name.startswith("_")}
    modules = {n for n in public if type(getattr(streamkit.dedup, n)).__name__ == "module"}
    assert set(streamkit.dedup.__all__) == public - modules


def test_defaults_match_the_settings() -> None:
    settings = DedupSettings()
    assert (settings.claim_ttl_s, settings.ttl_s) == (DEFAULT_CLAIM_TTL_S, DEFAULT_TTL_S)
    store = open_store("memory://")
    assert isinstance(store, MemoryDedupStore)
    assert (store.claim_ttl_s, store.ttl_s) == (settings.claim_ttl_s, settings.ttl_s)


def test_every_backend_implements_the_protocol(tmp_path: Path) -> None:
    stores = [
        MemoryDedupStore(),
        SqliteDedupStore(tmp_path / "d.db"),
        RedisDedupStore(redis.Redis(port=1)),  # connects lazily: no server needed
    ]
    for store in stores:
        assert isinstance(store, DedupStore)
        assert len(store.owner) == 32  # uuid4 hex
        store.close()


def test_owners_are_unique_unless_given() -> None:
    assert MemoryDedupStore().owner != MemoryDedupStore().owner
    assert MemoryDedupStore(owner="worker-1").owner == "worker-1"
    with pytest.raises(DedupStoreError, match="owner"):
        MemoryDedupStore(owner="")


def test_single_key_helpers() -> None:
    store = MemoryDedupStore()
    other = store.for_owner()
    assert claim_one(store, "k") is ClaimResult.CLAIMED
    release_one(store, "k")
    assert claim_one(other, "k") is ClaimResult.CLAIMED
    complete_one(other, "k")
    assert claim_one(store, "k") is ClaimResult.DUPLICATE


def test_stores_are_context_managers_and_refuse_use_after_close() -> None:
    with MemoryDedupStore() as store:
        assert store.claim(["k"]) == [ClaimResult.CLAIMED]
    assert store.closed
    with pytest.raises(DedupStoreError, match="closed"):
        store.claim(["k"])
    store.close()  # idempotent


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://?max_entries=5", MemoryDedupStore),
        ("MEMORY://", MemoryDedupStore),
        ("sqlite:///{tmp}/x.db", SqliteDedupStore),
    ],
)
def test_open_store_selects_the_backend_by_scheme(
    url: str, expected: type[object], tmp_path: Path
) -> None:
    with closing(open_store(url.format(tmp=tmp_path))) as store:
        assert type(store) is expected


def test_url_parameters_override_the_keyword_ttls() -> None:
    store = open_store("memory://?max_entries=7&ttl=30&claim_ttl=2.5", claim_ttl_s=9, ttl_s=99)
    assert isinstance(store, MemoryDedupStore)
    assert (store.max_entries, store.ttl_s, store.claim_ttl_s) == (7, 30.0, 2.5)
    keywords = open_store("memory://", claim_ttl_s=9, ttl_s=99)
    assert isinstance(keywords, MemoryDedupStore)
    assert (keywords.claim_ttl_s, keywords.ttl_s) == (9.0, 99.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://x", "unknown scheme 'kafka'"),
        ("memory://?ttl=0", "ttl='0' is not a positive number"),
        ("memory://?claim_ttl=abc", "claim_ttl='abc'"),
        ("memory://?ttl=inf", "ttl='inf'"),
        ("memory://?max_entries=-1", "max_entries='-1' is not a positive integer"),
        ("memory://?colour=red", "unknown query parameter"),
        ("memory://host", "no host or path"),
        ("sqlite://relative.db", "must be absolute"),
        ("sqlite:///:memory:", "in-memory SQLite is not supported"),
        ("sqlite:////nonexistent-dir/x.db", "does not exist"),
        ("sqlite:///{tmp}/x.db?journal=delete", "unknown query parameter"),
        ("sqlite:///{tmp}/x.db?synchronous=off", "synchronous='OFF'"),
        ("redis://h:notaport/0", "cannot be parsed"),
        ("redis://127.0.0.1:1/0?bogus_option=1", "redis-py refused it"),
    ],
)
def test_bad_urls_are_refused_with_a_hint(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(DedupStoreError, match="hint") as info:
        open_store(url.format(tmp=tmp_path))
    assert message in str(info.value)
    assert isinstance(info.value, StreamkitError)


@pytest.mark.parametrize(("name", "value"), [("claim_ttl_s", 0), ("ttl_s", -1.0)])
def test_bad_keyword_ttls_are_refused(name: str, value: float) -> None:
    with pytest.raises(DedupStoreError, match=name):
        open_store("memory://", **{name: value})


def test_open_store_from_settings() -> None:
    assert open_store_from_settings(DedupSettings()) is None
    settings = DedupSettings(url="memory://?max_entries=3", claim_ttl_s=5, ttl_s=50)
    store = open_store_from_settings(settings, owner="me")
    assert isinstance(store, MemoryDedupStore)
    assert (store.max_entries, store.claim_ttl_s, store.ttl_s, store.owner) == (3, 5, 50, "me")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:**********@h:6379/0"),
        ("rediss://user:s3cret@h:6380/1?ttl=5", "rediss://user:**********@h:6380/1?ttl=5"),
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=**********"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    with pytest.raises(DedupStoreError, match=r"pip install 'streamkit\[redis\]'"):
        open_store("redis://127.0.0.1:6379/0")


def test_unreachable_redis_error_never_shows_the_password() -> None:
    with pytest.raises(DedupStoreError) as info:
        open_store("redis://:hunter2@127.0.0.1:1/0?socket_connect_timeout=1")
    text = str(info.value)
    assert "hunter2" not in text
    assert "**********" in text
    assert "connect (PING) failed" in text
    assert "hint: check that redis is running" in text
    assert "hunter2" not in repr(info.value.__cause__)


def test_reprs_mask_secrets_and_name_the_settings(tmp_path: Path) -> None:
    memory = repr(MemoryDedupStore(max_entries=9, owner="o"))
    assert memory == (
        "MemoryDedupStore(max_entries=9, entries=0, claim_ttl_s=60.0, ttl_s=604800.0, owner='o')"
    )
    with SqliteDedupStore(tmp_path / "r.db", owner="o", ttl_s=5) as sqlite_store:
        assert repr(sqlite_store) == (
            f"SqliteDedupStore(path='{tmp_path}/r.db', claim_ttl_s=60.0, ttl_s=5.0, owner='o')"
        )
    client = redis.Redis.from_url("redis://:hunter2@127.0.0.1:1/0")
    redis_store = RedisDedupStore(client, url="redis://:hunter2@127.0.0.1:1/0", owner="o")
    assert "hunter2" not in repr(redis_store)
    assert repr(redis_store).startswith("RedisDedupStore(url='redis://:**********@127.0.0.1:1/0'")
    derived = RedisDedupStore(client, owner="o")  # URL derived from the client: no password
    assert "hunter2" not in repr(derived)
    assert "redis://127.0.0.1:1/0" in repr(derived)
