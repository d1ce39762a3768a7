"""PostgreSQL connection plumbing without a server: identifiers, URLs, error text."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="the PostgreSQL store needs streamkit[postgres]")

import psycopg

from streamkit.client.postgres import PostgresURL, table_identifier, translate_pg_error
from streamkit.errors import DedupStoreError

PASSWORD = "s3cret-pw"
URL = f"postgresql://app:{PASSWORD}@db.internal:5432/orders?table=inbox&sslmode=require"


@pytest.mark.parametrize("name", ["streamkit_dedup", "app.dedup", "_x9", "A" * 48])
def test_identifiers_accepted(name: str) -> None:
    assert isinstance(table_identifier(name), psycopg.sql.Identifier)


@pytest.mark.parametrize(
    "name", ["", "9lives", "drop table", "a.b.c", "x;--", 'q"uote', "A" * 49, "é"]
)
def test_identifiers_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not an identifier"):
        table_identifier(name)


def test_url_keeps_libpq_parameters_and_masks_the_password() -> None:
    url = PostgresURL(URL, "STREAMKIT_DEDUP__URL")
    assert url.pop("table") == "inbox"
    assert url.conninfo == f"postgresql://app:{PASSWORD}@db.internal:5432/orders?sslmode=require"
    assert PASSWORD not in url.masked
    assert url.scrub(f"failed for {PASSWORD}") == "failed for **********"


def test_translated_errors_name_the_variable_and_never_the_password() -> None:
    url = PostgresURL(URL, "STREAMKIT_OUTBOX__URL")
    error = translate_pg_error(
        psycopg.OperationalError(f"password authentication failed ({PASSWORD})"),
        "connect",
        DedupStoreError,
        url,
    )
    assert PASSWORD not in str(error)
    assert "check the user and password in STREAMKIT_OUTBOX__URL" in str(error)


def test_a_non_postgresql_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not a postgresql:// URL"):
        PostgresURL("mysql://x/y", "STREAMKIT_OUTBOX__URL")
