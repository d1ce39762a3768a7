"""PostgreSQL: the inbox (exactly_once / mark_once) and what only this backend has."""
# ruff: noqa: S608 - SQL over table names the tests generate

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.dedup import ClaimResult, exactly_once, mark_once, open_store
from streamkit.dedup.base import mask_url
from streamkit.dedup.postgresql import PostgresDedupStore, create_dedup_table, key_id
from streamkit.errors import DedupStoreError
from streamkit.testing.postgres import PostgresEndpoint
from tests.integration.dedup.conftest import with_param

pytestmark = pytest.mark.integration


@pytest.fixture
def table() -> str:
    """A fresh dedup table name per test."""
    return f"inbox_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def conn(postgres_server: PostgresEndpoint, table: str) -> Iterator[psycopg.Connection]:
    """A connection with a fresh ``effects`` table beside the dedup table."""
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table}_effects (key text)")
        yield connection


def effects(conn: psycopg.Connection, table: str) -> list[str]:
    return [row[0] for row in conn.execute(f"SELECT key FROM {table}_effects ORDER BY key")]


def test_block_and_mark_commit_together(conn: psycopg.Connection, table: str) -> None:
    for _ in range(2):
        with exactly_once(conn, "g:e1", table=table) as tx:
            if tx is not None:
                tx.execute(f"INSERT INTO {table}_effects VALUES ('e1')")
    assert effects(conn, table) == ["e1"]  # the second run saw the mark and skipped


def test_a_failing_block_rolls_back_its_writes_and_the_mark(
    conn: psycopg.Connection, table: str
) -> None:
    def failing_handler() -> None:
        with exactly_once(conn, "g:e1", table=table) as tx:
            assert tx is not None
            tx.execute(f"INSERT INTO {table}_effects VALUES ('lost')")
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        failing_handler()
    assert effects(conn, table) == []
    with exactly_once(conn, "g:e1", table=table) as tx:
        assert tx is not None  # not marked: the retry runs
        tx.execute(f"INSERT INTO {table}_effects VALUES ('e1')")
    assert effects(conn, table) == ["e1"]


def test_inside_an_open_transaction_the_block_is_a_savepoint(
    postgres_server: PostgresEndpoint, table: str
) -> None:
    with psycopg.connect(postgres_server.url) as conn:  # autocommit off
        create_dedup_table(conn, table)
        conn.execute(f"CREATE TABLE {table}_effects (key text)")
        conn.commit()
        conn.execute(f"INSERT INTO {table}_effects VALUES ('before')")
        with exactly_once(conn, "g:e1", table=table) as tx:
            assert tx is not None
            tx.execute(f"INSERT INTO {table}_effects VALUES ('e1')")
        conn.rollback()  # the caller's transaction decides: nothing stays
        assert effects(conn, table) == []
        with exactly_once(conn, "g:e1", table=table) as tx:
            assert tx is not None


