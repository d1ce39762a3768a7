"""Delivery results of produced records: a light future per record.

A future per record must be cheap (producers send hundreds of thousands a second), so
this is a small slotted class rather than ``concurrent.futures.Future``: the waiting
event is only created when somebody actually waits, and the future itself is the
delivery callback handed to librdkafka (no closure per record).

There is no background thread serving delivery reports: they are served by the
producer's own calls (``send``, ``flush``, ``poll``, ``close``) and, while somebody
waits on a future, by that wait (the future's *driver*).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from streamkit.client.diagnose import translate_kafka_error
from streamkit.errors import DeliveryError, KafkaClientError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

__all__ = ["DeliveryFuture", "DeliveryReport"]

_LOCK = threading.Lock()  # guards _done/_waiter hand-over; held for a few instructions only
_DRIVE_SLICE_S = 0.05  # a waiter whose report another thread served notices within this

Driver = Callable[[float], object]


class DeliveryReport(NamedTuple):
    """Where an acknowledged record landed."""

    topic: str
    partition: int
    offset: int
    event_id: str


class DeliveryFuture:
    """The pending acknowledgement of one record.

    ``result()`` blocks until the cluster acknowledged the record (returns its
    :class:`DeliveryReport`) or it failed (raises a :class:`~streamkit.errors.KafkaClientError`).
    """

    __slots__ = ("_callbacks", "_done", "_driver", "_error", "_report", "_waiter", "event_id")

    def __init__(self, event_id: str, driver: Driver | None = None) -> None:
        self.event_id = event_id
        self._driver = driver  # serves delivery reports while somebody waits (producer.poll)
        self._done = False
        self._report: DeliveryReport | None = None
        self._error: KafkaClientError | None = None
        self._waiter: threading.Event | None = None
        self._callbacks: list[Callable[[DeliveryFuture], None]] | None = None

    def __repr__(self) -> str:
        state = "pending" if not self._done else "failed" if self._error else "delivered"
        return f"<DeliveryFuture {self.event_id} {state}>"

    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._done

    def _settle(self, report: DeliveryReport | None, error: KafkaClientError | None) -> None:
        self._report, self._error = report, error
        with _LOCK:
            self._done = True
            waiter, callbacks = self._waiter, self._callbacks
        if waiter is not None:
            waiter.set()
        for callback in callbacks or ():
            callback(self)

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery callback for this record."""
        if error is None:
            partition, offset = message.partition(), message.offset()
            report = DeliveryReport(
                message.topic() or "",
                -1 if partition is None else partition,
                -1 if offset is None else offset,
                self.event_id,
            )
            self._settle(report, None)
        else:
            self._settle(
                None,
                translate_kafka_error(
                    error, operation="produce", topic=message.topic(), delivery=True
                ),
            )

    def _wait(self, timeout: float | None) -> None:
        if self._done:
            return
        if self._driver is not None:
            self._drive(self._driver, timeout)
            return
        with _LOCK:
            if self._done:
                return
            if self._waiter is None:
                self._waiter = threading.Event()
            waiter = self._waiter
        if not waiter.wait(timeout):
            raise TimeoutError(f"record {self.event_id} not acknowledged within {timeout} s")

    def _drive(self, driver: Driver, timeout: float | None) -> None:
        # Serve delivery reports until ours arrives; poll returns as soon as it served one.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            left = _DRIVE_SLICE_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"record {self.event_id} not acknowledged within {timeout} s")
            driver(min(left, _DRIVE_SLICE_S))

    def result(self, timeout: float | None = None) -> DeliveryReport:
        """Wait for the acknowledgement.

        Raises:
            KafkaClientError: delivery failed (usually :class:`DeliveryError`).
            TimeoutError: no outcome within ``timeout`` seconds (the record may still
                be delivered later).
        """
        self._wait(timeout)
        if self._error is not None:
            if self._error.code == "_FATAL" and self._driver is not None:
                self._driver(0)  # the producer raises what made it fail ("Fatal error" does not)
            raise self._error
        if self._report is None:  # pragma: no cover - settled without either
            raise DeliveryError("delivery settled without a report")
        return self._report

    def exception(self, timeout: float | None = None) -> KafkaClientError | None:
        """Wait for the outcome and return the delivery error, or None if delivered."""
        self._wait(timeout)
        return self._error

    def add_done_callback(self, callback: Callable[[DeliveryFuture], None]) -> None:
        """Call ``callback(future)`` once the outcome is known (at once if it is)."""
        with _LOCK:
            if not self._done:
                self._callbacks = [*(self._callbacks or ()), callback]
                return
        callback(self)
