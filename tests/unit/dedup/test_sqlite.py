from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from streamkit.dedup import ClaimResult, SqliteDedupStore, exactly_once, open_store, scoped_key
from streamkit.dedup.sqlite import CLAIMS_TABLE, DONE_TABLE, LEGACY_TABLE
from streamkit.errors import DedupStoreError
from tests.unit.dedup.conftest import FakeClock

CLAIMED, DUPLICATE, IN_PROGRESS = (
    ClaimResult.CLAIMED,
    ClaimResult.DUPLICATE,
    ClaimResult.IN_PROGRESS,
)


def _rows(path: Path) -> int:
    """Rows of marks and claims."""
    with closing(sqlite3.connect(path)) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in (DONE_TABLE, CLAIMS_TABLE)
        )


@pytest.fixture
def other(db_path: Path, clock: FakeClock) -> Iterator[SqliteDedupStore]:
    store = SqliteDedupStore(db_path, claim_ttl_s=10, ttl_s=100, owner="b", clock=clock)
    yield store
    store.close()


def test_opens_in_wal_mode_with_a_busy_timeout(sqlite_store: SqliteDedupStore) -> None:
    conn = sqlite_store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_url_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/u.db?busy_timeout=0.25&synchronous=normal&ttl=9"
    with closing(open_store(url)) as store:
        assert isinstance(store, SqliteDedupStore)
        assert (store.busy_timeout_s, store.ttl_s) == (0.25, 9.0)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 250


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///billing.db", "billing.db"),  # relative to the working directory
        ("sqlite:///data/billing.db", "data/billing.db"),
        ("sqlite:///{cwd}/abs.db", "abs.db"),  # an absolute path after three slashes: four
    ],
)
def test_url_paths_follow_the_sqlalchemy_convention(
    url: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with closing(open_store(url.format(cwd=tmp_path))) as store:
        assert isinstance(store, SqliteDedupStore)
        assert store.path == tmp_path / expected
    assert (tmp_path / expected).is_file()


def test_relative_path_is_resolved_once_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with closing(SqliteDedupStore("billing.db")) as store:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        store.claim(["k"])
        assert store.path == tmp_path / "billing.db"
    assert _rows(tmp_path / "billing.db") == 1
    assert not (tmp_path / "elsewhere" / "billing.db").exists()


def test_claims_expire_by_the_clock(
    sqlite_store: SqliteDedupStore, other: SqliteDedupStore, clock: FakeClock
) -> None:
    assert sqlite_store.claim(["k", "j"]) == [CLAIMED, CLAIMED]
    clock.advance(9.9)
    assert other.claim(["k"]) == [IN_PROGRESS]
    sqlite_store.complete(["j"])
    clock.advance(0.1)
    assert other.claim(["k", "j"]) == [CLAIMED, DUPLICATE]


def test_stale_owner_completes_only_if_nobody_took_over(
    sqlite_store: SqliteDedupStore, other: SqliteDedupStore, clock: FakeClock
) -> None:
    sqlite_store.claim(["taken", "untaken"])
    clock.advance(11)
    assert other.claim(["taken"]) == [CLAIMED]
    sqlite_store.complete(["taken", "untaken"])
    sqlite_store.release(["taken"])
    assert other.claim(["untaken"]) == [DUPLICATE]
    other.complete(["taken"])
    assert sqlite_store.claim(["taken"]) == [DUPLICATE]


def test_marks_survive_reopening(
    db_path: Path, sqlite_store: SqliteDedupStore, clock: FakeClock
) -> None:
    sqlite_store.claim(["k"])
    sqlite_store.complete(["k"])
    sqlite_store.close()
    with SqliteDedupStore(db_path, clock=clock) as reopened:
        assert reopened.claim(["k"]) == [DUPLICATE]


def test_expired_rows_are_purged_in_bounded_batches(db_path: Path, clock: FakeClock) -> None:
    store = SqliteDedupStore(
        db_path, claim_ttl_s=1, ttl_s=1, clock=clock, purge_interval_s=60, purge_batch=10
    )
    store.complete([f"old-{i}" for i in range(25)])
    clock.advance(2)
    store.claim(["a"])  # first claim purges one batch
    assert _rows(db_path) == 16
    store.claim(["b"])  # the batch was full: purge again
    assert _rows(db_path) == 7
    store.claim(["c"])  # 5 old rows left, and "a" expired
    assert _rows(db_path) == 3
    store.claim(["d"])  # fewer than a batch last time: wait purge_interval_s
    assert _rows(db_path) == 4
    clock.advance(60)
    store.claim(["e"])
    assert _rows(db_path) == 1
    store.close()


def test_large_batches(sqlite_store: SqliteDedupStore, other: SqliteDedupStore) -> None:
    keys = [f"id-{i}" for i in range(5000)]
    assert sqlite_store.claim(keys) == [CLAIMED] * 5000
    sqlite_store.complete(keys[:2500])
    assert other.claim(keys) == [DUPLICATE] * 2500 + [IN_PROGRESS] * 2500


def test_a_held_write_lock_times_out_with_a_hint(db_path: Path) -> None:
    store = SqliteDedupStore(db_path, busy_timeout_s=0.1)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DedupStoreError, match=r"locked.*hint: .*busy_timeout") as info:
            store.claim(["k"])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        blocker.rollback()
        blocker.close()
    assert store.claim(["k"]) == [CLAIMED]  # no transaction was left open
    store.close()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DedupStoreError, match=r"not a database.*hint"):
        SqliteDedupStore(path)


