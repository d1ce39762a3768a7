"""Fixtures for the outbox tests: a fresh outbox table, relay processes, topic readers."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from streamkit.client.config import client_config
from streamkit.serde.events import HEADER_EVENT_ID, header_items, header_value
from streamkit.settings import StreamkitSettings
from streamkit.testing.postgres import PostgresEndpoint
from tests.integration.dedup.conftest import with_param


@pytest.fixture
def outbox_table() -> str:
    """A fresh outbox table name per test."""
    return f"outbox_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def outbox_url(postgres_server: PostgresEndpoint, outbox_table: str) -> str:
    """The test server's URL naming the fresh outbox table."""
    return with_param(postgres_server.url, "table", outbox_table)


@pytest.fixture
def outbox_settings(streamkit_settings: StreamkitSettings, outbox_url: str) -> StreamkitSettings:
    """The test broker and registry, and the fresh outbox table."""
    return streamkit_settings.model_copy(
        update={
            "outbox": streamkit_settings.outbox.model_copy(update={"url": SecretStr(outbox_url)})
        }
    )


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    event_id: str
    value: bytes
    headers: dict[str, bytes | None] = field(default_factory=dict)  # the last of each name


def read_topic(
    settings: StreamkitSettings, topic: str, partitions: int, *, timeout_s: float = 60
) -> list[Record]:
    """Every message of ``topic`` up to its current end, partition by partition."""
    consumer = Consumer({**client_config(settings, "consumer"), "enable.partition.eof": True})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records: list[Record] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None
            assert offset is not None
            event_id = header_value(message.headers(), HEADER_EVENT_ID)
            assert event_id is not None
            headers = header_items(message.headers())
            records.append(
                Record(
                    partition,
                    offset,
                    message.key(),
                    event_id.decode(),
                    message.value() or b"",
                    {name: header_value(headers, name) for name, _ in headers},
                )
            )
            if offset + 1 >= ends[partition]:
                done.add(partition)
    finally:
        consumer.close()
    return records


class RelayProcesses:
    """``streamkit outbox relay`` child processes: start, SIGKILL, stop (SIGTERM)."""

    def __init__(self, python: str, env: dict[str, str], log: Path) -> None:
        self._command = [python, "-c", "from streamkit.cli.app import main; main()"]
        self._env = env
        self.log = log
        self.running: list[subprocess.Popen[bytes]] = []
        self.killed = 0

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [*self._command, "outbox", "relay", *args],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._env["PYTHONPATH"],
            )
        self.running.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        assert process.wait(30) == -signal.SIGKILL
        self.running.remove(process)
        self.killed += 1

    def stop_all(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(60) for process in self.running]
        self.running.clear()
        assert codes == [0] * len(codes), f"relay exit codes {codes}; see {self.log}"

    def terminate(self) -> None:
        for process in self.running:
            process.kill()
            process.wait(30)
        self.running.clear()


@pytest.fixture
def relays(
    python: str, child_env: dict[str, str], outbox_url: str, tmp_path: Path
) -> Iterator[Callable[..., RelayProcesses]]:
    """``relays(**env)`` makes a :class:`RelayProcesses` for the fresh outbox table."""
    made: list[RelayProcesses] = []

    def make(**env: str) -> RelayProcesses:
        full = {**child_env, "STREAMKIT_OUTBOX__URL": outbox_url, **env}
        group = RelayProcesses(python, full, tmp_path / f"relay-{len(made)}.log")
        made.append(group)
        return group

    yield make
    for group in made:
        group.terminate()
