from __future__ import annotations

import threading

import pytest

from streamkit.delivery import DeliveryFuture, DeliveryReport
from streamkit.errors import DeliveryError


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
