"""A relative ``sqlite:///`` dedup URL, as a service uses it against the real broker."""

from __future__ import annotations

import uuid
from contextlib import closing
from pathlib import Path

import pytest

from streamkit.consume.consumer import EventConsumer
from streamkit.dedup import SqliteDedupStore, open_store_from_settings
from streamkit.produce.producer import EventProducer
from streamkit.settings import StreamkitSettings, load_settings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order


def test_relative_sqlite_url_creates_the_file_in_the_working_directory(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"billing-{uuid.uuid4().hex[:8]}.db"
    at_root = Path("/") / name  # where sqlite:///billing.db used to land
    monkeypatch.chdir(tmp_path)
    topic = topic_factory(partitions=1)
    sent = producer.send(topic, order(1), schema=ORDER_SCHEMA).result(timeout=30)
    settings = load_settings(
        kafka={"bootstrap_servers": streamkit_settings.kafka.bootstrap_servers},
        schema_registry={"url": streamkit_settings.schema_registry.url},
        consumer={"group_id": streamkit_settings.consumer.group_id},
        dedup={"url": f"sqlite:///{name}"},
    )
    store = open_store_from_settings(settings.dedup)
    assert store is not None
    handled: list[str] = []
    try:
        with EventConsumer(
            [topic], lambda e: handled.append(e.id), settings=settings, dedup=store
        ) as c:
            c.run(max_messages=1, idle_timeout_s=30, handle_signals=False)
    finally:
        store.close()
        landed_at_root = at_root.exists()
        at_root.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{at_root}{suffix}").unlink(missing_ok=True)
    assert handled == [sent.event_id]
    assert not landed_at_root
    assert (tmp_path / name).is_file()
    with closing(SqliteDedupStore(tmp_path / name)) as reopened:
        assert reopened.stats().remembered_ids == 1  # the mark is in the file at that path