def test_concurrent_handlers_of_one_key_run_it_once(
    postgres_server: PostgresEndpoint, table: str, conn: psycopg.Connection
) -> None:
    """Eight connections race for one key; the winner's slow block makes the rest wait."""
    create_dedup_table(conn, table)
    barrier = threading.Barrier(8)
    outcomes: list[bool] = []

    def handle() -> None:
        with psycopg.connect(postgres_server.url) as own:
            barrier.wait(timeout=10)
            with exactly_once(own, "g:race", table=table) as tx:
                outcomes.append(tx is not None)
                if tx is not None:
                    time.sleep(0.2)  # the others queue on the marked row meanwhile
                    tx.execute(f"INSERT INTO {table}_effects VALUES ('race')")

    threads = [threading.Thread(target=handle) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [False] * 7 + [True]
    assert effects(conn, table) == ["race"]


def test_async_connection(postgres_server: PostgresEndpoint, table: str) -> None:
    async def main() -> list[bool]:
        seen = []
        aconn = await psycopg.AsyncConnection.connect(postgres_server.url, autocommit=True)
        async with aconn:
            await aconn.execute(f"CREATE TABLE {table}_effects (key text)")
            for key in ("g:a", "g:a", "g:b"):
                async with exactly_once(aconn, key, table=table) as tx:
                    seen.append(tx is not None)
                    if tx is not None:
                        await tx.execute(f"INSERT INTO {table}_effects VALUES (%s)", (key,))

            async def failing_handler() -> None:
                async with exactly_once(aconn, "g:c", table=table) as tx:
                    await tx.execute(f"INSERT INTO {table}_effects VALUES ('g:c')")
                    raise ValueError("boom")

            with pytest.raises(ValueError, match="boom"):
                await failing_handler()
            cursor = await aconn.execute(f"SELECT key FROM {table}_effects ORDER BY key")
            assert [row[0] for row in await cursor.fetchall()] == ["g:a", "g:b"]
        return seen

    assert asyncio.run(main()) == [True, False, True]


class _Base(DeclarativeBase):
    pass


def test_sqlalchemy_session_recipe(postgres_server: PostgresEndpoint, table: str) -> None:
    """The documented recipe: mark_once(session, key) inside the session's transaction."""

    class Order(_Base):
        __tablename__ = f"{table}_orders"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        event: Mapped[str] = mapped_column(String)

    engine = create_engine(postgres_server.url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        _Base.metadata.create_all(engine, tables=[Order.__table__])  # type: ignore[list-item]
        with engine.begin() as connection:
            create_dedup_table(connection.connection.driver_connection, table)

        def handle(event_id: str, fail: bool = False) -> None:
            with Session(engine) as session, session.begin():
                if not mark_once(session, f"g:{event_id}", table=table):
                    return  # handled before
                session.add(Order(event=event_id))
                if fail:
                    raise RuntimeError("handler failed after its writes")

        handle("e1")
        handle("e1")
        with pytest.raises(RuntimeError):
            handle("e2", fail=True)
        handle("e2")
        with Session(engine) as session:
            assert session.scalars(select(Order.event).order_by(Order.event)).all() == ["e1", "e2"]
    finally:
        engine.dispose()


def test_mark_once_names_the_missing_table(conn: psycopg.Connection) -> None:
    with conn.transaction(), pytest.raises(DedupStoreError, match="streamkit db migrate"):
        mark_once(conn, "g:e1", table="no_such_table_here")


def test_the_store_and_the_inbox_share_the_mark(
    postgres_server: PostgresEndpoint, conn: psycopg.Connection, table: str
) -> None:
    with closing(open_store(with_param(postgres_server.url, "table", table))) as store:
        assert store.claim(["g:e1", "g:e2"]) == [ClaimResult.CLAIMED] * 2
        with exactly_once(conn, "g:e1", table=table) as tx:
            assert tx is not None  # the consumer's own claim does not stop its handler
        assert store.claim(["g:e1"]) == [ClaimResult.DUPLICATE]


def test_expired_marks_are_purged_in_bounded_batches(
    postgres_server: PostgresEndpoint, table: str
) -> None:
    url = with_param(postgres_server.url, "table", table)
    seeding = open_store(url, ttl_s=0.2)
    assert isinstance(seeding, PostgresDedupStore)
    with closing(seeding):
        seeding._next_purge_at = float("inf")  # neither purge nor seal: rows to purge
        seeding.complete([f"old-{i}" for i in range(2500)])
    time.sleep(0.3)
    store = open_store(url)
    assert isinstance(store, PostgresDedupStore)
    with closing(store), psycopg.connect(postgres_server.url) as check:
        counts = []
        for _ in range(3):
            store._next_purge_at = float("-inf")  # don't wait for the interval
            store.claim([f"new-{len(counts)}"])
            counts.append(check.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            check.rollback()
    assert counts == [1501, 502, 3]  # 1000 expired rows per purge, new claims kept


def test_wrong_password_names_the_variable_and_masks_it(
    postgres_server: PostgresEndpoint,
) -> None:
    parts = postgres_server.url.split("@", 1)
    url = parts[0].rsplit(":", 1)[0] + ":not-the-password@" + parts[1]
    with pytest.raises(DedupStoreError) as info:
        open_store(url)
    message = str(info.value)
    assert "STREAMKIT_DEDUP__URL" in message
    assert "password" in message
    assert "not-the-password" not in message
    assert ":**********@" in message


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("table=drop%20table", "is not an identifier"),
        ("pool_size=0", "pool_size"),
        ("no_such_libpq_option=1", "no_such_libpq_option"),
    ],
)
def test_bad_parameters_fail_at_open(
    postgres_server: PostgresEndpoint, query: str, match: str
) -> None:
    with pytest.raises(DedupStoreError, match=match):
        open_store(f"{postgres_server.url}?{query}")


def sealed_store(url: str, ttl_s: float) -> PostgresDedupStore:
    store = open_store(url, ttl_s=ttl_s)
    assert isinstance(store, PostgresDedupStore)
    store._next_purge_at = float("inf")  # the test seals when it means to
    return store


def seal_all(store: PostgresDedupStore, *, tries: int = 3) -> int:
    """Seal until nothing is left (closed buckets only); the marks sealed.

    A batch also seals nothing when claims kept the table busy: ``tries`` empty
    batches in a row end it.
    """
    total, empty = 0, 0
    for _ in range(200):
        sealed = store.seal()
        total += sealed
        empty = 0 if sealed else empty + 1
        if empty == tries:
            return total
    raise AssertionError("sealing did not finish in 200 batches")


def row_count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_bytes_on_disk_per_remembered_id(postgres_server: PostgresEndpoint, table: str) -> None:
    """Issue 17 budgets 40 bytes per id on disk; this measures the tables with their indexes.

    Five buckets of marks, each sealed once it closed, as a store does in its steady
    state: the table of unsealed marks keeps the room of one bucket (its B-tree does
    not shrink), 1/8 of the marks held in a steady state, 1/5 here. A ttl of 48 s
    makes buckets of 6 s, where the default retention's close after 21 h.
    """
    count, waves = 100_000, 5
    url = with_param(postgres_server.url, "table", table)
    tables = (table, f"{table}_runs", f"{table}_sealed")
    with (
        closing(sealed_store(url, ttl_s=48)) as store,
        psycopg.connect(postgres_server.url, autocommit=True) as check,
    ):
        keys = [f"billing-service:{uuid.uuid4()}" for _ in range(count)]
        for wave in range(waves):
            for start in range(wave * count // waves, (wave + 1) * count // waves, 5000):
                store.complete(keys[start : start + 5000])
            time.sleep(store.retention.width_ms / 1000 + 0.1)  # its bucket closes
            assert seal_all(store) == count // waves
            check.execute(f"VACUUM {table}")  # autovacuum's part: space for the next wave
        assert row_count(check, table) == 0
        for name in tables:
            check.execute(f"VACUUM {name}")
        total = sum(
            check.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()[0]
            for name in tables
        )
        sealed = check.execute(f"SELECT pg_total_relation_size('{table}_sealed')").fetchone()[0]
        stats = store.stats()  # what `streamkit dedup stats` shows
        assert store.claim([*keys[:3], "billing-service:new"]) == [ClaimResult.DUPLICATE] * 3 + [
            ClaimResult.CLAIMED
        ]
    per_id = total / count
    print(
        f"FIGURES postgres dedup bytes_per_id={per_id:.1f} sealed_rows_per_id={sealed / count:.1f}"
    )
    print(f"FIGURES cost postgresql {json.dumps(stats.as_dict())}")
    assert per_id <= 40
    assert (stats.backend, stats.remembered_ids) == ("postgresql", count)
    assert stats.bytes_used is not None
    assert total <= stats.bytes_used <= total * 1.05  # autovacuum may add a page meanwhile


def test_claims_racing_the_sealing_never_claim_a_done_id(
    postgres_server: PostgresEndpoint, table: str, conn: psycopg.Connection
) -> None:
    """Marks move from their rows into sealed rows while other owners claim them."""
    url = with_param(postgres_server.url, "table", table)
    keys = [f"g:{n}" for n in range(4000)]
    with closing(sealed_store(url, ttl_s=32)) as sealer:
        sealer._seal_batch = 1000  # many small batches: many moments to race
        sealer._seal_lock_timeout_s = 2.0  # the claimers keep the table busy
        sealer.complete(keys)
        time.sleep(sealer.retention.width_ms / 1000)
        results: list[ClaimResult] = []
        stop = threading.Event()

        def claim_repeatedly() -> None:
            with closing(sealed_store(url, ttl_s=32)) as claimer:
                while not stop.is_set():
                    for start in range(0, len(keys), 500):
                        results.extend(claimer.claim(keys[start : start + 500]))
                        time.sleep(0.005)

        claimers = [threading.Thread(target=claim_repeatedly) for _ in range(2)]
        for thread in claimers:
            thread.start()
        try:
            sealed = seal_all(sealer, tries=50)
        finally:
            stop.set()
            for thread in claimers:
                thread.join(timeout=30)
        assert sealed == len(keys)
        assert len(results) >= 2 * len(keys)
        assert set(results) == {ClaimResult.DUPLICATE}
        with exactly_once(conn, keys[0], table=table) as tx:
            assert tx is None  # the inbox sees sealed marks too


def test_sealed_marks_expire_with_their_bucket(
    postgres_server: PostgresEndpoint, table: str
) -> None:
    url = with_param(postgres_server.url, "table", table)
    with closing(sealed_store(url, ttl_s=1.6)) as store:
        store.complete(["g:a", "g:b"])
        time.sleep(0.25)  # buckets of 0.2 s
        assert seal_all(store) == 2
        assert store.stats().remembered_ids == 2
        assert store.claim(["g:a"]) == [ClaimResult.DUPLICATE]
        time.sleep(1.6 + 0.2)  # ttl and at most one bucket
        assert store.stats().remembered_ids == 0
        assert store.claim(["g:a"]) == [ClaimResult.CLAIMED]
        store._next_purge_at = float("-inf")
        store.claim(["g:c"])  # purges the expired run and its rows
        with psycopg.connect(postgres_server.url) as check:
            assert row_count(check, f"{table}_sealed") == 0
            assert row_count(check, f"{table}_runs") == 0


@pytest.mark.parametrize("migrate", [False, True], ids=["open", "db-migrate"])
def test_marks_of_the_layout_before_sealing_are_honoured(
    postgres_server: PostgresEndpoint, table: str, conn: psycopg.Connection, migrate: bool
) -> None:
    """A table of one row per id (streamkit before sealing) keeps working as it is."""
    conn.execute(
        f"CREATE TABLE {table} (id uuid PRIMARY KEY, expires_at timestamptz NOT NULL, owner text)"
    )
    conn.execute(
        f"INSERT INTO {table} VALUES (%s, now() + interval '1 hour', NULL),"
        " (%s, now() + interval '1 hour', 'other-owner')",
        (key_id("g:done"), key_id("g:claimed")),
    )
    url = with_param(postgres_server.url, "table", table)
    if migrate:
        result = CliRunner().invoke(app, ["db", "migrate"], env={"STREAMKIT_DEDUP__URL": url})
        assert result.exit_code == 0, result.output
        assert row_count(conn, f"{table}_sealed") == 0  # created beside the old table
    with closing(sealed_store(url, ttl_s=3600)) as store:
        assert store.claim(["g:done", "g:claimed", "g:new"]) == [
            ClaimResult.DUPLICATE,
            ClaimResult.IN_PROGRESS,
            ClaimResult.CLAIMED,
        ]
        assert store.stats().remembered_ids == 1
    with exactly_once(conn, "g:done", table=table) as tx:
        assert tx is None


def test_dedup_stats_command_reports_a_postgresql_store(
    postgres_server: PostgresEndpoint, table: str
) -> None:
    url = with_param(postgres_server.url, "table", table)
    with closing(open_store(url, ttl_s=3600)) as store:
        store.complete([f"orders:{n}" for n in range(1200)])
    result = CliRunner().invoke(app, ["dedup", "stats", url, "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert (stats["backend"], stats["remembered_ids"], stats["buckets"]) == ("postgresql", 1200, 0)
    assert stats["bytes_used"] > 1200 * 16
    assert stats["url"] == mask_url(url)