# exactly once ---------------------------------------------------------------------


def _orders(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute("SELECT id, total FROM orders ORDER BY id").fetchall()


@pytest.fixture
def app_db(sqlite_store: SqliteDedupStore) -> SqliteDedupStore:
    sqlite_store._conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)")
    return sqlite_store


def test_transaction_commits_the_effect_and_the_mark_together(app_db: SqliteDedupStore) -> None:
    for _ in range(2):  # the redelivery is skipped
        with app_db.transaction("e1") as conn:
            if conn is not None:
                conn.execute("INSERT INTO orders VALUES ('e1', 10)")
    assert _orders(app_db._conn) == [("e1", 10)]
    assert app_db.claim(["e1"]) == [DUPLICATE]


def test_transaction_yields_none_for_a_done_key(app_db: SqliteDedupStore) -> None:
    app_db.complete(["e1"])
    with app_db.transaction("e1") as conn:
        assert conn is None
    assert not app_db._conn.in_transaction


def test_a_failing_block_rolls_back_effect_and_mark(app_db: SqliteDedupStore) -> None:
    def handler() -> None:
        with app_db.transaction("e1") as conn:
            assert conn is not None
            conn.execute("INSERT INTO orders VALUES ('e1', 10)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handler()
    assert _orders(app_db._conn) == []
    assert app_db.claim(["e1"]) == [CLAIMED]  # not marked: the retry will process it


def test_retention_expiry_lets_the_key_through_again(
    app_db: SqliteDedupStore, clock: FakeClock
) -> None:
    with app_db.transaction("e1") as conn:
        assert conn is not None
    clock.advance(99)
    with app_db.transaction("e1") as conn:
        assert conn is None
    clock.advance(100 / 8 + 1)  # past the ttl and the bucket's width
    with app_db.transaction("e1") as conn:
        assert conn is not None


def test_the_block_must_not_end_the_transaction(app_db: SqliteDedupStore) -> None:
    def handler() -> None:
        with app_db.transaction("e1") as conn:
            assert conn is not None
            conn.rollback()

    with pytest.raises(DedupStoreError, match="ended the transaction itself"):
        handler()
    assert app_db.claim(["e1"]) == [CLAIMED]  # no mark for an effect that may be gone


def test_store_calls_inside_the_block_fail_instead_of_deadlocking(
    app_db: SqliteDedupStore,
) -> None:
    with app_db.transaction("e1") as conn:
        assert conn is not None
        with pytest.raises(DedupStoreError, match="already inside a transaction"):
            app_db.claim(["x"])


def test_exactly_once_on_an_application_connection(tmp_path: Path, clock: FakeClock) -> None:
    conn = sqlite3.connect(tmp_path / "app.db")  # default isolation level
    conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)")
    conn.commit()
    for total in (10, 20):
        with exactly_once(conn, "e1", ttl_s=5, clock=clock) as tx:
            if tx is not None:
                tx.execute("INSERT INTO orders VALUES ('e1', ?)", (total,))
    assert _orders(conn) == [("e1", 10)]
    # The mark lives in the same file, readable by a dedup store opened on it.
    with SqliteDedupStore(tmp_path / "app.db", clock=clock) as store:
        assert store.claim(["e1"]) == [DUPLICATE]
    conn.execute("INSERT INTO orders VALUES ('open', 1)")  # implicit transaction
    with pytest.raises(DedupStoreError, match="already inside a transaction"):  # noqa: SIM117
        with exactly_once(conn, "e2"):
            pass
    conn.close()


