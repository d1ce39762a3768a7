from __future__ import annotations

import uuid

import pytest

from streamkit.dedup import scoped_key
from streamkit.dedup.marks import BUCKETS_PER_TTL, IdCodec, Retention

KEY_A, KEY_B = bytes(range(16)), bytes(range(1, 17))


@pytest.fixture
def codec() -> IdCodec:
    return IdCodec(KEY_A)


def test_uuid_ids_of_one_group_are_the_uuid_bits_under_one_mask(codec: IdCodec) -> None:
    events = [uuid.uuid4() for _ in range(1000)]
    ids = codec.ids([scoped_key("billing", str(e)) for e in events])
    masks = {id_ ^ event.int for id_, event in zip(ids, events, strict=True)}
    assert len(masks) == 1  # a XOR with one constant: no two events of a group collide
    assert len(set(ids)) == len(events)
    assert all(0 <= id_ < 2**128 for id_ in ids)


def test_groups_and_bare_ids_are_namespaces_of_their_own(codec: IdCodec) -> None:
    event = str(uuid.uuid4())
    keys = [event, f":{event}", scoped_key("billing", event), scoped_key("audit", event)]
    assert len(set(codec.ids(keys))) == len(keys)


@pytest.mark.parametrize(
    "key",
    [
        "order-42",
        "",
        "ü-ñ-✓",
        "a" * 1000,
        "\ud800 lone surrogate",  # from a custom dedup_key_fn, still a key
    ],
)
def test_custom_keys_are_hashed_to_16_bytes_under_the_stores_key(key: str) -> None:
    first, again, other_store = IdCodec(KEY_A), IdCodec(KEY_A), IdCodec(KEY_B)
    id_ = first.id_of(key)
    assert 0 <= id_ < 2**128
    assert again.id_of(key) == id_  # every process of the store agrees
    assert other_store.id_of(key) != id_  # keyed: another store's ids are unrelated
    assert first.id_bytes([key]) == [id_.to_bytes(16, "big")]


def test_only_the_canonical_uuid_text_is_read_as_a_uuid(codec: IdCodec) -> None:
    other = uuid.uuid4()
    mask = codec.id_of(scoped_key("g", str(other))) ^ other.int
    event = uuid.uuid4()
    spellings = [str(event), str(event).upper(), event.hex, f"{{{event}}}", f"urn:uuid:{event}"]
    ids = codec.ids([scoped_key("g", spelling) for spelling in spellings])
    assert ids[0] ^ event.int == mask
    assert all(id_ ^ event.int != mask for id_ in ids[1:])  # hashed like any other key
    assert len(set(ids)) == len(spellings)  # distinct key strings stay distinct keys


def test_many_distinct_keys_never_collide(codec: IdCodec) -> None:
    keys = [f"order-{i}" for i in range(50_000)] + [
        scoped_key(f"group-{i % 7}", str(uuid.uuid4())) for i in range(50_000)
    ]
    assert len(set(codec.ids(keys))) == len(keys)


def test_the_hash_key_is_16_bytes_and_never_shown() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        IdCodec(b"short")
    assert repr(IdCodec(KEY_A)) == "IdCodec(hash_key=<hidden>)"


@pytest.mark.parametrize(
    ("ttl_s", "width_ms"),
    [(7 * 24 * 3600, 75_600_000), (3600, 450_000), (0.5, 63), (0.001, 1)],
)
def test_buckets_are_an_eighth_of_the_retention(ttl_s: float, width_ms: int) -> None:
    retention = Retention.of(ttl_s)
    assert retention.width_ms == width_ms
    assert retention.width_ms * BUCKETS_PER_TTL >= retention.ttl_ms
    start = retention.start_ms(1_000_000_123.4)
    assert start <= 1_000_000_123.4 < start + width_ms
    assert retention.expires_ms(start) == start + width_ms + retention.ttl_ms


def test_ids_of_a_claim_are_remembered_for_its_complete(codec: IdCodec) -> None:
    keys = [scoped_key("g", str(uuid.uuid4())) for _ in range(3)] + ["custom"]
    claimed = codec.ids(keys, remember=True)
    assert codec.ids(keys) == claimed  # taken back, not computed again
    assert codec.ids(keys) == claimed  # and computed alike once forgotten
    assert codec.id_bytes(keys, remember=True) == [i.to_bytes(16, "big") for i in claimed]
    for start in range(0, 40_000, 500):  # claims never completed do not pile up
        codec.ids([f"k{i}" for i in range(start, start + 500)], remember=True)
    assert len(codec._memo) <= 20_000
