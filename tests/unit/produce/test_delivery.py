from __future__ import annotations

import threading

import pytest

from streamkit.errors import DeliveryError
from streamkit.produce.delivery import DeliveryFuture, DeliveryReport


def test_result_waits_for_settlement_from_another_thread() -> None:
    future = DeliveryFuture("e-1")
    report = DeliveryReport("t", 0, 5, "e-1")
    threading.Timer(0.05, future._settle, args=(report, None)).start()
    assert future.result(timeout=5) == report
    assert future.done()
    assert future.exception() is None


def test_failed_delivery_raises_and_calls_back() -> None:
    future = DeliveryFuture("e-2")
    seen: list[DeliveryFuture] = []
    future.add_done_callback(seen.append)
    error = DeliveryError("not acknowledged", code="_MSG_TIMED_OUT")
    future._settle(None, error)
    assert seen == [future]
    with pytest.raises(DeliveryError):
        future.result()
    assert future.exception() is error
    late: list[DeliveryFuture] = []
    future.add_done_callback(late.append)  # already settled: called at once
    assert late == [future]


def test_result_times_out_when_unsettled() -> None:
    with pytest.raises(TimeoutError, match="e-3"):
        DeliveryFuture("e-3").result(timeout=0.01)
    assert "pending" in repr(DeliveryFuture("e-4"))


class _Message:
    """The three accessors a delivery callback reads."""

    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41


def test_result_drives_the_producer_until_the_report_arrives() -> None:
    polls: list[float] = []

    def driver(timeout: float) -> None:
        polls.append(timeout)
        if len(polls) == 3:  # the third poll serves the report: future is the callback
            future(None, _Message())  # type: ignore[arg-type]

    future = DeliveryFuture("e-5", driver)
    assert future.result(timeout=5) == DeliveryReport("orders", 2, 41, "e-5")
    assert len(polls) == 3
    assert all(0 < timeout <= 0.05 for timeout in polls)


def test_driven_wait_times_out() -> None:
    future = DeliveryFuture("e-6", driver=lambda _timeout: None)
    with pytest.raises(TimeoutError, match="e-6"):
        future.result(timeout=0.02)
