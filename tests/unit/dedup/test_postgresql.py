"""The PostgreSQL dedup module without a server: key ids, URL checks, dispatch."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

pytest.importorskip("psycopg", reason="the PostgreSQL store needs streamkit[postgres]")

from streamkit.dedup import exactly_once, open_store
from streamkit.dedup import postgresql as pg
from streamkit.dedup import sqlite as sq
from streamkit.errors import DedupStoreError

PASSWORD = "s3cret-pw"


def test_key_ids_are_16_bytes_and_stable() -> None:
    first = pg.key_id("billing:0b6f3c8e-1f1a-4a8e-9c55-2f0e5c1d7a10")
    assert isinstance(first, uuid.UUID)
    assert len(first.bytes) == 16
    assert first == pg.key_id("billing:0b6f3c8e-1f1a-4a8e-9c55-2f0e5c1d7a10")
    assert first != pg.key_id("billing:0b6f3c8e-1f1a-4a8e-9c55-2f0e5c1d7a11")
    assert pg.key_id("\ud800 lone surrogate") != pg.key_id("")


def test_bad_table_in_store_url_fails_before_connecting() -> None:
    with pytest.raises(DedupStoreError, match="is not an identifier") as info:
        open_store(f"postgresql://app:{PASSWORD}@127.0.0.1:1/db?table=x;drop")
    assert PASSWORD not in str(info.value)


def test_exactly_once_dispatches_on_the_connection_type() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with exactly_once(conn, "k") as tx:
            assert tx is conn
        assert isinstance(exactly_once(object(), "k"), pg.exactly_once)
        assert sq.exactly_once is not pg.exactly_once
    finally:
        conn.close()
