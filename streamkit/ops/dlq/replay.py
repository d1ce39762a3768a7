"""``replay``: re-produce selected dead letters, committing the job's position after acks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from streamkit.client.config import client_config
from streamkit.client.connect import connect
from streamkit.client.diagnose import translate_kafka_error
from streamkit.errors import DeliveryError
from streamkit.ops.dlq.letters import (
    DeadLetter,
    DeadLetterSelection,
    as_instant,
    epoch_ms,
    replay_group,
    replay_headers,
)
from streamkit.ops.dlq.reader import BATCH, TIMEOUT_S, DeadLetterReader
from streamkit.settings import StreamkitSettings, load_settings

__all__ = ["Progress", "ReplayReport", "replay_dead_letters"]

log = logging.getLogger(__name__)

_QUEUE_FULL_WAIT_S = 0.05

Progress = Callable[[int, int], None]
"""``progress(examined, total)``: called as a replay reads messages."""


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did (see :meth:`as_dict` for the JSON shape)."""

    topic: str
    target: str
    group: str
    dry_run: bool
    examined: int
    """Dead letters read in this run."""
    selected: int
    """Of those, the ones the selection took."""
    sent: int
    """Copies produced and acknowledged (0 in a dry run)."""
    passed_over: int
    """Read but not selected; this job will not read them again."""
    remaining: int
    """Messages after this run's position (left by ``limit``, ``until``, or new)."""
    elapsed_s: float

    @property
    def per_second(self) -> float:
        """Copies sent per second of the run."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``streamkit dlq replay --json``)."""
        return {**asdict(self), "per_second": round(self.per_second, 1)}


def _default_target(topic: str, suffix: str) -> str:
    if suffix and topic.endswith(suffix) and len(topic) > len(suffix):
        return topic[: -len(suffix)]
    raise ValueError(
        f"cannot tell the source topic of {topic!r} (it does not end with {suffix!r}); "
        "name the destination with to=... (--to)"
    )


