"""StreamkitAdmin.ensure_topics and `streamkit topics ensure` against the real broker."""

from __future__ import annotations

import time
import uuid

from typer.testing import CliRunner

from streamkit.cli.app import app
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.integration.conftest import consumer_settings


def _partitions(admin: StreamkitAdmin, topic: str) -> int | None:
    """Partitions of ``topic`` once a new topic reached the metadata (10 s at most)."""
    deadline = time.monotonic() + 10
    while (found := admin.partitions(topic)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_retry_topics_are_ensured_with_the_source_partition_count(
    streamkit_settings: StreamkitSettings, topic_factory: TopicFactory
) -> None:
    settings = consumer_settings(streamkit_settings, retry_delays=("1s", "2m"))
    admin = StreamkitAdmin(settings)
    existing = topic_factory(partitions=4)  # more than the spec declares
    fresh = f"test-{uuid.uuid4().hex[:12]}"
    changes = admin.ensure_topics(
        [TopicSpec(existing, partitions=2), TopicSpec(fresh, 3), TopicSpec(f"{fresh}.dlq", 3)]
    )
    assert [(c.name, c.action) for c in changes] == [
        (existing, "unchanged"),
        (f"{existing}.retry.1s", "created"),
        (f"{existing}.retry.2m", "created"),
        (fresh, "created"),
        (f"{fresh}.retry.1s", "created"),
        (f"{fresh}.retry.2m", "created"),
        (f"{fresh}.dlq", "created"),
    ]
    assert _partitions(admin, f"{existing}.retry.2m") == 4
    assert _partitions(admin, f"{fresh}.retry.1s") == 3
    assert _partitions(admin, f"{fresh}.retry.2m") == 3
    again = admin.ensure_topics([TopicSpec(fresh, 3)])
    assert [c.action for c in again] == ["unchanged"] * 3
    without = StreamkitAdmin(streamkit_settings).ensure_topics([TopicSpec(fresh, 3)])
    assert [c.name for c in without] == [fresh]


def test_topics_ensure_command_creates_retry_topics(
    streamkit_settings: StreamkitSettings, child_env: dict[str, str]
) -> None:
    topic = f"test-{uuid.uuid4().hex[:12]}"
    env = {**child_env, "STREAMKIT_CONSUMER__RETRY_DELAYS": "5s,1m"}
    result = CliRunner().invoke(app, ["topics", "ensure", topic, "--partitions", "2"], env=env)
    assert result.exit_code == 0, result.output
    for name in (topic, f"{topic}.retry.5s", f"{topic}.retry.1m", f"{topic}.dlq"):
        assert f"{name}: created (2 partitions)" in result.stdout
    skipped = CliRunner().invoke(app, ["topics", "ensure", f"{topic}-b", "--no-retry"], env=env)
    assert skipped.exit_code == 0, skipped.output
    assert ".retry." not in skipped.stdout
    assert _partitions(StreamkitAdmin(streamkit_settings), f"{topic}.retry.1m") == 2
