"""Outbox pieces without a database: lanes, lock keys, and what a relay batch marks."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="the outbox needs streamkit[postgres]")

from streamkit.errors import DeliveryError, OutboxError
from streamkit.produce.outbox import (
    LANES,
    checked_statements,
    lane_of,
    lock_namespace,
    row_headers,
    stored_headers,
)
from streamkit.produce.outbox_relay import settle


def row(row_id: int, lane: int) -> tuple[object, ...]:
    return (row_id, lane, "orders", b"k", b"v", f"event-{row_id}", "OrderPlaced", 0, None)


def test_a_key_always_takes_one_lane() -> None:
    lanes = {lane_of("orders", f"customer-{n}".encode(), f"id-{n}") for n in range(1000)}
    assert lanes == set(range(LANES))  # keys spread over every lane
    assert lane_of("orders", b"c-1", "a") == lane_of("orders", b"c-1", "b")  # id ignored


def test_lock_namespaces_differ_by_table_and_purpose_and_fit_int4() -> None:
    names = {lock_namespace(t, p) for t in ("a", "b") for p in ("outbox-key", "outbox-lane")}
    assert len(names) == 4
    assert all(-(2**31) <= n < 2**31 for n in names)


def test_a_failed_row_keeps_its_lanes_later_rows_pending() -> None:
    failed = DeliveryError("timed out", code="_MSG_TIMED_OUT")
    outcomes = [
        (row(1, 7), None),
        (row(2, 3), failed),
        (row(3, 7), None),
        (row(4, 3), None),  # acknowledged, but after row 2 of its lane: published again
        (row(5, 3), TimeoutError("not acknowledged")),
    ]
    marked, reasons = settle(outcomes, {})
    assert marked == [1, 3]
    assert reasons == {"_MSG_TIMED_OUT": 1, "blocked_by_earlier_failure": 2}


def test_a_bad_table_name_is_refused() -> None:
    with pytest.raises(OutboxError, match="is not an identifier"):
        checked_statements("outbox; drop table x")


def test_row_headers_round_trip_through_json_text() -> None:
    headers = [("traceparent", b"00-ab-cd-01"), ("tenant", "acme"), ("empty", None)]
    stored = stored_headers(headers)
    assert stored == [["traceparent", "00-ab-cd-01"], ["tenant", "acme"], ["empty", None]]
    assert row_headers(stored) == [
        ("traceparent", "00-ab-cd-01"),
        ("tenant", "acme"),
        ("empty", None),
    ]
    assert stored_headers([]) is None
    assert row_headers(None) == []


def test_a_binary_header_is_refused_naming_it() -> None:
    with pytest.raises(OutboxError, match="'blob' is not UTF-8"):
        stored_headers([("blob", b"\xff\xfe")])