class _Sender:
    """Produces copies with the idempotent producer; tracks which were acknowledged."""

    def __init__(self, settings: StreamkitSettings) -> None:
        # The replay is not part of a service's transaction, whatever settings say.
        overrides = {"transactional.id": None, "transaction.timeout.ms": None, "logger": log}
        self.producer, _ = connect(
            Producer,
            client_config(settings, "producer", overrides=overrides),
            settings,
            operation="replay dead letters",
        )
        self.acknowledged: set[tuple[int, int]] = set()  # (dead-letter partition, offset)
        self.failures: list[KafkaError] = []

    def send(self, target: str, letter: DeadLetter, dlq_topic: str) -> None:
        where = (letter.partition, letter.offset)

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                self.acknowledged.add(where)
            else:
                self.failures.append(error)

        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                self.producer.produce(
                    target,
                    letter.value,
                    letter.key,
                    headers=replay_headers(letter, dlq_topic),
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise DeliveryError(
                        f"producer queue stayed full for {TIMEOUT_S:.0f} s", topic=target
                    ) from None
                self.producer.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                raise translate_kafka_error(exc.args[0], operation="replay", topic=target) from exc

    def flush(self, target: str) -> None:
        if self.producer.flush(TIMEOUT_S) > 0:
            raise DeliveryError(
                f"replayed copies to {target} not acknowledged in {TIMEOUT_S:.0f} s",
                topic=target,
            )

    def close(self) -> None:
        self.producer.flush(TIMEOUT_S)


class _Replay:
    """One run of a replay job: read, select, send, then commit acknowledged progress."""

    def __init__(
        self,
        reader: DeadLetterReader,
        sender: _Sender | None,
        target: str,
        selection: DeadLetterSelection,
        limit: int | None,
    ) -> None:
        self.reader = reader
        self.sender = sender
        self.target = target
        self.selection = selection
        self.limit = limit
        self.since_ms = epoch_ms(as_instant(selection.since))
        self.until_ms = epoch_ms(as_instant(selection.until))
        self.examined = self.selected = self.sent = self.passed_over = 0
        self.positions: dict[int, int] = {}
        self._batch: list[tuple[int, int, bool]] = []  # (partition, offset, sent)

    def run(self, starts: dict[int, int], progress: Progress | None) -> None:
        total = sum(self.reader.bounds[p][1] - start for p, start in starts.items())
        self.positions = dict(starts)
        stopped: set[int] = set()
        for message in self.reader.read(starts):
            if message.partition() in stopped:
                continue
            letter = DeadLetter.of(message)
            if self.until_ms is not None and letter.failed_at > self.until_ms:
                stopped.add(letter.partition)  # later ones wait for a later run
                continue
            self.examined += 1
            chosen = self.selection.matches(letter, self.since_ms)
            if chosen:
                self.selected += 1
                if self.sender is not None:
                    self.sender.send(self.target, letter, self.reader.topic)
            else:
                self.passed_over += 1
            self._batch.append((letter.partition, letter.offset, chosen))
            if len(self._batch) >= BATCH:
                self._settle()
            if progress is not None:
                progress(self.examined, total)
            if self.limit is not None and self.selected >= self.limit:
                break
        self._settle()

    def _settle(self) -> None:
        """Wait for the batch's copies, then commit each partition past what is done."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if self.sender is None:  # a dry run moves nothing
            return
        try:
            self.sender.flush(self.target)
        finally:
            acknowledged = self.sender.acknowledged
            done: dict[int, int] = {}
            blocked: set[int] = set()
            for partition, offset, chosen in batch:
                if partition in blocked:
                    continue
                if chosen and (partition, offset) not in acknowledged:
                    blocked.add(partition)  # never past a copy that was not acknowledged
                    continue
                self.sent += chosen
                done[partition] = offset + 1
            acknowledged.clear()
            self._commit(done)
        if self.sender.failures:
            raise translate_kafka_error(
                self.sender.failures[0], operation="replay", topic=self.target, delivery=True
            )

    def _commit(self, done: dict[int, int]) -> None:
        if not done:
            return
        offsets = [TopicPartition(self.reader.topic, p, o) for p, o in done.items()]
        try:
            self.reader.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise translate_kafka_error(
                exc.args[0], operation="commit replay position", topic=self.reader.topic
            ) from exc
        self.positions.update(done)


def replay_dead_letters(
    topic: str,
    settings: StreamkitSettings | None = None,
    *,
    to: str | None = None,
    selection: DeadLetterSelection | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    group: str | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Re-produce the selected dead letters of ``topic`` to their source topic.

    Args:
        topic: the dead-letter topic (``orders.dlq``).
        settings: resolved settings (default: from the environment).
        to: destination topic; default: ``topic`` without the dead-letter suffix.
        selection: which dead letters to take (default: all).
        limit: send at most this many in this run; the next run continues after them.
        dry_run: read and select, but send and commit nothing.
        group: the job's consumer group (default: :func:`replay_group`).
        progress: called with (examined, total) as messages are read.

    Raises:
        ValueError: no destination can be told from the topic name.
        KafkaClientError: the topic does not exist, a copy was not acknowledged (the
            position stays before it), or the position could not be committed.
    """
    started = time.monotonic()
    settings = settings or load_settings()
    selection = selection or DeadLetterSelection()
    target = to or _default_target(topic, settings.consumer.dead_letter_suffix)
    group = group or replay_group(topic, selection)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    reader = DeadLetterReader(settings, topic, group)
    sender = None if dry_run or limit == 0 else _Sender(settings)
    try:
        run = _Replay(reader, sender, target, selection, limit)
        if limit != 0:
            run.run(reader.committed(), progress)
        else:
            run.positions = reader.committed()
    finally:
        try:
            if sender is not None:
                sender.close()
        finally:
            reader.close()
    remaining = sum(high - run.positions.get(p, low) for p, (low, high) in reader.bounds.items())
    log.info(
        "replay %s -> %s (group %s): %d examined, %d selected, %d sent%s",
        topic,
        target,
        group,
        run.examined,
        run.selected,
        run.sent,
        " (dry run)" if dry_run else "",
    )
    return ReplayReport(
        topic=topic,
        target=target,
        group=group,
        dry_run=dry_run,
        examined=run.examined,
        selected=run.selected,
        sent=run.sent,
        passed_over=run.passed_over,
        remaining=max(remaining, 0),
        elapsed_s=time.monotonic() - started,
    )
