from __future__ import annotations

from streamkit.consume.processing import backoff_delays, dedup_key, take_batch
from streamkit.settings import ConsumerSettings
from tests.fakes import message


def test_backoff_doubles_and_is_capped() -> None:
    settings = ConsumerSettings(max_retries=5, retry_backoff_ms=100, retry_backoff_max_ms=500)
    assert list(backoff_delays(settings)) == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert list(backoff_delays(ConsumerSettings(max_retries=0))) == []


def test_dedup_key_prefers_function_then_header_then_position() -> None:
    with_id = message(headers=[("event-id", b"e-1")])
    assert dedup_key(with_id) == "e-1"
    assert dedup_key(with_id, lambda m: f"custom-{m.offset()}") == "custom-41"
    assert dedup_key(message()) == "orders/2/41"


class _Queue:
    """A consumer whose queue holds ``ready`` messages; records how it was asked."""

    def __init__(self, ready: list[str]) -> None:
        self.ready = ready
        self.calls: list[tuple[str, int, float]] = []

    def poll(self, timeout: float = -1) -> str | None:
        self.calls.append(("poll", 1, timeout))
        return self.ready.pop(0) if self.ready else None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[str]:
        self.calls.append(("consume", num_messages, timeout))
        taken, self.ready = self.ready[:num_messages], self.ready[num_messages:]
        return taken


def test_take_batch_waits_only_for_the_first_message() -> None:
    queue = _Queue(["a", "b", "c"])
    assert take_batch(queue, 2, 0.5) == ["a", "b"]
    # Only the first read may wait; the rest takes what is ready without waiting.
    assert queue.calls == [("poll", 1, 0.5), ("consume", 1, 0)]
    assert take_batch(queue, 500, 0.5) == ["c"]
    assert take_batch(queue, 500, 0.5) == []
    assert take_batch(_Queue(["x", "y"]), 1, 0.5) == ["x"]