def test_transaction_under_the_consumer_key_is_the_stores_own_mark(tmp_path: Path) -> None:
    store = SqliteDedupStore(tmp_path / "effects.db")
    key = scoped_key("billing", "e-1")
    assert key == "billing:e-1"
    assert store.claim([key]) == [CLAIMED]  # what EventConsumer does first
    with store.transaction(key) as conn:
        assert conn is not None
        conn.execute("CREATE TABLE invoices (event_id TEXT)")
        conn.execute("INSERT INTO invoices VALUES ('e-1')")
    # Killed here, before complete(): a redelivery is skipped before the handler runs.
    with SqliteDedupStore(tmp_path / "effects.db") as restarted:
        assert restarted.claim([key]) == [DUPLICATE]
    store.close()


# compact layout, legacy files ------------------------------------------------------

_LEGACY_SCHEMA = (  # streamkit's first layout: one text row per key
    "CREATE TABLE streamkit_dedup (key TEXT PRIMARY KEY NOT NULL, owner TEXT,"
    " done INTEGER NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX streamkit_dedup_expires_at ON streamkit_dedup (expires_at)",
)
EVENT_KEY = scoped_key("billing", "7c9e6679-7425-40de-944b-e07fc1f90ae7")


def _write_legacy_file(path: Path, now: float) -> None:
    rows = [
        (EVENT_KEY, None, 1, now + 50),  # done, 50 s of retention left
        ("custom-key", None, 1, now + 50),
        ("forgotten", None, 1, now - 1),  # expired before the upgrade
        ("held", "old-member", 0, now + 5),  # claimed by a member of the old version
    ]
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in _LEGACY_SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT INTO streamkit_dedup VALUES (?, ?, ?, ?)", rows)


def _tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def test_a_legacy_file_is_converted_and_its_marks_and_claims_honoured(
    db_path: Path, clock: FakeClock
) -> None:
    _write_legacy_file(db_path, clock.now)
    keys = [EVENT_KEY, "custom-key", "forgotten", "held"]
    with SqliteDedupStore(db_path, ttl_s=100, clock=clock) as store:
        assert LEGACY_TABLE not in _tables(db_path)
        assert store.claim(keys) == [DUPLICATE, DUPLICATE, CLAIMED, IN_PROGRESS]
        clock.advance(5)  # the old member's claim expired
        assert store.claim(["held"]) == [CLAIMED]
        clock.advance(44.9)  # a mark is kept at least as long as the old row said
        assert store.claim([EVENT_KEY]) == [DUPLICATE]
        clock.advance(100 / 8 + 0.2)  # and at most one bucket longer
        assert store.claim([EVENT_KEY, "custom-key"]) == [CLAIMED, CLAIMED]


def test_exactly_once_converts_a_legacy_file_too(db_path: Path, clock: FakeClock) -> None:
    _write_legacy_file(db_path, clock.now)
    with closing(sqlite3.connect(db_path)) as conn:
        with exactly_once(conn, EVENT_KEY, clock=clock) as tx:
            assert tx is None  # done before the upgrade
        with exactly_once(conn, "forgotten", clock=clock) as tx:
            assert tx is not None
    assert LEGACY_TABLE not in _tables(db_path)


def test_a_remembered_id_takes_at_most_40_bytes_on_disk(db_path: Path) -> None:
    count, batch = 100_000, 500
    store = SqliteDedupStore(db_path)
    store.complete([str(uuid.uuid4()) for _ in range(batch)])  # the first pages exist

    def file_bytes() -> int:
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db_path.stat().st_size

    before = file_bytes()
    for _ in range(count // batch):
        store.complete([scoped_key("billing", str(uuid.uuid4())) for _ in range(batch)])
    per_id = (file_bytes() - before) / count
    stats = store.stats()
    store.close()
    print(f"FIGURES cost sqlite bytes_per_id={per_id:.1f} stats={stats.as_dict()}")
    assert per_id <= 40
    assert stats.remembered_ids == count + batch
    assert stats.bytes_per_id is not None
    assert stats.bytes_per_id <= 40
