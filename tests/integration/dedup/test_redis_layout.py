"""The compact Redis layout against a real redis-server: memory per id, buckets, legacy marks."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from streamkit.dedup import RedisDedupStore, open_store, scoped_key
from streamkit.dedup.redis import LAYOUT
from streamkit.testing.redis import RedisEndpoint, RedisServer
from tests.integration.dedup.test_contract import CLAIMED, DUPLICATE, IN_PROGRESS

pytestmark = pytest.mark.integration
BATCH = 500


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def client(redis_server: RedisEndpoint) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def _open(url: str, prefix: str, **kwargs: float) -> RedisDedupStore:
    store = open_store(f"{url}?prefix={prefix}", **kwargs)
    assert isinstance(store, RedisDedupStore)
    return store


def _event_keys(count: int) -> list[str]:
    return [scoped_key("billing-service", str(uuid.uuid4())) for _ in range(count)]


def _uuid7_keys(count: int) -> list[str]:
    """Time-ordered ids (uuid v7 layout): the first 6 bytes barely change."""
    now_ms = time.time_ns() // 1_000_000
    keys = []
    for i in range(count):
        rand = int.from_bytes(os.urandom(10), "big")
        value = ((now_ms + i // 100) << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1))
        value = (value & ~(0b11 << 62)) | (0b10 << 62)  # RFC 4122 variant
        keys.append(scoped_key("orders", str(uuid.UUID(int=value))))
    return keys


def _data_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}{LAYOUT}d:*", count=1000))


def test_100k_completed_ids_take_at_most_50_bytes_each_in_redis() -> None:
    count = 100_000
    with RedisServer() as server:  # its own server: used_memory counts only this test
        client = redis.Redis.from_url(server.url)
        store = _open(server.url, "streamkit:dedup:")
        store.complete(_event_keys(BATCH))  # the layout's fixed keys exist
        before = int(client.info("memory")["used_memory"])
        for _ in range(count // BATCH):
            store.complete(_event_keys(BATCH))
        per_id = (int(client.info("memory")["used_memory"]) - before) / count
        stats = store.stats()
        hashes = _data_keys(client, "streamkit:dedup:")
        encodings = {client.object("encoding", key) for key in hashes}
        figures = {
            "bytes_per_id": round(per_id, 1),
            "keys": client.dbsize(),
            "hashes": len(hashes),
            "stats": stats.as_dict(),
        }
        print(f"FIGURES cost redis {json.dumps(figures)}")
        store.close()
        client.close()
    assert per_id <= 50
    assert encodings == {b"listpack"}  # no hash grew into a hashtable
    assert len(hashes) <= count // 16  # few keys: dozens of ids per hash
    assert stats.remembered_ids == count + BATCH
    assert stats.bytes_per_id is not None
    assert per_id * 0.8 <= stats.bytes_per_id <= per_id * 1.2  # the estimate is close


def test_time_ordered_ids_spread_over_the_hashes(
    redis_server: RedisEndpoint, client: redis.Redis, prefix: str
) -> None:
    with _open(redis_server.url, prefix) as store:
        keys = _uuid7_keys(20_000)
        for start in range(0, len(keys), BATCH):
            store.complete(keys[start : start + BATCH])
        assert store.claim(keys[:BATCH]) == [DUPLICATE] * BATCH
    hashes = _data_keys(client, prefix)
    sizes = [client.hlen(key) for key in hashes]
    assert sum(sizes) == len(keys)
    assert max(sizes) <= 4 * sum(sizes) / len(sizes)
    assert {client.object("encoding", key) for key in hashes} == {b"listpack"}


def test_a_bucket_expires_as_a_whole_after_ttl_past_its_end(
    redis_server: RedisEndpoint, client: redis.Redis, prefix: str
) -> None:
    ttl_ms, width_ms = 2000, 250
    with _open(redis_server.url, prefix, ttl_s=ttl_ms / 1000, claim_ttl_s=30) as store:
        assert store.claim(["held"]) == [CLAIMED]
        before_ms = _server_ms(client)
        store.complete([f"e{i}" for i in range(300)])
        after_ms = _server_ms(client)
        bucket_keys = [*_data_keys(client, prefix)]
        bucket_keys += client.scan_iter(match=f"{prefix}{LAYOUT}m:*")
        expiry = {client.pexpiretime(key) for key in bucket_keys}
        assert len(bucket_keys) > 2
        assert len(expiry) == 1  # one expiry for the whole bucket
        (expires_ms,) = expiry
        assert before_ms + ttl_ms <= expires_ms <= after_ms + ttl_ms + width_ms
        (claim_key,) = client.scan_iter(match=f"{prefix}{LAYOUT}c:*")
        assert 0 < client.pttl(claim_key) <= 30_000  # a claim keeps its own expiry
        time.sleep(max(0.0, (expires_ms - _server_ms(client)) / 1000) + 0.05)
        assert store.claim(["e0", "e299"]) == [CLAIMED, CLAIMED]
        assert _data_keys(client, prefix) == []


def test_marks_of_the_one_key_per_id_layout_are_honoured(
    redis_server: RedisEndpoint, client: redis.Redis, prefix: str
) -> None:
    done, held = scoped_key("billing", str(uuid.uuid4())), "custom-key"
    client.set(prefix + done, "d", px=60_000)  # as streamkit wrote them before
    client.set(prefix + held, "c:old-member", px=60_000)
    with _open(redis_server.url, prefix) as store:
        assert store.claim([done, held, "new"]) == [DUPLICATE, IN_PROGRESS, CLAIMED]
        legacy_until = int(client.hget(f"{prefix}{LAYOUT}meta", "legacy_until") or 0)
        assert legacy_until >= _server_ms(client) + 7 * 24 * 3600 * 1000 - 60_000
    with _open(redis_server.url, prefix) as later:  # decided once per prefix
        assert later.claim([done]) == [DUPLICATE]


def test_a_fresh_prefix_has_no_legacy_window(
    redis_server: RedisEndpoint, client: redis.Redis, prefix: str
) -> None:
    client.set(f"{prefix}{LAYOUT}c:x", "not legacy: a claim of the new layout")
    with _open(redis_server.url, prefix) as store:
        assert store.claim(["k"]) == [CLAIMED]
    assert client.hget(f"{prefix}{LAYOUT}meta", "legacy_until") == b"0"


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds * 1000 + micros // 1000)
